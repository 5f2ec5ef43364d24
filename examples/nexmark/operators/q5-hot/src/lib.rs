//! Nexmark q5, step 3: per window, the auction(s) with the most bids. Runs
//! over all auctions as one key; a window's counts carry its last
//! millisecond as event time, and a timer there emits the winners.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use weir_guest::Keyed;

/// A count from step 2.
#[derive(Deserialize)]
pub struct AuctionCount {
    auction: i64,
    window_end: i64,
    count: i64,
}

/// A hot item: an auction with the most bids of its window.
#[derive(Serialize)]
pub struct HotItem {
    window_end: i64,
    auction: i64,
    count: i64,
}

/// The best count so far of each open window, and the auctions that have it.
#[derive(Serialize, Deserialize, Default)]
pub struct Best {
    count: i64,
    auctions: Vec<i64>,
}

#[weir_guest::keyed(on_timer = emit)]
pub fn track(c: AuctionCount, ctx: &mut Keyed<BTreeMap<i64, Best>>) {
    let best = ctx.state().entry(c.window_end).or_default();
    if c.count > best.count {
        *best = Best {
            count: c.count,
            auctions: vec![c.auction],
        };
    } else if c.count == best.count {
        best.auctions.push(c.auction);
    }
    ctx.register_event_timer(c.window_end - 1);
}

/// Emits a closed window's hot items, in auction order.
pub fn emit(ctx: &mut Keyed<BTreeMap<i64, Best>>) -> Vec<HotItem> {
    let Some((_, time)) = ctx.fired_timer() else {
        return Vec::new();
    };
    let window_end = time + 1;
    let Some(mut best) = ctx.state().remove(&window_end) else {
        return Vec::new();
    };
    best.auctions.sort_unstable();
    best.auctions
        .into_iter()
        .map(|auction| HotItem {
            window_end,
            auction,
            count: best.count,
        })
        .collect()
}
