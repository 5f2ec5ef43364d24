//! The ten products with the most units per day, from the daily window
//! results. It runs over all products as one key (no `key_by`), collects a
//! day's results as they arrive, and ranks them when the watermark passes the
//! day: its timer is at the results' event time, the day's last millisecond.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use weir_guest::Keyed;
use weir_guest::windows::top_n;

const TOP: usize = 10;

/// A window result of the `daily-units` operator.
#[derive(Serialize, Deserialize)]
pub struct DayUnits {
    day: String,
    product: String,
    units: i64,
}

/// A ranked product.
#[derive(Serialize)]
pub struct Ranked {
    day: String,
    rank: usize,
    product: String,
    units: i64,
}

/// Results waiting for their day to close, by the day's last millisecond.
pub type Pending = BTreeMap<i64, Vec<DayUnits>>;

#[weir_guest::keyed(on_timer = rank)]
pub fn collect(result: DayUnits, ctx: &mut Keyed<Pending>) -> Result<(), String> {
    let time = ctx
        .timestamp()
        .ok_or("top10 needs the event time of the daily results")?;
    ctx.state().entry(time).or_default().push(result);
    ctx.register_event_timer(time);
    Ok(())
}

/// Ranks a closed day: most units first, ties by product name.
pub fn rank(ctx: &mut Keyed<Pending>) -> Vec<Ranked> {
    let Some((_, time)) = ctx.fired_timer() else {
        return Vec::new();
    };
    let day = ctx.state().remove(&time).unwrap_or_default();
    if ctx.get().is_some_and(BTreeMap::is_empty) {
        ctx.clear();
    }
    top_n(day, TOP, |r| r.units, |r| r.product.clone())
        .into_iter()
        .map(|(rank, r)| Ranked {
            day: r.day,
            rank,
            product: r.product,
            units: r.units,
        })
        .collect()
}
