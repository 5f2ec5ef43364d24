//! `weir dlq replay`: an operator's dead letters fed to it again, typically
//! after a fixed version was deployed, through the running pipeline (so what
//! it makes of them flows downstream like any other output).

use serde::{Deserialize, Serialize};
use std::sync::Arc;

use super::{Control, DeployError};
use crate::codec::decode_json_lines;
use crate::runtime::{Message, Route};

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayReport {
    /// The operator id.
    pub operator: String,
    /// Its dead letters sent to it again.
    pub replayed: usize,
    /// Entries of other operators, refused timers and bad lines of sources,
    /// left alone.
    pub skipped: usize,
    /// Lines that are no dead-letter entry, or whose record is no JSON object.
    pub unreadable: usize,
}

/// The source a dead-lettered timer names.
const TIMERS: &str = "timers";

/// One dead-letter entry, as `DeadLetter` writes it.
#[derive(Deserialize)]
struct Entry {
    source: String,
    line: u64,
    raw: String,
    operator: Option<String>,
}

impl Control {
    /// Sends the records of `dead_letters` (a dead-letter file's JSON Lines)
    /// that operator `id` refused back to its workers, partitioned by its
    /// key as any input, with their source and line. Those it refuses again
    /// are dead-lettered again, under the version that runs now.
    ///
    /// # Errors
    /// [`DeployError::UnknownOperator`] when there is no operator `id`;
    /// [`DeployError::Refused`] when it has finished its input.
    pub fn replay(&self, id: &str, dead_letters: &str) -> Result<ReplayReport, DeployError> {
        let operator = self.operator(id)?;
        let mut report = ReplayReport {
            operator: id.to_owned(),
            replayed: 0,
            skipped: 0,
            unreadable: 0,
        };
        // Entries by source, in the order of the file.
        let mut by_source: Vec<(String, Vec<(u64, String)>)> = Vec::new();
        for line in dead_letters.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(entry) = serde_json::from_str::<Entry>(line) else {
                report.unreadable += 1;
                continue;
            };
            // A refused timer is no record: it cannot be fed in again.
            if entry.operator.as_deref() != Some(id) || entry.source == TIMERS {
                report.skipped += 1;
                continue;
            }
            match by_source.iter_mut().find(|(s, _)| *s == entry.source) {
                Some((_, entries)) => entries.push((entry.line, entry.raw)),
                None => by_source.push((entry.source, vec![(entry.line, entry.raw)])),
            }
        }
        let senders: Option<Vec<_>> = operator.workers.iter().map(|w| w.upgrade()).collect();
        let Some(senders) = senders else {
            return Err(DeployError::Refused(format!(
                "operator `{id}` has finished its input: nothing can be replayed into it"
            )));
        };
        let mut route = Route::default();
        route.to_workers(senders, operator.key_by.clone(), 0);
        for (source, entries) in by_source {
            let (batch, lines, bad) =
                decode_json_lines(entries.iter().map(|(line, raw)| (*line, raw.as_str())));
            report.unreadable += bad.len();
            report.replayed += batch.num_rows();
            let message = Message {
                batch,
                source: Arc::from(source),
                lines: lines.into(),
                times: None,
            };
            route.send(message).map_err(|e| {
                DeployError::Refused(format!("operator `{id}` stopped during the replay: {e}"))
            })?;
        }
        tracing::info!(operator = %id, "{} dead letters replayed", report.replayed);
        Ok(report)
    }
}
