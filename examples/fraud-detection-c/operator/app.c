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

/* The fields of a transaction, in the order Rust's `Transaction` declares
 * them, with the type each must have: `any` takes any value. */
static const char *const FIELDS[] = {"tx_id", "account_id", "amount", "ts"};
static const char *const TYPES[] = {"any", "any", "f64", "i64"};

/* How serde names a value of the wrong type. */
static const char *unexpected(weir_call *c, weir_value *v) {
    if (yyjson_mut_is_bool(v)) return yyjson_mut_get_bool(v) ? "boolean `true`" : "boolean `false`";
    if (yyjson_mut_is_str(v)) return weir_format(c, "string %s", weir_to_json(c, v));
    if (yyjson_mut_is_arr(v)) return "sequence";
    if (yyjson_mut_is_real(v)) return weir_format(c, "floating point `%s`", weir_to_json(c, v));
    return "map";
}

static bool fits(weir_value *v, const char *type) {
    int64_t i;
    if (type[0] == 'a') return true;
    if (type[0] == 'i') return weir_as_i64(v, &i);
    return yyjson_mut_is_num(v);
}

/* Whether the transaction reads as Rust's `Transaction`; refuses it as serde
 * does otherwise: the first field present with the wrong type, else the
 * first missing one. */
static bool read(weir_call *c, weir_value *tx) {
    size_t n = sizeof FIELDS / sizeof FIELDS[0];
    for (size_t i = 0; i < n; i++) {
        weir_value *v = weir_get(tx, FIELDS[i]);
        if (v && !fits(v, TYPES[i])) {
            weir_reject(c, "field `%s`: invalid type: %s, expected %s", FIELDS[i],
                        unexpected(c, v), TYPES[i]);
            return false;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!weir_get(tx, FIELDS[i])) {
            weir_reject(c, "missing field `%s`", FIELDS[i]);
            return false;
        }
    }
    return true;
}

/* A minute after a small transaction, it no longer flags the account. */
static void forget(weir_call *c, weir_time_domain domain, int64_t time) {
    (void)domain;
    (void)time;
    weir_set_state(c, NULL);
}

static void detect(weir_call *c, weir_value *tx) {
    if (!read(c, tx)) return;
    double amount;
    int64_t ts, small_ts = 0;
    weir_as_f64(weir_get(tx, "amount"), &amount);
    weir_as_i64(weir_get(tx, "ts"), &ts);
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
