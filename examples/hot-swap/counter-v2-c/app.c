/* Version 2 of the hot-swap counter, in C: a drop-in for the Rust
 * `counter-v2`. It keeps the sum of `seq` too (state layout version 2) and
 * migrates the Rust version 1's counts, so it can replace `counter-v1` in a
 * running pipeline. */
#include "weir_operator.h"

/* Version 1 kept only the count; as `seq` runs 1..=n, the sum it did not
 * keep is n(n+1)/2. */
static weir_value *from_v1(weir_call *c, weir_value *count, uint32_t from_version) {
    int64_t n;
    if (from_version != 1 || !weir_as_i64(count, &n))
        return weir_reject(c, "expected a version 1 count, got %s", weir_to_json(c, count));
    weir_value *totals = weir_object(c);
    weir_set_int(c, totals, "count", n);
    weir_set_int(c, totals, "sum_seq", n * (n + 1) / 2);
    return totals;
}

static void counter(weir_call *c, weir_value *tick) {
    int64_t seq, count = 0, sum_seq = 0;
    if (!weir_as_i64(weir_get(tick, "seq"), &seq)) {
        weir_reject(c, "field `seq` must be an integer");
        return;
    }
    weir_value *totals = weir_state(c);
    if (totals) {
        weir_as_i64(weir_get(totals, "count"), &count);
        weir_as_i64(weir_get(totals, "sum_seq"), &sum_seq);
    }
    count += 1;
    sum_seq += seq;
    weir_value *state = weir_object(c);
    weir_set_int(c, state, "count", count);
    weir_set_int(c, state, "sum_seq", sum_seq);
    weir_set_state(c, state);
    weir_value *out = weir_object(c);
    weir_set(c, out, "key", weir_get(tick, "key"));
    weir_set_int(c, out, "seq", seq);
    weir_set_int(c, out, "count", count);
    weir_set_int(c, out, "sum_seq", sum_seq);
    weir_set_int(c, out, "version", 2);
    weir_emit(c, out);
}
WEIR_KEYED(counter, .state_version = 2, .migrate = from_v1);
