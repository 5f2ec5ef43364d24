"""Running sales totals per product, kept in keyed state: after every order
it emits the product's units and revenue so far. The Python twin of
`examples/sales-by-product/operator` (Rust): same output, same dead letters."""

import json

from weir_operator import Reject, keyed

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
OVERFLOW = "the totals overflow a 64-bit integer"


def unexpected(value):
    """How serde names a value of the wrong type."""
    if type(value) is bool:
        return f"boolean `{str(value).lower()}`"
    if type(value) is float:
        return f"floating point `{json.dumps(value)}`"
    if type(value) is str:
        return f"string {json.dumps(value, ensure_ascii=False)}"
    if type(value) is list:
        return "sequence"
    return "map"


def i64_field(order, field):
    value = order.get(field)
    if value is None:
        raise Reject(f"missing field `{field}`")
    if type(value) is not int:
        raise Reject(f"field `{field}`: invalid type: {unexpected(value)}, expected i64")
    if not I64_MIN <= value <= I64_MAX:
        raise Reject(f"field `{field}`: invalid value: integer `{value}`, expected i64")
    return value


def checked(n):
    if not I64_MIN <= n <= I64_MAX:
        raise Reject(OVERFLOW)
    return n


@keyed(state_version=1)
def sales(order, ctx):
    qty = i64_field(order, "qty")
    price = i64_field(order, "price_cents")
    totals = ctx.state or {"units": 0, "revenue_cents": 0}
    revenue = checked(qty * price)
    units = checked(totals["units"] + qty)
    revenue_cents = checked(totals["revenue_cents"] + revenue)
    ctx.state = {"units": units, "revenue_cents": revenue_cents}
    return {"product": order.get("product"), "units": units, "revenue_cents": revenue_cents}
