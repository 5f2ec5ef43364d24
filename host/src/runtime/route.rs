//! Where a stream of records goes next: the workers of the next operator
//! (hash-partitioned by its key, or spread round-robin), and sinks.

use anyhow::{Result, anyhow};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc::Sender;

use super::keys::{group_rows, partition_of};
use super::message::{Envelope, Message};

/// Batches waiting in each channel between stages: small, so a slow stage
/// slows the ones before it instead of filling memory.
pub const CHANNEL_CAPACITY: usize = 8;

/// The destinations of one stream.
#[derive(Clone, Default)]
pub struct Route {
    targets: Vec<Target>,
}

#[derive(Clone)]
enum Target {
    Workers {
        senders: Vec<Sender<Envelope>>,
        key_by: Option<String>,
        next: Arc<AtomicUsize>,
    },
    Sink(Sender<Message>),
}

impl Route {
    /// Adds the workers of an operator.
    pub fn to_workers(&mut self, senders: Vec<Sender<Envelope>>, key_by: Option<String>) {
        self.targets.push(Target::Workers {
            senders,
            key_by,
            next: Arc::new(AtomicUsize::new(0)),
        });
    }

    /// Adds a sink.
    pub fn to_sink(&mut self, sender: Sender<Message>) {
        self.targets.push(Target::Sink(sender));
    }

    /// Whether anything receives this stream.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Sends a message to every destination, blocking while they are full.
    ///
    /// # Errors
    /// When a destination has stopped (its thread failed).
    pub fn send(&self, message: Message) -> Result<()> {
        if message.rows() == 0 {
            return Ok(());
        }
        let Some((last, rest)) = self.targets.split_last() else {
            return Ok(());
        };
        for target in rest {
            target.send(message.clone())?;
        }
        last.send(message)
    }
}

impl Route {
    /// Tells every worker downstream that input `input` (this sender) has
    /// reached event time `time`. Sinks do not care.
    ///
    /// # Errors
    /// When a destination has stopped.
    pub fn send_watermark(&self, input: usize, time: i64) -> Result<()> {
        self.broadcast(|| Envelope::Watermark { input, time })
    }

    /// Tells every worker downstream that input `input` went idle.
    ///
    /// # Errors
    /// When a destination has stopped.
    pub fn send_idle(&self, input: usize) -> Result<()> {
        self.broadcast(|| Envelope::Idle { input })
    }

    fn broadcast(&self, envelope: impl Fn() -> Envelope) -> Result<()> {
        for target in &self.targets {
            if let Target::Workers { senders, .. } = target {
                for sender in senders {
                    sender.blocking_send(envelope()).map_err(|_| stopped())?;
                }
            }
        }
        Ok(())
    }
}

fn stopped() -> anyhow::Error {
    anyhow!("a downstream stage stopped")
}

impl Target {
    fn send(&self, message: Message) -> Result<()> {
        match self {
            Target::Sink(sender) => sender.blocking_send(message).map_err(|_| stopped()),
            Target::Workers {
                senders,
                key_by,
                next,
            } => {
                let to = |worker: usize, message: Message| {
                    senders[worker]
                        .blocking_send(Envelope::Batch(message))
                        .map_err(|_| stopped())
                };
                if senders.len() == 1 {
                    return to(0, message);
                }
                let Some(field) = key_by else {
                    return to(
                        next.fetch_add(1, Ordering::Relaxed) % senders.len(),
                        message,
                    );
                };
                // Records without the key go to worker 0, which dead-letters them.
                // Keys are worked out per key, not per row (an integer key is
                // printed once), and each worker's rows keep their order.
                let mut worker_of_row = vec![0usize; message.rows()];
                for (key, rows) in group_rows(&message.batch, field).groups {
                    let worker = partition_of(&key, senders.len());
                    for row in rows {
                        worker_of_row[row as usize] = worker;
                    }
                }
                let mut parts: Vec<Vec<u32>> = vec![Vec::new(); senders.len()];
                for (row, worker) in worker_of_row.into_iter().enumerate() {
                    parts[worker].push(row as u32);
                }
                for (worker, rows) in parts.iter().enumerate() {
                    if rows.is_empty() {
                        continue;
                    }
                    let part = if rows.len() == message.rows() {
                        message.clone()
                    } else {
                        message.take(rows)?
                    };
                    to(worker, part)?;
                }
                Ok(())
            }
        }
    }
}
