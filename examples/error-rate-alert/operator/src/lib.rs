//! O&M alerting: per service, the share of error log events in a one-minute
//! window sliding every ten seconds; alert when it is above 5% over at least
//! 20 events.

use serde::{Deserialize, Serialize};
use weir_guest::Window;

const MIN_EVENTS: i64 = 20;
const MAX_ERROR_RATE: f64 = 0.05;

/// A log event (its `ts` is the pipeline's event time).
#[derive(Deserialize)]
pub struct LogEvent<'a> {
    level: &'a str,
}

/// Error and total counts of one window.
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct Counts {
    errors: i64,
    total: i64,
}

/// Raised for a window whose error rate is too high.
#[derive(Serialize, Debug)]
pub struct Alert {
    service: String,
    window_end: i64,
    errors: i64,
    total: i64,
    rate: f64,
}

#[weir_guest::window(sliding = "1m", every = "10s", result = alert)]
pub fn count(counts: &mut Counts, event: LogEvent<'_>) {
    counts.total += 1;
    if event.level.eq_ignore_ascii_case("error") {
        counts.errors += 1;
    }
}

/// An alert when the window has enough events and too many errors.
pub fn alert(service: &str, window: Window, counts: &Counts) -> Option<Alert> {
    let rate = counts.errors as f64 / counts.total as f64;
    (counts.total >= MIN_EVENTS && rate > MAX_ERROR_RATE).then(|| Alert {
        service: service.to_owned(),
        window_end: window.end,
        errors: counts.errors,
        total: counts.total,
        rate,
    })
}
