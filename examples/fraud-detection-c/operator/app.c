/* Flink's fraud-detection walkthrough in C, the twin of
 * `examples/fraud-detection/operator` (Rust): alert when an account's
 * transaction under 1.00 is immediately followed by one over 500.00 less
 * than a minute later (event time). The small transaction is remembered in
 * keyed state, and an event-time timer forgets it once the minute has
 * passed. */
#include "weir_operator.h"

#define SMALL 1.00
#define LARGE 500.00
#define ONE_MINUTE_MS 60000

/* The field's value, or NULL after refusing it as serde would. */
static weir_value *field(weir_call *c, weir_value *tx, const char *name, bool integer) {
    weir_value *value = weir_get(tx, name);
    int64_t i;
    if (!value) return weir_reject(c, "missing field `%s`", name);
    if (integer ? !weir_as_i64(value, &i) : !yyjson_mut_is_num(value))
        return weir_reject(c, "field `%s`: invalid type", name);
    return value;
}

/* A minute after a small transaction, it no longer flags the account. */
static void forget(weir_call *c, weir_time_domain domain, int64_t time) {
    (void)domain;
    (void)time;
    weir_set_state(c, NULL);
}

static void detect(weir_call *c, weir_value *tx) {
    weir_value *amount_value = field(c, tx, "amount", false);
    if (!amount_value) return;
    weir_value *ts_value = field(c, tx, "ts", true);
    if (!ts_value) return;
    double amount;
    int64_t ts, small_ts = 0;
    weir_as_f64(amount_value, &amount);
    weir_as_i64(ts_value, &ts);
    weir_value *small = weir_state(c);
    if (small) {
        weir_as_i64(weir_get(small, "ts"), &small_ts);
        int64_t later = ts - small_ts;
        if (amount > LARGE && 0 <= later && later < ONE_MINUTE_MS) {
            weir_value *alert = weir_object(c);
            weir_set(c, alert, "account_id", weir_get(tx, "account_id"));
            weir_set(c, alert, "small_tx_id", weir_get(small, "tx_id"));
            weir_set(c, alert, "large_tx_id", weir_get(tx, "tx_id"));
            weir_emit(c, alert);
        }
        /* Only the very next transaction counts. */
        weir_delete_event_timer(c, small_ts + ONE_MINUTE_MS);
        weir_set_state(c, NULL);
    }
    if (amount < SMALL) {
        weir_register_event_timer(c, ts + ONE_MINUTE_MS);
        weir_value *state = weir_object(c);
        weir_set(c, state, "tx_id", weir_get(tx, "tx_id"));
        weir_set_int(c, state, "ts", ts);
        weir_set_state(c, state);
    }
}
WEIR_KEYED(detect, .on_timer = forget);
