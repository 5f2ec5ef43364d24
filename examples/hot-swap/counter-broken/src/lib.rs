//! A counter with a bug that shows when an instance starts: its `open` hook
//! panics, so its `init` traps. Deploying it must change nothing.

use serde::{Deserialize, Serialize};
use weir_guest::Keyed;

/// An input record.
#[derive(Deserialize)]
pub struct Tick {
    key: String,
    seq: i64,
}

/// What it would emit.
#[derive(Serialize)]
pub struct Counted {
    key: String,
    seq: i64,
    count: i64,
    version: u32,
}

#[weir_guest::keyed(state_version = 2, open = start)]
pub fn counter(tick: Tick, ctx: &mut Keyed<i64>) -> Counted {
    let count = ctx.state();
    *count += 1;
    Counted {
        key: tick.key,
        seq: tick.seq,
        count: *count,
        version: 3,
    }
}

/// Fails at start-up, as a version with a bad lookup table would.
pub fn start() -> Result<(), String> {
    let limits: Vec<u32> = Vec::new();
    // The bug: indexing an empty table panics, which traps the instance.
    let first = limits[0];
    Err(format!("unreachable: {first}"))
}
