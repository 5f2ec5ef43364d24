"""The operator's rules on plain CPython (`python3 -m unittest` here, with
`guest-sdk/python` on PYTHONPATH); the same cases as the Rust crate's tests."""

import unittest

import app  # noqa: F401  (declares the operator)
from weir_operator.testing import Harness

BASE = {"order_id": "o", "user_email": "a@b", "amount_cents": 1,
        "currency": "usd", "country": "us", "ts": "2024-01-01T00:00:00Z"}


def order(**changes):
    return {**BASE, **changes}


class Cleanse(unittest.TestCase):
    def test_cleanses_a_valid_order(self):
        out = Harness().run([{
            "order_id": "o-1", "user_email": "  Ann@Example.COM ", "amount_cents": 1999,
            "currency": "eur", "country": "de", "ts": "2024-03-01T12:00:00.250+01:00",
        }])
        self.assertEqual(out.records(), [{
            "order_id": "o-1", "email": "ann@example.com", "amount": 19.99,
            "currency": "EUR", "country": "DE", "ts_ms": 1709290800250,
        }])

    def test_drops_invalid_and_test_orders_and_rejects_bad_timestamps(self):
        out = Harness().run([
            order(order_id=""),
            order(amount_cents=-5),
            order(amount_cents=1.5),
            order(amount_cents="100"),
            order(test=True),
            order(ts="yesterday"),
            order(test=False),
        ])
        self.assertEqual(len(out.records()), 1)
        self.assertEqual(out.rejected, [(5, "field `ts`: `yesterday` is not an RFC 3339 "
                                            "timestamp: premature end of input")])

    def test_names_the_field_that_is_not_a_string(self):
        out = Harness().run([order(currency=5), order(country=None)])
        self.assertEqual(out.rejected, [(0, "field `currency` must be a string, not 5"),
                                        (1, "missing field `country`")])


if __name__ == "__main__":
    unittest.main()
