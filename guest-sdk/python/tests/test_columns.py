"""The column codec on CPython, with stand-ins for the generated WIT types:
the type rule and the float format must match the Rust SDK's `ser.rs`."""

import json
import unittest
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Optional

from weir_operator import _columns


def _variant(name):
    return dataclass(type(name, (), {"__annotations__": {"value": Any}}))


types = SimpleNamespace(
    TextValues=dataclass(type("TextValues", (), {"__annotations__": {"offsets": Any, "bytes": Any}})),
    Values_Int64=_variant("Values_Int64"),
    Values_Float64=_variant("Values_Float64"),
    Values_Boolean=_variant("Values_Boolean"),
    Values_Utf8=_variant("Values_Utf8"),
    Values_Json=_variant("Values_Json"),
    Column=dataclass(
        type("Column", (), {"__annotations__": {"name": str, "values": Any, "validity": Optional[bytes]}})
    ),
    Batch=dataclass(type("Batch", (), {"__annotations__": {"rows": int, "columns": Any}})),
)


def encode(records):
    names = {}
    for r in records:
        for k in r:
            names.setdefault(k)
    return _columns.encode(records, list(names), types)


class FloatJson(unittest.TestCase):
    def test_matches_serde_json(self):
        # serde_json 1.0.154's forms of these floats (printed by serde_json).
        cases = {
            5.0: "5.0",
            0.1: "0.1",
            1234.56: "1234.56",
            -0.0: "-0.0",
            1e-5: "0.00001",
            1.5e-5: "0.000015",
            1e-7: "1e-7",
            1.25e-7: "1.25e-7",
            1e15: "1000000000000000.0",
            1e16: "1e+16",
            1.5e300: "1.5e+300",
            2.5e30: "2.5e+30",
            1.5e-9: "1.5e-9",
            float("nan"): "null",
            float("inf"): "null",
        }
        for x, want in cases.items():
            self.assertEqual(_columns.float_json(x), want, x)


class NestedJson(unittest.TestCase):
    def test_nested_values_are_written_as_serde_json_writes_a_value(self):
        # Printed by serde_json 1.0.154 from the same document.
        doc = {"b": [2.0, 1e-5, 1.5e-5, None, True], "a": {"y": 1.5e-9, "x": 1e20}, "c": "é"}
        self.assertEqual(
            _columns.to_json(doc),
            '{"a":{"x":1e+20,"y":1.5e-9},"b":[2.0,0.00001,0.000015,null,true],"c":"é"}',
        )

    def test_what_json_cannot_hold_is_refused(self):
        with self.assertRaises(TypeError):
            _columns.to_json({"a": object()})


class Encode(unittest.TestCase):
    def test_one_scalar_type_per_column_else_json(self):
        batch = encode(
            [
                {"i": 1, "f": 1.5, "b": True, "s": "x", "mix": 1, "nested": {"z": 1, "a": [1, 2.5]}},
                {"i": 2, "f": 2.0, "b": False, "s": "é", "mix": 2.5, "nested": None},
            ]
        )
        kinds = {c.name: type(c.values).__name__ for c in batch.columns}
        self.assertEqual(
            kinds,
            {
                "i": "Values_Int64",
                "f": "Values_Float64",
                "b": "Values_Boolean",
                "s": "Values_Utf8",
                "mix": "Values_Json",
                "nested": "Values_Json",
            },
        )
        cols = {c.name: c for c in batch.columns}
        mix = cols["mix"].values.value
        self.assertEqual(mix.bytes, b"12.5")
        self.assertEqual(mix.offsets, [0, 1, 4])
        nested = cols["nested"]
        self.assertEqual(nested.values.value.bytes, b'{"a":[1,2.5],"z":1}')
        self.assertEqual(nested.validity, bytes([0b01]))
        self.assertEqual(cols["s"].values.value.bytes, "xé".encode())
        self.assertEqual(cols["s"].values.value.offsets, [0, 1, 3])

    def test_absent_fields_are_nulls_and_beyond_i64_is_json(self):
        batch = encode([{"a": 1}, {"b": "x"}, {"a": 2**64 - 1}])
        a, b = batch.columns
        self.assertEqual(a.validity, bytes([0b101]))
        self.assertIsInstance(a.values, types.Values_Json)
        self.assertEqual(a.values.value.bytes, b"118446744073709551615")
        self.assertEqual(b.validity, bytes([0b010]))
        self.assertEqual(b.values.value.offsets, [0, 0, 1, 1])

    def test_round_trip(self):
        records = [{"id": 1, "name": "ä", "tags": ["x"]}, {"id": 2}, {"name": "b", "score": 0.5}]
        self.assertEqual(_columns.decode(encode(records), types), records)

    def test_unencodable_value_names_its_record(self):
        with self.assertRaises(_columns.EncodeError) as e:
            encode([{"a": 1}, {"a": {1, 2}}])
        self.assertEqual(e.exception.index, 1)
        self.assertIn("field `a`", str(e.exception))


if __name__ == "__main__":
    unittest.main()
