"""Counts per key and takes over the Rust version 1's state."""

import unittest

import app  # noqa: F401  (declares the operator)
from weir_operator.testing import Harness


class Counter(unittest.TestCase):
    def test_counts_and_sums_per_key(self):
        h = Harness(key_by="key")
        out = h.run([{"key": "a", "seq": 1}, {"key": "b", "seq": 1}, {"key": "a", "seq": 2}])
        self.assertEqual([r["count"] for r in out.records()], [1, 1, 2])
        self.assertEqual(h.state("a"), {"count": 2, "sum_seq": 3})

    def test_migrates_version_1_counts(self):
        h = Harness(key_by="key")
        self.assertEqual(h.migrate(1, [3]), [{"count": 3, "sum_seq": 6}])
        self.assertEqual(h.migrate(2, [{"count": 1, "sum_seq": 1}]), [{"count": 1, "sum_seq": 1}])
        with self.assertRaises(ValueError):
            h.migrate(3, [{}])


if __name__ == "__main__":
    unittest.main()
