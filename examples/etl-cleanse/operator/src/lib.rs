//! Cleanses raw orders for the warehouse: drops test and invalid orders,
//! normalises the rest, and dead-letters orders whose timestamp is unusable.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A raw order as it arrives; every field is checked by hand, so nothing
/// here fails to deserialize.
#[derive(Deserialize)]
pub struct RawOrder {
    order_id: Option<Value>,
    user_email: Option<Value>,
    amount_cents: Option<Value>,
    currency: Option<Value>,
    country: Option<Value>,
    ts: Option<Value>,
    test: Option<Value>,
}

/// A cleansed order.
#[derive(Serialize, Debug, PartialEq)]
pub struct Order {
    pub order_id: Value,
    pub email: String,
    pub amount: f64,
    pub currency: String,
    pub country: String,
    pub ts_ms: i64,
}

/// `None` drops the order; `Err` sends it to the dead-letter output.
#[weir_guest::filter_map]
pub fn cleanse(raw: RawOrder) -> Result<Option<Order>, String> {
    let order_id = match raw.order_id {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(id) => id,
    };
    let Some(cents) = raw.amount_cents.as_ref().and_then(Value::as_u64) else {
        return Ok(None);
    };
    if raw.test == Some(Value::Bool(true)) {
        return Ok(None);
    }
    let ts = text(&raw.ts, "ts")?;
    let ts_ms = chrono::DateTime::parse_from_rfc3339(ts)
        .map_err(|e| format!("field `ts`: `{ts}` is not an RFC 3339 timestamp: {e}"))?
        .timestamp_millis();
    Ok(Some(Order {
        order_id,
        email: text(&raw.user_email, "user_email")?.trim().to_lowercase(),
        amount: cents as f64 / 100.0,
        currency: text(&raw.currency, "currency")?.to_uppercase(),
        country: text(&raw.country, "country")?.to_uppercase(),
        ts_ms,
    }))
}

fn text<'a>(value: &'a Option<Value>, field: &str) -> Result<&'a str, String> {
    match value {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(format!("missing field `{field}`")),
        Some(other) => Err(format!("field `{field}` must be a string, not {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weir_guest::testing::Harness;

    #[test]
    fn cleanses_a_valid_order() {
        let out = Harness::new(weir_operator()).run(&[json!({
            "order_id": "o-1", "user_email": "  Ann@Example.COM ", "amount_cents": 1999,
            "currency": "eur", "country": "de", "ts": "2024-03-01T12:00:00.250+01:00"
        })]);
        assert_eq!(
            out.records("out"),
            vec![
                json!({"order_id": "o-1", "email": "ann@example.com", "amount": 19.99,
                        "currency": "EUR", "country": "DE", "ts_ms": 1709290800250i64})
            ]
        );
    }

    #[test]
    fn drops_invalid_and_test_orders_and_rejects_bad_timestamps() {
        let base = json!({"order_id": "o", "user_email": "a@b", "amount_cents": 1,
                          "currency": "usd", "country": "us", "ts": "2024-01-01T00:00:00Z"});
        let with = |k: &str, v: Value| {
            let mut r = base.clone();
            r[k] = v;
            r
        };
        let out = Harness::new(weir_operator()).run(&[
            with("order_id", json!("")),
            with("amount_cents", json!(-5)),
            with("amount_cents", json!(1.5)),
            with("amount_cents", json!("100")),
            with("test", json!(true)),
            with("ts", json!("yesterday")),
            with("test", json!(false)),
        ]);
        assert_eq!(out.records("out").len(), 1);
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected[0].0, 5);
        assert!(
            out.rejected[0].1.contains("RFC 3339"),
            "{}",
            out.rejected[0].1
        );
    }
}
