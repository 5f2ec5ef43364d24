"""Version 2 of the hot-swap counter, in Python: a drop-in for the Rust
`counter-v2`. It keeps the sum of `seq` too (state layout version 2) and
migrates the Rust version 1's counts, so it can replace `counter-v1` in a
running pipeline."""

from weir_operator import keyed


def from_v1(count, from_version):
    """Version 1 kept only the count; as `seq` runs 1..=n, the sum it did not
    keep is n(n+1)/2."""
    return {"count": count, "sum_seq": count * (count + 1) // 2}


@keyed(state_version=2, migrate=from_v1)
def counter(tick, ctx):
    totals = ctx.state or {"count": 0, "sum_seq": 0}
    totals["count"] += 1
    totals["sum_seq"] += tick["seq"]
    ctx.state = totals
    return {
        "key": tick["key"],
        "seq": tick["seq"],
        "count": totals["count"],
        "sum_seq": totals["sum_seq"],
        "version": 2,
    }
