"""Flink's fraud-detection walkthrough in Python, the twin of
`examples/fraud-detection/operator` (Rust): alert when an account's
transaction under 1.00 is immediately followed by one over 500.00 less than
a minute later (event time). The small transaction is remembered in keyed
state, and an event-time timer forgets it once the minute has passed."""

from weir_operator import Reject, keyed

SMALL = 1.00
LARGE = 500.00
ONE_MINUTE_MS = 60_000


def number(tx, field, kinds):
    """The field's value, refused as serde would refuse it."""
    value = tx.get(field)
    if value is None:
        raise Reject(f"missing field `{field}`")
    if type(value) not in kinds:
        raise Reject(f"field `{field}`: invalid type")
    return value


def forget(ctx):
    """A minute after a small transaction, it no longer flags the account."""
    ctx.clear()


@keyed(on_timer=forget)
def detect(tx, ctx):
    amount = number(tx, "amount", (int, float))
    ts = number(tx, "ts", (int,))
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
