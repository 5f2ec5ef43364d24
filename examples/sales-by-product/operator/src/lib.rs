//! Running sales totals per product, kept in keyed state: after every order
//! it emits the product's units and revenue so far (a changelog whose last
//! line per product is its total).

use serde::{Deserialize, Serialize};
use weir_guest::Keyed;

/// An order line. A missing or non-integer `qty` or `price_cents` fails
/// deserialization, which sends the order to the dead-letter output.
#[derive(Deserialize)]
pub struct Order {
    product: serde_json::Value,
    qty: i64,
    price_cents: i64,
}

/// The state kept per product.
#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
pub struct Totals {
    pub units: i64,
    pub revenue_cents: i64,
}

/// The running totals of one product.
#[derive(Serialize)]
pub struct Sales {
    product: serde_json::Value,
    units: i64,
    revenue_cents: i64,
}

#[weir_guest::keyed]
pub fn sales(order: Order, ctx: &mut Keyed<Totals>) -> Result<Sales, String> {
    let totals = ctx.state();
    let overflow = || "the totals overflow a 64-bit integer".to_owned();
    let revenue = order
        .qty
        .checked_mul(order.price_cents)
        .ok_or_else(overflow)?;
    let units = totals.units.checked_add(order.qty).ok_or_else(overflow)?;
    let revenue_cents = totals
        .revenue_cents
        .checked_add(revenue)
        .ok_or_else(overflow)?;
    *totals = Totals {
        units,
        revenue_cents,
    };
    Ok(Sales {
        product: order.product,
        units,
        revenue_cents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weir_guest::testing::Harness;

    #[test]
    fn keeps_running_totals_per_product() {
        let mut h = Harness::keyed(weir_operator(), "product");
        let out = h.run(&[
            json!({"product": "tea", "qty": 2, "price_cents": 300}),
            json!({"product": "cake", "qty": 1, "price_cents": 450}),
            json!({"product": "tea", "qty": 1, "price_cents": 300}),
            json!({"product": "tea", "qty": "x", "price_cents": 300}),
        ]);
        assert_eq!(
            out.records("out"),
            vec![
                json!({"product": "tea", "units": 2, "revenue_cents": 600}),
                json!({"product": "cake", "units": 1, "revenue_cents": 450}),
                json!({"product": "tea", "units": 3, "revenue_cents": 900}),
            ]
        );
        assert_eq!(out.rejected.len(), 1);
        let out = h.run(&[json!({"product": "cake", "qty": 3, "price_cents": 400})]);
        assert_eq!(
            out.records("out"),
            vec![json!({"product": "cake", "units": 4, "revenue_cents": 1650})]
        );
        assert_eq!(
            h.state("tea"),
            Some(json!({"units": 3, "revenue_cents": 900}))
        );
    }
}
