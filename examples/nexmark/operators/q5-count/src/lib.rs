//! Nexmark q5, step 2: bids per auction in 10 s windows sliding every 2 s.

use serde::{Deserialize, Serialize};
use weir_guest::Window;

/// A bid (only its existence counts; the key is its auction).
#[derive(Deserialize)]
pub struct Bid {}

/// One auction's bids in one window.
#[derive(Serialize)]
pub struct AuctionCount {
    auction: i64,
    window_end: i64,
    count: i64,
}

#[weir_guest::window(sliding = "10s", every = "2s", result = auction_count)]
pub fn count(bids: &mut i64, _bid: Bid) {
    *bids += 1;
}

/// The window's count for the auction (the key).
pub fn auction_count(
    auction: &str,
    window: Window,
    bids: &i64,
) -> Result<Option<AuctionCount>, String> {
    let auction = auction
        .parse()
        .map_err(|_| format!("auction id `{auction}` is not an integer"))?;
    Ok(Some(AuctionCount {
        auction,
        window_end: window.end,
        count: *bids,
    }))
}
