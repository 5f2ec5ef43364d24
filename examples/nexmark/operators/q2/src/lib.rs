//! Nexmark q2: the bids on auctions whose id is a multiple of 123
//! (`SELECT auction, price FROM bid WHERE auction % 123 = 0`).

use serde::{Deserialize, Serialize};

/// A Nexmark event; the bid fields are absent on other kinds.
#[derive(Deserialize)]
pub struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    auction: Option<i64>,
    price: Option<i64>,
}

/// A selected bid.
#[derive(Serialize, Debug, PartialEq)]
pub struct Selected {
    pub auction: i64,
    pub price: i64,
}

#[weir_guest::filter_map]
pub fn q2(event: Event<'_>) -> Option<Selected> {
    let auction = event.auction?;
    (event.kind == "bid" && auction % 123 == 0).then_some(Selected {
        auction,
        price: event.price?,
    })
}
