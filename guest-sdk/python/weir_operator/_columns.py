"""Column batches to records and back, shaped like the Rust SDK's `de.rs` and
`ser.rs` so a Python operator's output is the same as a Rust one's.

Input: each column is decoded once, as a whole (one `bytes.decode` per text
column), then rows are built with one `dict(zip(...))` each; nulls become
absent keys.

Output: records are gathered as dicts and turned into columns at the end of
the call, one column at a time. The type rule is the Rust SDK's: a column
whose non-null values are all `int` is int64, all `float` float64, all `bool`
boolean, all `str` utf8; anything else (nested values, or a mix of types,
including ints mixed with floats) is a JSON column, so nothing is lost.
Nested objects are written with sorted keys, as serde_json writes a `Value`.
"""

import json
import math
from itertools import accumulate

_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1
_NONE = type(None)


def _texts(tv, rows):
    """The `rows` strings of a text column (offsets + bytes)."""
    offs = tv.offsets
    if rows == 0:
        return []
    data = tv.bytes
    text = data.decode("utf-8")
    if len(text) == len(data):
        # ASCII: byte offsets are character offsets, slice the decoded text.
        return [text[a:b] for a, b in zip(offs, offs[1:])]
    return [data[a:b].decode("utf-8") for a, b in zip(offs, offs[1:])]


def _null_rows(validity, rows):
    """Indices of the rows a validity bitmap marks null."""
    return [i for i in range(rows) if not (validity[i >> 3] >> (i & 7)) & 1]


def decode(batch, types):
    """The records of `batch` as dicts (nulls are absent keys)."""
    rows = batch.rows
    names = []
    columns = []
    nulls = []
    for col in batch.columns:
        v = col.values
        if isinstance(v, (types.Values_Utf8,)):
            values = _texts(v.value, rows)
        elif isinstance(v, types.Values_Json):
            loads = json.loads
            values = [loads(s) if s else None for s in _texts(v.value, rows)]
        else:
            values = v.value
        if len(values) < rows:
            raise ValueError(f"column `{col.name}` is shorter than the batch")
        names.append(col.name)
        columns.append(values)
        if col.validity is not None:
            nulls.append((col.name, _null_rows(col.validity, rows)))
    if not columns:
        return [{} for _ in range(rows)]
    records = [dict(zip(names, t)) for t in zip(*columns)]
    for name, null_rows in nulls:
        for i in null_rows:
            del records[i][name]
    return records


def float_json(x):
    """A float as serde_json 1.0.154 writes it: the shortest form, with a
    signed exponent (`1e+16`, `1.5e-9`), `null` if not finite."""
    if not math.isfinite(x):
        return "null"
    r = repr(x)
    if "e" not in r:
        return r
    mantissa, exp = r.split("e")
    exp = int(exp)
    sign = "-" if mantissa.startswith("-") else ""
    digits = mantissa.lstrip("-").replace(".", "")
    point = exp + 1  # value is 0.<digits> * 10**point
    if -5 < point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    return f"{mantissa}e{exp:+d}"


def to_json(v):
    """`v` as JSON text the way the Rust SDK writes it (sorted keys, floats
    in serde_json's form)."""
    return _scalar_json(v)


def _scalar_json(v):
    t = type(v)
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return str(v)
    if t is float:
        return float_json(v)
    if t is str:
        return json.dumps(v, ensure_ascii=False)
    if v is None:
        return "null"
    # Keys sorted, as serde_json writes a `Value` (the Rust SDK's untyped
    # JSON); written here rather than by `json.dumps`, whose floats are
    # Python's (`1e-05`), not serde_json's (`0.00001`).
    if t is dict or isinstance(v, dict):
        items = sorted(((_key_text(k), x) for k, x in v.items()), key=lambda kx: kx[0])
        inner = ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_scalar_json(x)}" for k, x in items)
        return "{" + inner + "}"
    if t is list or t is tuple or isinstance(v, (list, tuple)):
        return "[" + ",".join(map(_scalar_json, v)) + "]"
    for base in (bool, int, float, str):  # subclasses, such as an IntEnum
        if isinstance(v, base):
            return _scalar_json(base(v))
    raise TypeError(f"Object of type {t.__name__} is not JSON serializable")


def _key_text(k):
    """An object key as `json.dumps` turns it into text."""
    if isinstance(k, str):
        return k
    if k is None or isinstance(k, (bool, int, float)):
        return _scalar_json(k)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(k).__name__}")


def _text_values(strings, types):
    joined = "".join(strings)
    if joined.isascii():
        offsets = [0, *accumulate(map(len, strings))]
        data = joined.encode()
    else:
        encoded = [s.encode() for s in strings]
        offsets = [0, *accumulate(map(len, encoded))]
        data = b"".join(encoded)
    if offsets[-1] > 0x7FFFFFFF:
        raise ValueError("a text column of an output batch exceeds 2 GiB")
    return types.TextValues(offsets=offsets, bytes=data)


class EncodeError(Exception):
    """A value of record `index` cannot be written to a column."""

    def __init__(self, index, reason):
        super().__init__(reason)
        self.index = index


def _column(name, values, types):
    kinds = set(map(type, values))
    has_null = _NONE in kinds
    kinds.discard(_NONE)
    n = len(values)
    validity = None
    if has_null:
        bits = bytearray((n + 7) // 8 or 1)
        for i, v in enumerate(values):
            if v is not None:
                bits[i >> 3] |= 1 << (i & 7)
        validity = bytes(bits)
    if kinds == {int}:
        filled = [0 if v is None else v for v in values] if has_null else values
        if min(filled) >= _I64_MIN and max(filled) <= _I64_MAX:
            return types.Column(name=name, values=types.Values_Int64(list(filled)), validity=validity)
    elif kinds == {float}:
        filled = [0.0 if v is None else v for v in values] if has_null else list(values)
        return types.Column(name=name, values=types.Values_Float64(filled), validity=validity)
    elif kinds == {bool}:
        filled = [False if v is None else v for v in values] if has_null else list(values)
        return types.Column(name=name, values=types.Values_Boolean(filled), validity=validity)
    elif kinds == {str}:
        filled = ["" if v is None else v for v in values] if has_null else values
        return types.Column(name=name, values=types.Values_Utf8(_text_values(filled, types)), validity=validity)
    docs = []
    for i, v in enumerate(values):
        if v is None:
            docs.append("")
            continue
        try:
            docs.append(_scalar_json(v))
        except (TypeError, ValueError) as e:
            raise EncodeError(i, f"field `{name}`: {e}") from None
    return types.Column(name=name, values=types.Values_Json(_text_values(docs, types)), validity=validity)


def encode(records, names, types):
    """One batch from `records` (dicts); `names` lists every key in order of
    first appearance."""
    columns = [_column(name, [r.get(name) for r in records], types) for name in names]
    return types.Batch(rows=len(records), columns=columns)
