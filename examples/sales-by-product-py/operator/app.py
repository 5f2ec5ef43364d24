"""Running sales totals per product, kept in keyed state: after every order
it emits the product's units and revenue so far. The Python twin of
`examples/sales-by-product/operator` (Rust): same output, same dead letters."""

from weir_operator import Reject, keyed, to_json

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
OVERFLOW = "the totals overflow a 64-bit integer"


def unexpected(value):
    """How serde names a value of the wrong type."""
    if type(value) is bool:
        return f"boolean `{to_json(value)}`"
    if type(value) is float:
        return f"floating point `{to_json(value)}`"
    if type(value) is str:
        return f"string {to_json(value)}"
    if type(value) is list:
        return "sequence"
    return "map"


def i64_error(value):
    """Why `value` is not an i64, as serde says it, or None if it is one.
    JSON integers outside i64 and u64 reach Rust as floats."""
    if type(value) is not int:
        return f"invalid type: {unexpected(value)}"
    if I64_MIN <= value <= I64_MAX:
        return None
    if 0 <= value < 2**64:
        return f"invalid value: integer `{value}`"
    return f"invalid type: {unexpected(float(value))}"


def read(order):
    """`qty` and `price_cents`, refused as serde refuses the record: the first
    field present with the wrong type, else the first missing one."""
    fields = ("qty", "price_cents")
    for field in fields:
        value = order.get(field)
        error = None if value is None else i64_error(value)
        if error:
            raise Reject(f"field `{field}`: {error}, expected i64")
    for field in fields:
        if order.get(field) is None:
            raise Reject(f"missing field `{field}`")
    return order["qty"], order["price_cents"]


def checked(n):
    if not I64_MIN <= n <= I64_MAX:
        raise Reject(OVERFLOW)
    return n


@keyed(state_version=1)
def sales(order, ctx):
    qty, price = read(order)
    totals = ctx.state or {"units": 0, "revenue_cents": 0}
    revenue = checked(qty * price)
    units = checked(totals["units"] + qty)
    revenue_cents = checked(totals["revenue_cents"] + revenue)
    ctx.state = {"units": units, "revenue_cents": revenue_cents}
    return {"product": order.get("product"), "units": units, "revenue_cents": revenue_cents}
