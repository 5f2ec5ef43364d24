"""Weir operators in Python.

Write one function, decorate it, and `weir build` turns the folder into a
WebAssembly component with componentize-py::

    from weir_operator import filter_map, Reject

    @filter_map
    def cleanse(order):
        if order.get("test") is True:
            return None                  # dropped
        if "ts" not in order:
            raise Reject("missing field `ts`")   # sent to the dead-letter output
        return {"id": order["id"], "ts": order["ts"]}

Records are dicts; a null field is an absent key. The vocabulary is the Rust
SDK's (`weir-guest`):

* ``@map``: one record in, one record out.
* ``@filter``: return true to keep the record unchanged (it never crosses the
  boundary again).
* ``@filter_map``: return a record, or ``None`` to drop it.
* ``@flat_map``: return (or yield) any number of records.
* ``@keyed(state_version=1, migrate=fn, on_timer=fn)``: ``fn(record, ctx)``
  after ``key_by``; ``ctx.state`` is the key's JSON value state,
  ``ctx.map(name)`` a map state, ``ctx.emit(record, output="out")`` emits to a
  named output, and the return value is emitted like ``@flat_map``'s.

Raising ``Reject(reason)`` (or any other exception) sends the input record to
the dead-letter output with that reason; what it emitted is dropped.
"""

from ._runtime import (
    Context,
    MapState,
    Reject,
    config,
    counter_add,
    filter,
    filter_map,
    flat_map,
    keyed,
    log,
    map,
    to_json,
)

__all__ = [
    "Context",
    "MapState",
    "Reject",
    "config",
    "counter_add",
    "filter",
    "filter_map",
    "flat_map",
    "keyed",
    "log",
    "map",
    "to_json",
]
