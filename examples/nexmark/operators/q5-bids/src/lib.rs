//! Nexmark q5, step 1: keep the bids (the other events have no auction to
//! count by).

use serde::Deserialize;

/// A Nexmark event.
#[derive(Deserialize)]
pub struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
}

#[weir_guest::filter]
pub fn bids(event: &Event<'_>) -> bool {
    event.kind == "bid"
}
