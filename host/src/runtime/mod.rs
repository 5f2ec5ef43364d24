//! Running a pipeline: threads for sources, operator workers and sinks,
//! joined by bounded channels.

mod barrier;
mod dead_letter;
mod failures;
mod keys;
mod message;
pub mod metrics;
mod pipeline;
mod route;
mod state;
mod swap;
pub mod tap;
mod worker;

pub use barrier::Aligner;
pub use dead_letter::{DeadLetter, DeadLetters, RecentDeadLetter};
pub use failures::{Failures, Verdict};
pub use keys::{KeyGroups, group_rows, partition_of, row_keys};
pub use message::{END_OF_TIME, Envelope, Message, NOT_AN_INPUT, RowTimes};
pub use metrics::{OperatorMetrics, Progress, RunMetrics, WorkerMetrics, human};
pub use pipeline::{OperatorReport, RunSummary, Running, run, start};
pub use route::{CHANNEL_CAPACITY, Route};
pub use state::{
    KeyedState, KeyedValues, Loaded, MapStates, MapStore, MapWrite, Owner, TimerQueue, Timers,
    ValueStates, flat_maps,
};
pub use swap::{SwapOrder, SwapReply, VersionStats};
pub use tap::{Tap, TapEvent, TapFilter, Taps};
pub use worker::{Restored, Worker, WorkerSetup};
