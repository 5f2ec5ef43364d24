"""Flink's fraud-detection walkthrough in Python, the twin of
`examples/fraud-detection/operator` (Rust): alert when an account's
transaction under 1.00 is immediately followed by one over 500.00 less than
a minute later (event time). The small transaction is remembered in keyed
state, and an event-time timer forgets it once the minute has passed."""

from weir_operator import Reject, keyed, to_json

SMALL = 1.00
LARGE = 500.00
ONE_MINUTE_MS = 60_000


# The fields of a transaction, in the order Rust's `Transaction` declares
# them, with the type each must have: `any` takes any value.
FIELDS = (("tx_id", "any"), ("account_id", "any"), ("amount", "f64"), ("ts", "i64"))


def unexpected(value):
    """How serde names a value of the wrong type."""
    if type(value) is bool:
        return f"boolean `{to_json(value)}`"
    if type(value) is str:
        return f"string {to_json(value)}"
    if type(value) is list:
        return "sequence"
    if type(value) is float:
        return f"floating point `{to_json(value)}`"
    return "map"


def fits(value, expected):
    integer = type(value) is int
    if expected == "i64":
        return integer
    return expected == "any" or integer or type(value) is float


def read(tx):
    """Refuses a transaction as serde refuses it when it is not Rust's
    `Transaction`: the first field present with the wrong type, else the
    first missing one."""
    for name, expected in FIELDS:
        value = tx.get(name)
        if value is not None and not fits(value, expected):
            raise Reject(f"field `{name}`: invalid type: {unexpected(value)}, expected {expected}")
    for name, _ in FIELDS:
        if tx.get(name) is None:
            raise Reject(f"missing field `{name}`")


def forget(ctx):
    """A minute after a small transaction, it no longer flags the account."""
    ctx.clear()


@keyed(on_timer=forget)
def detect(tx, ctx):
    read(tx)
    amount = tx["amount"]
    ts = tx["ts"]
    alerts = []
    small = ctx.state
    if small is not None:
        later = ts - small["ts"]
        if amount > LARGE and 0 <= later < ONE_MINUTE_MS:
            alerts.append(
                {
                    "account_id": tx.get("account_id"),
                    "small_tx_id": small["tx_id"],
                    "large_tx_id": tx.get("tx_id"),
                }
            )
        # Only the very next transaction counts.
        ctx.delete_event_timer(small["ts"] + ONE_MINUTE_MS)
        ctx.clear()
    if amount < SMALL:
        ctx.register_event_timer(ts + ONE_MINUTE_MS)
        ctx.state = {"tx_id": tx.get("tx_id"), "ts": ts}
    return alerts
