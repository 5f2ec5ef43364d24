//! What flows between the stages of a pipeline.

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use std::sync::Arc;

/// A batch of records with where each one came from, for dead-letter entries.
#[derive(Clone, Debug)]
pub struct Message {
    /// The records.
    pub batch: RecordBatch,
    /// The source that read them.
    pub source: Arc<str>,
    /// For each row, its line number in the source (event number for
    /// generators).
    pub lines: Arc<[u64]>,
}

impl Message {
    /// The rows `rows` of this message, in that order.
    pub fn take(&self, rows: &[u32]) -> anyhow::Result<Message> {
        let indices = UInt32Array::from(rows.to_vec());
        Ok(Message {
            batch: take_record_batch(&self.batch, &indices)?,
            source: Arc::clone(&self.source),
            lines: rows
                .iter()
                .map(|&r| self.lines.get(r as usize).copied().unwrap_or(0))
                .collect(),
        })
    }

    /// Records produced from this message's rows (`origins[i]` is the input
    /// row of output row `i`), carrying their provenance along.
    pub fn derive(&self, batch: RecordBatch, origins: &[u32]) -> Message {
        Message {
            batch,
            source: Arc::clone(&self.source),
            lines: origins
                .iter()
                .map(|&r| self.lines.get(r as usize).copied().unwrap_or(0))
                .collect(),
        }
    }

    /// The number of records.
    pub fn rows(&self) -> usize {
        self.batch.num_rows()
    }
}

/// What an operator worker receives, in order: batches, and control events
/// that must take effect exactly between two batches.
pub enum Envelope {
    /// Records to process.
    Batch(Message),
    /// Switch to a new version of the operator (hot swap).
    Swap(Box<super::swap::SwapOrder>),
}
