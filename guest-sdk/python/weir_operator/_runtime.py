"""The operator registry, the emitter and the keyed context."""

import builtins
import json

from . import _columns

MAIN_OUTPUT = "out"

_operator = None
_config = {}


class Reject(Exception):
    """Raise to send the current input record to the dead-letter output; the
    message is the reason."""


def _reason(exc):
    if isinstance(exc, Reject):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _register(op):
    global _operator
    if _operator is not None:
        raise RuntimeError(
            f"one component holds one operator: `{_operator.name}` and `{op.name}` are both declared"
        )
    _operator = op
    return op


def registered():
    """The operator the app declared (used by the component glue)."""
    return _operator


to_json = _columns.to_json


def config():
    """The operator's `config` table from the pipeline file, as a dict."""
    return _config


def _set_config(text):
    global _config
    _config = json.loads(text) if text else {}


def log(level, message):
    """Writes `message` to the host's log; `level` is one of "trace", "debug",
    "info", "warn", "error"."""
    from wit_world.imports import host

    host.log(getattr(host.LogLevel, level.upper()), str(message))


def counter_add(name, delta=1):
    """Adds `delta` to the operator's counter `name` (shown by `weir status`)."""
    from wit_world.imports import host

    host.counter_add(name, int(delta))


def _dumps(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class _Sink:
    """Records emitted to one output, with the input row of each."""

    __slots__ = ("records", "origins", "names", "last_keys")

    def __init__(self):
        self.records = []
        self.origins = []
        self.names = {}
        self.last_keys = None

    def add(self, record, row):
        if type(record) is not dict:
            if isinstance(record, dict):
                record = dict(record)
            else:
                raise Reject(
                    f"an operator must emit a dict with string keys, not {type(record).__name__}"
                )
        keys = record.keys()
        if keys != self.last_keys:
            for k in keys:
                if type(k) is not str:
                    raise Reject("keys of an emitted record must be strings")
                self.names.setdefault(k)
            self.last_keys = keys
        self.records.append(record)
        self.origins.append(row)

    def truncate(self, n):
        del self.records[n:]
        del self.origins[n:]


class Emitter:
    """What one call emits: records per output, and input rows kept as is."""

    def __init__(self):
        self.row = 0
        self.main = _Sink()
        self.kept = []
        self.sides = {}

    def emit(self, record, output=MAIN_OUTPUT):
        if output == MAIN_OUTPUT:
            self.main.add(record, self.row)
        else:
            sink = self.sides.get(output)
            if sink is None:
                sink = self.sides[output] = _Sink()
            sink.add(record, self.row)

    def mark(self):
        return (
            len(self.main.records),
            len(self.kept),
            {k: len(s.records) for k, s in self.sides.items()} if self.sides else None,
        )

    def rollback(self, mark):
        main, kept, sides = mark
        self.main.truncate(main)
        del self.kept[kept:]
        for name, sink in self.sides.items():
            sink.truncate((sides or {}).get(name, 0))

    def _drop_row(self, row):
        for sink in (self.main, *self.sides.values()):
            keep = [i for i, o in enumerate(sink.origins) if o != row]
            sink.records = [sink.records[i] for i in keep]
            sink.origins = [sink.origins[i] for i in keep]
        self.kept = [o for o in self.kept if o != row]

    def finish(self, types, rejected):
        """The `emitted` list; a record whose value cannot be written rejects
        its input row (appended to `rejected`) and everything that row emitted."""
        while True:
            try:
                return self._finish(types)
            except _columns.EncodeError as e:
                row = e.origin
                rejected.append(types.Rejected(row=row, reason=str(e)))
                self._drop_row(row)

    def _finish(self, types):
        emitted = []
        if self.kept:
            emitted.append(
                types.Emitted(
                    output=MAIN_OUTPUT,
                    batch=types.Batch(rows=0, columns=[]),
                    origins=self.kept,
                    unchanged=True,
                )
            )
        for name, sink in ((MAIN_OUTPUT, self.main), *self.sides.items()):
            if not sink.records:
                continue
            try:
                batch = _columns.encode(sink.records, list(sink.names), types)
            except _columns.EncodeError as e:
                e.origin = sink.origins[e.index]
                raise
            emitted.append(types.Emitted(output=name, batch=batch, origins=sink.origins, unchanged=False))
        return emitted


def _stateless(name, per_row):
    """An operator that calls `per_row(record, emitter)` for every row."""

    class Stateless:
        kind = "stateless"
        state_version = 0

        def __init__(self):
            self.name = name

        def process(self, records, groups, emitter, rejected, types):
            mark = emitter.mark
            rollback = emitter.rollback
            for row, record in enumerate(records):
                emitter.row = row
                m = mark()
                try:
                    per_row(record, emitter)
                except Exception as e:  # noqa: BLE001 - every failure is a dead letter
                    rollback(m)
                    rejected.append(types.Rejected(row=row, reason=_reason(e)))

    return _register(Stateless())


def _emit_all(result, emitter):
    if result is None:
        return
    if isinstance(result, dict):
        emitter.emit(result)
        return
    for record in result:
        emitter.emit(record)


def map(fn):
    """Declares a one-to-one operator: `fn(record) -> record`."""

    def per_row(record, emitter):
        emitter.main.add(fn(record), emitter.row)

    _stateless(fn.__name__, per_row)
    return fn


def filter(fn):
    """Declares a filter: `fn(record) -> bool`; kept records pass unchanged."""

    def per_row(record, emitter):
        if fn(record):
            emitter.kept.append(emitter.row)

    _stateless(fn.__name__, per_row)
    return fn


def filter_map(fn):
    """Declares a filter-map: `fn(record) -> record | None`."""

    def per_row(record, emitter):
        out = fn(record)
        if out is not None:
            emitter.main.add(out, emitter.row)

    _stateless(fn.__name__, per_row)
    return fn


def flat_map(fn):
    """Declares a flat-map: `fn(record) -> iterable of records`."""

    def per_row(record, emitter):
        _emit_all(fn(record), emitter)

    _stateless(fn.__name__, per_row)
    return fn


class MapState:
    """A map state of the current key, kept by the host (entries and values
    are JSON). Writes take effect only if the call succeeds."""

    def __init__(self, group, name):
        self._group = group
        self._name = name

    def get(self, entry, default=None):
        """The value of `entry`, or `default`."""
        from wit_world.imports import host

        raw = host.map_get(self._group, self._name, _dumps(entry))
        return default if raw is None else json.loads(raw)

    def set(self, entry, value):
        """Sets `entry` to `value`."""
        from wit_world.imports import host

        host.map_set(self._group, self._name, _dumps(entry), _dumps(value))

    def remove(self, entry):
        """Removes `entry`."""
        from wit_world.imports import host

        host.map_set(self._group, self._name, _dumps(entry), None)

    def entries(self):
        """Every `(entry, value)` pair, ordered by entry."""
        from wit_world.imports import host

        return [(json.loads(k), json.loads(v)) for k, v in host.map_entries(self._group, self._name)]


class Context:
    """What a keyed function gets besides the record: the key, its state,
    emitting to named outputs, and timers."""

    __slots__ = ("key", "_group", "_slot", "_emitter", "_timers", "timer", "_types")

    def __init__(self, key, group, slot, emitter, timers, timer, types):
        self.key = key
        self._group = group
        self._slot = slot
        self._emitter = emitter
        self._timers = timers
        self.timer = timer
        self._types = types

    @property
    def state(self):
        """The key's value state (any JSON value), `None` when it has none."""
        return self._slot[0]

    @state.setter
    def state(self, value):
        self._slot[0] = value
        self._slot[1] = True

    def clear(self):
        """Removes the key's value state."""
        self.state = None

    def map(self, name):
        """The map state `name` of this key."""
        return MapState(self._group, name)

    def emit(self, record, output=MAIN_OUTPUT):
        """Emits `record` to `output` ("out" is the main output)."""
        self._emitter.emit(record, output)

    def _timer(self, domain, time_ms, delete):
        t = self._types
        self._timers.append(t.TimerRequest(group=self._group, domain=domain, time=int(time_ms), delete=delete))

    def register_event_timer(self, time_ms):
        """Calls `on_timer` for this key when the watermark passes `time_ms`."""
        self._timer(self._types.TimeDomain.EVENT_TIME, time_ms, False)

    def delete_event_timer(self, time_ms):
        """Deletes an event-time timer registered earlier."""
        self._timer(self._types.TimeDomain.EVENT_TIME, time_ms, True)

    def register_processing_timer(self, time_ms):
        """Calls `on_timer` for this key when processing time passes `time_ms`."""
        self._timer(self._types.TimeDomain.PROCESSING_TIME, time_ms, False)

    def delete_processing_timer(self, time_ms):
        """Deletes a processing-time timer registered earlier."""
        self._timer(self._types.TimeDomain.PROCESSING_TIME, time_ms, True)

    def watermark(self):
        """The current watermark, in epoch milliseconds."""
        from wit_world.imports import host

        return host.current_time(self._types.TimeDomain.EVENT_TIME)

    def processing_time(self):
        """The current processing time, in epoch milliseconds."""
        from wit_world.imports import host

        return host.current_time(self._types.TimeDomain.PROCESSING_TIME)


def keyed(fn=None, *, state_version=1, migrate=None, on_timer=None):
    """Declares a keyed process function `fn(record, ctx)`, run after
    `key_by`. Its return value is emitted like `@flat_map`'s.

    `state_version` numbers the layout of the value state; a version that
    changes it passes `migrate(old_state, from_version) -> new_state`, called
    for every key's state during a hot swap. `on_timer(ctx)` runs when a timer
    registered through `ctx` fires (`ctx.timer` is `(domain, time)`).
    """
    if fn is None:
        return lambda f: keyed(f, state_version=state_version, migrate=migrate, on_timer=on_timer)
    _register(_Keyed(fn, state_version, migrate, on_timer))
    return fn


def _load_states(groups):
    slots = []
    for g in groups:
        if g.state is None:
            slots.append([None, False])
            continue
        try:
            slots.append([json.loads(g.state), False])
        except ValueError as e:
            raise ValueError(f"state of key `{g.key}` is not JSON: {e}") from None
    return slots


def _state_updates(slots, types):
    return [
        types.StateUpdate(group=i, state=None if s[0] is None else _dumps(s[0]))
        for i, s in enumerate(slots)
        if s[1]
    ]


class _Keyed:
    kind = "keyed"

    def __init__(self, fn, state_version, migrate, on_timer):
        self.name = fn.__name__
        self.fn = fn
        self.state_version = state_version
        self.migrate_fn = migrate
        self.on_timer_fn = on_timer

    def process(self, records, groups, emitter, rejected, types):
        slots = _load_states(groups)
        row_group = [None] * len(records)
        for g, group in enumerate(groups):
            for row in group.rows:
                if row < len(row_group):
                    row_group[row] = g
        timers = []
        fn = self.fn
        for row, g in enumerate(row_group):
            if g is None:
                continue
            emitter.row = row
            mark = emitter.mark()
            timers_before = len(timers)
            ctx = Context(groups[g].key, g, slots[g], emitter, timers, None, types)
            try:
                _emit_all(fn(records[row], ctx), emitter)
            except Exception as e:  # noqa: BLE001 - every failure is a dead letter
                emitter.rollback(mark)
                del timers[timers_before:]
                rejected.append(types.Rejected(row=row, reason=_reason(e)))
        return _state_updates(slots, types), timers

    def on_timer(self, fired, groups, emitter, types):
        if self.on_timer_fn is None:
            raise ValueError("this operator has no timer function")
        slots = _load_states(groups)
        emitter.row = 0xFFFFFFFF
        timers = []
        for timer in fired:
            if timer.group >= len(groups):
                raise ValueError(f"timer for unknown key group {timer.group}")
            group = groups[timer.group]
            ctx = Context(group.key, timer.group, slots[timer.group], emitter, timers,
                          (timer.domain, timer.time), types)
            try:
                _emit_all(self.on_timer_fn(ctx), emitter)
            except Exception as e:  # noqa: BLE001
                raise ValueError(f"timer at {timer.time} for key `{group.key}`: {_reason(e)}") from None
        return _state_updates(slots, types), timers

    def migrate(self, from_version, states):
        """Converted states, or `(index, reason)` of the first that fails."""
        if from_version == self.state_version:
            return states, None
        if from_version > self.state_version:
            return None, (0, f"this version reads state version {self.state_version} and cannot "
                             f"convert the newer state version {from_version} back")
        if self.migrate_fn is None:
            return None, (0, f"this version declares no migration from state version {from_version}")
        out = []
        for index, raw in enumerate(states):
            try:
                out.append(_dumps(self.migrate_fn(json.loads(raw), from_version)))
            except Exception as e:  # noqa: BLE001
                return None, (index, _reason(e))
        return out, None


_ = builtins  # `map` and `filter` shadow the builtins inside this module only
