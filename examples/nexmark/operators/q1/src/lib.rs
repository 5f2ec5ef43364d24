//! Nexmark q1: every bid with its price converted from dollars to euros
//! (`SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid`).

use serde::{Deserialize, Serialize};

/// A Nexmark event; the bid fields are absent on other kinds.
#[derive(Deserialize)]
pub struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    auction: Option<i64>,
    bidder: Option<i64>,
    price: Option<i64>,
    date_time: i64,
    extra: Option<&'a str>,
}

/// A bid priced in euros.
#[derive(Serialize, Debug, PartialEq)]
pub struct EuroBid<'a> {
    pub auction: i64,
    pub bidder: i64,
    pub price: f64,
    pub date_time: i64,
    pub extra: &'a str,
}

#[weir_guest::filter_map]
pub fn q1(event: Event<'_>) -> Option<EuroBid<'_>> {
    if event.kind != "bid" {
        return None;
    }
    Some(EuroBid {
        auction: event.auction?,
        bidder: event.bidder?,
        price: event.price? as f64 * 0.908,
        date_time: event.date_time,
        extra: event.extra.unwrap_or_default(),
    })
}
