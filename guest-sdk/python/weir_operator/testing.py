"""Run an operator on plain CPython, the way the host runs it in Wasm, so an
operator is unit-tested with `python3 -m unittest` (no component build)::

    import app                      # declares the operator
    from weir_operator.testing import Harness

    out = Harness().run([{"x": 21}])
    assert out.records() == [{"y": 42}]

Records go through the same column codec as in the component (types of
columns, nulls as absent keys, JSON for nested values). Map state and the
host's clock need the host: they are not available here.
"""

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any, List, Optional

from . import _columns, _runtime


@dataclass
class TextValues:
    offsets: List[int]
    bytes: bytes


@dataclass
class Values_Int64:
    value: List[int]


@dataclass
class Values_Float64:
    value: List[float]


@dataclass
class Values_Boolean:
    value: List[bool]


@dataclass
class Values_Utf8:
    value: TextValues


@dataclass
class Values_Json:
    value: TextValues


@dataclass
class Column:
    name: str
    values: Any
    validity: Optional[bytes]


@dataclass
class Batch:
    rows: int
    columns: List[Column]


@dataclass
class KeyGroup:
    key: str
    rows: List[int]
    state: Optional[bytes]


@dataclass
class Emitted:
    output: str
    batch: Batch
    origins: List[int]
    unchanged: bool


@dataclass
class Rejected:
    row: int
    reason: str


@dataclass
class StateUpdate:
    group: int
    state: Optional[bytes]


class TimeDomain(Enum):
    EVENT_TIME = 0
    PROCESSING_TIME = 1


@dataclass
class TimerRequest:
    group: int
    domain: TimeDomain
    time: int
    delete: bool


class types:
    """Stand-ins for the WIT types componentize-py generates."""

    TextValues = TextValues
    Values_Int64 = Values_Int64
    Values_Float64 = Values_Float64
    Values_Boolean = Values_Boolean
    Values_Utf8 = Values_Utf8
    Values_Json = Values_Json
    Column = Column
    Batch = Batch
    KeyGroup = KeyGroup
    Emitted = Emitted
    Rejected = Rejected
    StateUpdate = StateUpdate
    TimeDomain = TimeDomain
    TimerRequest = TimerRequest


def batch_of(records):
    """A column batch of `records` (dicts), as the host would hand it over."""
    names = {}
    for r in records:
        for k in r:
            names.setdefault(k)
    return _columns.encode([dict(r) for r in records], list(names), types)


def _key_text(value):
    if isinstance(value, str):
        return value
    return json.dumps(value)


class Output:
    """What one `Harness.run` produced."""

    def __init__(self, inputs, emitted, rejected, timers):
        self._inputs = inputs
        self._emitted = emitted
        #: `(row, reason)` of every rejected input record.
        self.rejected = [(r.row, r.reason) for r in rejected]
        #: Timer requests, as `(key group, domain, time, delete)`.
        self.timers = [(t.group, t.domain, t.time, t.delete) for t in timers]

    def records(self, output="out"):
        """The records emitted to `output`, in order (as the host reads them)."""
        out = []
        for e in self._emitted:
            if e.output != output:
                continue
            if e.unchanged:
                out.extend(dict(self._inputs[i]) for i in e.origins)
            else:
                out.extend(_columns.decode(e.batch, types))
        return out


class Harness:
    """Runs the operator the app declared; `key_by` names the key field of a
    keyed operator. Value state is kept between runs, per key."""

    def __init__(self, key_by=None):
        self.operator = _runtime.registered()
        if self.operator is None:
            raise RuntimeError("import the app first: it declares no operator yet")
        self.key_by = key_by
        self._states = {}

    def run(self, records):
        """Runs one batch of `records` and returns its `Output`."""
        batch = batch_of(records)
        inputs = _columns.decode(batch, types)
        groups = []
        if self.key_by is not None:
            index = {}
            for row, record in enumerate(inputs):
                if self.key_by not in record:
                    raise ValueError(f"record {row} has no key field `{self.key_by}`")
                key = _key_text(record[self.key_by])
                if key not in index:
                    index[key] = len(groups)
                    groups.append(KeyGroup(key=key, rows=[], state=self._states.get(key)))
                groups[index[key]].rows.append(row)
        emitter = _runtime.Emitter()
        rejected = []
        result = self.operator.process(inputs, groups, emitter, rejected, types)
        updates, timers = result if result is not None else ([], [])
        emitted = emitter.finish(types, rejected)
        rejected.sort(key=lambda r: r.row)
        for update in updates:
            key = groups[update.group].key
            if update.state is None:
                self._states.pop(key, None)
            else:
                self._states[key] = update.state
        return Output(inputs, emitted, rejected, timers)

    def state(self, key):
        """The value state of `key` (decoded JSON), or `None`."""
        raw = self._states.get(key)
        return None if raw is None else json.loads(raw)

    def migrate(self, from_version, states):
        """The operator's `migrate` on JSON values: the new values, or raises
        `ValueError` with the index and reason of the first failure."""
        raw = [json.dumps(s).encode() for s in states]
        out, error = self.operator.migrate(from_version, raw)
        if error is not None:
            raise ValueError(f"state {error[0]}: {error[1]}")
        return [json.loads(s) for s in out]
