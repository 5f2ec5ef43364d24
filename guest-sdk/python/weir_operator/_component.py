"""The `operator` export of the `operator-component` world, over whatever the
app registered with a decorator. componentize-py finds the class `Operator`
in the entry module, which imports the app and then this class."""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

from . import _columns, _runtime


def _operator():
    op = _runtime.registered()
    if op is None:
        raise Err("the app declares no operator: decorate a function with @map, @filter, "
                  "@filter_map, @flat_map or @keyed")
    return op


class Operator(exports.Operator):
    """The component's export."""

    def init(self, config: str) -> types.OperatorInfo:
        try:
            _runtime._set_config(config)
        except ValueError as e:
            raise Err(f"invalid operator config: {e}") from None
        op = _operator()
        kind = types.OperatorKind.KEYED if op.kind == "keyed" else types.OperatorKind.STATELESS
        return types.OperatorInfo(kind=kind, state_version=op.state_version)

    def process(self, input: types.Batch, groups) -> types.Output:
        op = _operator()
        try:
            records = _columns.decode(input, types)
        except (ValueError, UnicodeDecodeError) as e:
            raise Err(f"cannot read the batch: {e}") from None
        emitter = _runtime.Emitter()
        rejected = []
        try:
            result = op.process(records, groups, emitter, rejected, types)
        except ValueError as e:
            raise Err(str(e)) from None
        updates, timers = result if result is not None else ([], [])
        emitted = emitter.finish(types, rejected)
        rejected.sort(key=lambda r: r.row)
        return types.Output(emitted=emitted, rejected=rejected, state_updates=updates, timers=timers)

    def on_timer(self, timers, groups) -> types.Output:
        op = _operator()
        if op.kind != "keyed":
            raise Err("this operator registers no timers")
        emitter = _runtime.Emitter()
        try:
            updates, new_timers = op.on_timer(timers, groups, emitter, types)
        except ValueError as e:
            raise Err(str(e)) from None
        rejected = []
        emitted = emitter.finish(types, rejected)
        return types.Output(emitted=emitted, rejected=rejected, state_updates=updates, timers=new_timers)

    def migrate(self, from_version: int, states):
        op = _operator()
        if op.kind != "keyed":
            raise Err(types.MigrationError(
                index=0, reason=f"this version declares no migration from state version {from_version}"))
        out, error = op.migrate(from_version, states)
        if error is not None:
            raise Err(types.MigrationError(index=error[0], reason=error[1]))
        return out
