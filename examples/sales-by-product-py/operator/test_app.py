"""Running totals per product on plain CPython; the Rust crate's test cases."""

import unittest

import app  # noqa: F401  (declares the operator)
from weir_operator.testing import Harness


class Sales(unittest.TestCase):
    def test_keeps_running_totals_per_product(self):
        h = Harness(key_by="product")
        out = h.run([
            {"product": "tea", "qty": 2, "price_cents": 300},
            {"product": "cake", "qty": 1, "price_cents": 450},
            {"product": "tea", "qty": 1, "price_cents": 300},
            {"product": "tea", "qty": "x", "price_cents": 300},
        ])
        self.assertEqual(out.records(), [
            {"product": "tea", "units": 2, "revenue_cents": 600},
            {"product": "cake", "units": 1, "revenue_cents": 450},
            {"product": "tea", "units": 3, "revenue_cents": 900},
        ])
        self.assertEqual(out.rejected, [(3, 'field `qty`: invalid type: string "x", expected i64')])
        out = h.run([{"product": "cake", "qty": 3, "price_cents": 400}])
        self.assertEqual(out.records(), [{"product": "cake", "units": 4, "revenue_cents": 1650}])
        self.assertEqual(h.state("tea"), {"units": 3, "revenue_cents": 900})


if __name__ == "__main__":
    unittest.main()
