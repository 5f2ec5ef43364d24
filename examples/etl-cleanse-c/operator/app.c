/* Cleanses raw orders for the warehouse: drops test and invalid orders,
 * normalises the rest, and dead-letters orders whose timestamp is unusable.
 * The C twin of `examples/etl-cleanse/operator` (Rust): same rules, same
 * output, same dead-letter reasons. */
#include "weir_operator.h"

#include "rfc3339.h"
#include "unicase.h"

/* The text of `field`, or NULL after rejecting the order as serde would. */
static const char *text(weir_call *c, weir_value *order, const char *field) {
    weir_value *value = weir_get(order, field);
    const char *s = weir_as_str(value);
    if (s) return s;
    if (!value) return weir_reject(c, "missing field `%s`", field), NULL;
    weir_reject(c, "field `%s` must be a string, not %s", field, weir_to_json(c, value));
    return NULL;
}

static weir_value *cleanse(weir_call *c, weir_value *order) {
    weir_value *order_id = weir_get(order, "order_id");
    if (!order_id) return NULL;
    const char *id = weir_as_str(order_id);
    if (id && !*id) return NULL;
    uint64_t cents;
    if (!weir_as_u64(weir_get(order, "amount_cents"), &cents)) return NULL;
    if (weir_is_true(weir_get(order, "test"))) return NULL;
    const char *ts = text(c, order, "ts");
    if (!ts) return NULL;
    int64_t ts_ms;
    const char *error = rfc3339_millis(ts, &ts_ms);
    if (error)
        return weir_reject(c, "field `ts`: `%s` is not an RFC 3339 timestamp: %s", ts, error);
    const char *email = text(c, order, "user_email");
    if (!email) return NULL;
    const char *currency = text(c, order, "currency");
    if (!currency) return NULL;
    const char *country = text(c, order, "country");
    if (!country) return NULL;

    weir_value *out = weir_object(c);
    weir_set(c, out, "order_id", order_id);
    weir_set_str(c, out, "email", unicase_lower(c, unicase_trim(c, email)));
    weir_set_real(c, out, "amount", (double)cents / 100.0); /* as Rust's `cents as f64 / 100.0` */
    weir_set_str(c, out, "currency", unicase_upper(c, currency));
    weir_set_str(c, out, "country", unicase_upper(c, country));
    weir_set_int(c, out, "ts_ms", ts_ms);
    return out;
}
WEIR_FILTER_MAP(cleanse);
