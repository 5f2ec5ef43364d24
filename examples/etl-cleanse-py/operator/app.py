"""Cleanses raw orders for the warehouse: drops test and invalid orders,
normalises the rest, and dead-letters orders whose timestamp is unusable.
The Python twin of `examples/etl-cleanse/operator` (Rust): same rules, same
output, same dead-letter reasons."""

from weir_operator import Reject, filter_map, to_json

from rfc3339 import ParseError, parse_millis

U64_MAX = 2**64 - 1


def text(order, field):
    value = order.get(field)
    if type(value) is str:
        return value
    if value is None:
        raise Reject(f"missing field `{field}`")
    raise Reject(f"field `{field}` must be a string, not {to_json(value)}")


@filter_map
def cleanse(order):
    order_id = order.get("order_id")
    if order_id is None or order_id == "":
        return None
    cents = order.get("amount_cents")
    if type(cents) is not int or not 0 <= cents <= U64_MAX:
        return None
    if order.get("test") is True:
        return None
    ts = text(order, "ts")
    try:
        ts_ms = parse_millis(ts)
    except ParseError as e:
        raise Reject(f"field `ts`: `{ts}` is not an RFC 3339 timestamp: {e}") from None
    return {
        "order_id": order_id,
        "email": text(order, "user_email").strip().lower(),
        "amount": float(cents) / 100,  # as Rust's `cents as f64 / 100.0`
        "currency": text(order, "currency").upper(),
        "country": text(order, "country").upper(),
        "ts_ms": ts_ms,
    }
