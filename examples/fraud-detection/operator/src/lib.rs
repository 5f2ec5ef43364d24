//! Flink's fraud-detection walkthrough: alert when an account's transaction
//! under 1.00 is immediately followed by one over 500.00 less than a minute
//! later (event time). The small transaction is remembered in keyed state,
//! and an event-time timer forgets it once the minute has passed.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use weir_guest::Keyed;

const SMALL: f64 = 1.00;
const LARGE: f64 = 500.00;
const ONE_MINUTE_MS: i64 = 60_000;

/// A card transaction; `ts` is its event time in epoch milliseconds.
#[derive(Deserialize)]
pub struct Transaction {
    tx_id: Value,
    account_id: Value,
    amount: f64,
    ts: i64,
}

/// The account's last transaction, when it was small (the flag).
#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
pub struct SmallTransaction {
    tx_id: Value,
    ts: i64,
}

/// A suspected card test: a small charge, then a large one.
#[derive(Serialize)]
pub struct Alert {
    account_id: Value,
    small_tx_id: Value,
    large_tx_id: Value,
}

#[weir_guest::keyed(on_timer = forget)]
pub fn detect(tx: Transaction, ctx: &mut Keyed<SmallTransaction>) -> Option<Alert> {
    let mut alert = None;
    if let Some(small) = ctx.get() {
        let later = tx.ts - small.ts;
        if tx.amount > LARGE && (0..ONE_MINUTE_MS).contains(&later) {
            alert = Some(Alert {
                account_id: tx.account_id.clone(),
                small_tx_id: small.tx_id.clone(),
                large_tx_id: tx.tx_id.clone(),
            });
        }
        // Only the very next transaction counts.
        let expiry = small.ts + ONE_MINUTE_MS;
        ctx.delete_event_timer(expiry);
        ctx.clear();
    }
    if tx.amount < SMALL {
        ctx.register_event_timer(tx.ts + ONE_MINUTE_MS);
        ctx.set(SmallTransaction {
            tx_id: tx.tx_id,
            ts: tx.ts,
        });
    }
    alert
}

/// A minute after a small transaction, it no longer flags the account.
pub fn forget(ctx: &mut Keyed<SmallTransaction>) {
    ctx.clear();
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weir_guest::testing::Harness;

    #[test]
    fn a_small_then_a_large_charge_within_a_minute_alerts() {
        let mut harness = Harness::keyed(super::weir_operator(), "account_id");
        let out = harness.run(&[
            json!({"tx_id": 1, "account_id": 7, "amount": 0.5, "ts": 1_000}),
            json!({"tx_id": 2, "account_id": 8, "amount": 900.0, "ts": 2_000}),
            json!({"tx_id": 3, "account_id": 7, "amount": 700.0, "ts": 30_000}),
            json!({"tx_id": 4, "account_id": 8, "amount": 0.1, "ts": 40_000}),
            json!({"tx_id": 5, "account_id": 8, "amount": 20.0, "ts": 41_000}),
            json!({"tx_id": 6, "account_id": 8, "amount": 600.0, "ts": 42_000}),
        ]);
        assert_eq!(
            out.records("out"),
            vec![json!({"account_id": 7, "small_tx_id": 1, "large_tx_id": 3})]
        );
    }

    #[test]
    fn a_large_charge_a_minute_later_does_not_alert() {
        let mut harness = Harness::keyed(super::weir_operator(), "account_id");
        let out = harness.run(&[
            json!({"tx_id": 1, "account_id": 7, "amount": 0.99, "ts": 0}),
            json!({"tx_id": 2, "account_id": 7, "amount": 500.01, "ts": 60_000}),
        ]);
        assert!(out.records("out").is_empty());
        assert_eq!(harness.state("7"), None);
    }
}

#[cfg(test)]
mod integer_amounts {
    use serde_json::json;
    use weir_guest::testing::Harness;

    #[test]
    fn whole_dollar_amounts_are_numbers_too() {
        let mut harness = Harness::keyed(super::weir_operator(), "account_id");
        let out = harness.run(&[
            json!({"tx_id": 1, "account_id": 7, "amount": 0, "ts": 1_000}),
            json!({"tx_id": 2, "account_id": 7, "amount": 501, "ts": 2_000}),
        ]);
        assert_eq!(
            out.records("out"),
            vec![json!({"account_id": 7, "small_tx_id": 1, "large_tx_id": 2})]
        );
    }
}
