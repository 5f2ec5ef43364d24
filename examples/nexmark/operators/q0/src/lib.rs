//! Nexmark q0: every bid, passed through unchanged (measures the framework's
//! own cost per record).

use serde::Deserialize;

/// Only the event kind is read; kept records pass on with all their fields.
#[derive(Deserialize)]
pub struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
}

#[weir_guest::filter]
pub fn q0(event: &Event<'_>) -> bool {
    event.kind == "bid"
}
