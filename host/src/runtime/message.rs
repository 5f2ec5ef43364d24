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
    /// For each row, its event time, when the source declares one.
    pub times: Option<Arc<RowTimes>>,
}

/// The event time of each row of a message (epoch ms), and the watermark
/// each arrived under (see `row-times` in the WIT package).
#[derive(Debug, Default)]
pub struct RowTimes {
    /// Event time per row.
    pub times: Vec<i64>,
    /// Watermark per row at its arrival.
    pub watermarks: Vec<i64>,
}

impl Message {
    /// The rows `rows` of this message, in that order.
    pub fn take(&self, rows: &[u32]) -> anyhow::Result<Message> {
        let indices = UInt32Array::from(rows.to_vec());
        Ok(self.derive(take_record_batch(&self.batch, &indices)?, rows))
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
            // An output record has the event time of the record it came from.
            times: self.times.as_ref().map(|t| {
                let pick = |column: &[i64]| {
                    origins
                        .iter()
                        .map(|&r| column.get(r as usize).copied().unwrap_or(i64::MIN))
                        .collect()
                };
                Arc::new(RowTimes {
                    times: pick(&t.times),
                    watermarks: pick(&t.watermarks),
                })
            }),
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
    /// Records to process, from upstream sender `input`.
    Batch {
        /// Which upstream sender (source index, upstream worker index, or
        /// [`NOT_AN_INPUT`]).
        input: usize,
        /// The records.
        message: Message,
    },
    /// Upstream sender `input` has sent everything that checkpoint
    /// `checkpoint` covers (a Chandy–Lamport barrier, see
    /// [`crate::checkpoint`]).
    Barrier {
        /// Which upstream sender.
        input: usize,
        /// The checkpoint's number.
        checkpoint: u64,
    },
    /// Sinks only: checkpoint `n` is complete; commit the output it covers.
    Committed(u64),
    /// Switch to a new version of the operator (hot swap).
    Swap(Box<super::swap::SwapOrder>),
    /// Input `input` promises no more records with an event time at or
    /// before `time` (`i64::MAX`: it has ended).
    Watermark {
        /// Which upstream sender (source index, or upstream worker index).
        input: usize,
        /// Epoch milliseconds.
        time: i64,
    },
    /// Input `input` has been idle longer than its `idle_timeout`: leave it
    /// out of the watermark until it sends records again.
    Idle {
        /// Which upstream sender.
        input: usize,
    },
    /// The wall clock moved (epoch ms): fire due processing-time timers.
    Tick(i64),
}

/// The watermark of the end of a bounded input: every timer fires.
pub const END_OF_TIME: i64 = i64::MAX;

/// The `input` of records that come from no upstream stage (dead letters
/// replayed by `weir dlq replay`): never held back by a barrier.
pub const NOT_AN_INPUT: usize = usize::MAX;

impl Envelope {
    /// The upstream sender it came from, for barrier alignment; `None` for
    /// control events that belong to no input.
    pub fn input(&self) -> Option<usize> {
        match self {
            Envelope::Batch { input, .. } if *input == NOT_AN_INPUT => None,
            Envelope::Batch { input, .. }
            | Envelope::Barrier { input, .. }
            | Envelope::Watermark { input, .. }
            | Envelope::Idle { input } => Some(*input),
            Envelope::Swap(_) | Envelope::Tick(_) | Envelope::Committed(_) => None,
        }
    }
}
