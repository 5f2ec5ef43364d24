/* Running sales totals per product, kept in keyed state: after every order
 * it emits the product's units and revenue so far. The C twin of
 * `examples/sales-by-product/operator` (Rust): same output, same dead
 * letters. */
#include "weir_operator.h"

#define OVERFLOW "the totals overflow a 64-bit integer"

/* How serde names a value of the wrong type. */
static const char *unexpected(weir_call *c, weir_value *value) {
    if (yyjson_mut_is_bool(value)) return weir_format(c, "boolean `%s`", weir_to_json(c, value));
    if (yyjson_mut_is_real(value))
        return weir_format(c, "floating point `%s`", weir_to_json(c, value));
    if (yyjson_mut_is_str(value)) return weir_format(c, "string %s", weir_to_json(c, value));
    if (yyjson_mut_is_arr(value)) return "sequence";
    return "map";
}

/* Field `field` as an i64 at `*out`; false after rejecting the order when
 * it is present with another type. An absent field is left to `read`. */
static bool i64_field(weir_call *c, weir_value *order, const char *field, int64_t *out) {
    weir_value *value = weir_get(order, field);
    if (!value || weir_as_i64(value, out)) return true;
    if (yyjson_mut_is_uint(value))
        return weir_reject(c, "field `%s`: invalid value: integer `%llu`, expected i64", field,
                           (unsigned long long)yyjson_mut_get_uint(value)),
               false;
    return weir_reject(c, "field `%s`: invalid type: %s, expected i64", field,
                       unexpected(c, value)),
           false;
}

/* `qty` and `price_cents`, refused as serde refuses the record: the first
 * field present with the wrong type, else the first missing one. */
static bool read(weir_call *c, weir_value *order, int64_t *qty, int64_t *price) {
    if (!i64_field(c, order, "qty", qty) || !i64_field(c, order, "price_cents", price))
        return false;
    if (!weir_get(order, "qty")) return weir_reject(c, "missing field `qty`"), false;
    if (!weir_get(order, "price_cents")) return weir_reject(c, "missing field `price_cents`"), false;
    return true;
}

static void sales(weir_call *c, weir_value *order) {
    int64_t qty, price, units = 0, revenue_cents = 0, revenue;
    if (!read(c, order, &qty, &price)) return;
    weir_value *totals = weir_state(c);
    if (totals) {
        weir_as_i64(weir_get(totals, "units"), &units);
        weir_as_i64(weir_get(totals, "revenue_cents"), &revenue_cents);
    }
    if (__builtin_mul_overflow(qty, price, &revenue) || __builtin_add_overflow(units, qty, &units) ||
        __builtin_add_overflow(revenue_cents, revenue, &revenue_cents)) {
        weir_reject(c, OVERFLOW);
        return;
    }
    weir_value *state = weir_object(c);
    weir_set_int(c, state, "units", units);
    weir_set_int(c, state, "revenue_cents", revenue_cents);
    weir_set_state(c, state);
    weir_value *out = weir_object(c);
    weir_set(c, out, "product", weir_get(order, "product"));
    weir_set_int(c, out, "units", units);
    weir_set_int(c, out, "revenue_cents", revenue_cents);
    weir_emit(c, out);
}
WEIR_KEYED(sales, .state_version = 1);
