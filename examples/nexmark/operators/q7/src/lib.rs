//! Nexmark q7: the highest bid(s) of each 10 s tumbling window, over all
//! events as one key (no `key_by`).

use serde::{Deserialize, Serialize};
use weir_guest::Window;

/// A Nexmark event; bid fields are absent on other kinds.
#[derive(Deserialize)]
pub struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    auction: Option<i64>,
    bidder: Option<i64>,
    price: Option<i64>,
    date_time: i64,
}

/// A bid kept as the window's highest so far.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TopBid {
    auction: i64,
    bidder: i64,
    price: i64,
    date_time: i64,
}

/// The highest bids of a window (several when they tie).
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct Highest {
    bids: Vec<TopBid>,
}

/// A window's highest bid, as emitted.
#[derive(Serialize)]
pub struct WindowMax {
    window_end: i64,
    auction: i64,
    bidder: i64,
    price: i64,
    date_time: i64,
}

#[weir_guest::window(tumbling = "10s", result = highest)]
pub fn add(acc: &mut Highest, event: Event<'_>) {
    let (Some(auction), Some(bidder), Some(price)) = (event.auction, event.bidder, event.price)
    else {
        return;
    };
    if event.kind != "bid" {
        return;
    }
    let bid = TopBid {
        auction,
        bidder,
        price,
        date_time: event.date_time,
    };
    match acc.bids.first().map(|b| b.price) {
        Some(top) if price < top => {}
        Some(top) if price == top => acc.bids.push(bid),
        _ => acc.bids = vec![bid],
    }
}

/// Every bid with the window's highest price, in arrival order.
pub fn highest(_key: &str, window: Window, acc: &Highest) -> Vec<WindowMax> {
    acc.bids
        .iter()
        .map(|b| WindowMax {
            window_end: window.end,
            auction: b.auction,
            bidder: b.bidder,
            price: b.price,
            date_time: b.date_time,
        })
        .collect()
}
