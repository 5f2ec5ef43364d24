//! Running a pipeline: threads for sources, operator workers and sinks,
//! joined by bounded channels.

mod dead_letter;
mod keys;
mod message;
mod metrics;
mod pipeline;
mod route;
mod worker;

pub use dead_letter::{DeadLetter, DeadLetters};
pub use keys::{partition_of, row_keys};
pub use message::Message;
pub use metrics::{OperatorMetrics, Progress, RunMetrics, human};
pub use pipeline::{OperatorReport, RunSummary, run};
pub use route::{CHANNEL_CAPACITY, Route};
pub use worker::{Worker, WorkerSetup};
