//! Where a stream of records goes next: the workers of each operator reading
//! it (hash-partitioned by its key, or spread round-robin), and sinks.
//!
//! A reader numbers its upstream senders across all the streams it reads
//! (see [`crate::graph`]): each destination adds its own offset to the
//! sender's number, so one stream can feed several readers, each of which
//! knows which input, and which stream, an envelope came from.

use anyhow::{Result, anyhow};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;
use tokio::sync::mpsc::Sender;
use tokio::sync::mpsc::error::TrySendError;

use super::keys::{group_rows, partition_of};
use super::message::{Envelope, Message, NOT_AN_INPUT};

/// Batches waiting in each channel between stages: small, so a slow stage
/// slows the ones before it instead of filling memory.
pub const CHANNEL_CAPACITY: usize = 8;

/// The destinations of one stream, and which upstream sender it is to them.
#[derive(Clone)]
pub struct Route {
    targets: Vec<Target>,
    /// This sender's input number downstream (source index or worker index).
    from: usize,
    /// Nanoseconds this sender spent waiting on a full destination
    /// (backpressure), when counted.
    blocked: Option<Arc<AtomicU64>>,
}

impl Default for Route {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            from: NOT_AN_INPUT,
            blocked: None,
        }
    }
}

#[derive(Clone)]
struct Target {
    /// The input number of this stream's first sender at the destination.
    base: usize,
    to: To,
}

#[derive(Clone)]
enum To {
    Workers {
        senders: Vec<Sender<Envelope>>,
        key_by: Option<String>,
        next: Arc<AtomicUsize>,
    },
    Sink(Sender<Envelope>),
}

impl Route {
    /// Adds the workers of an operator, where this stream's senders are
    /// inputs `base`, `base + 1`, ….
    pub fn to_workers(
        &mut self,
        senders: Vec<Sender<Envelope>>,
        key_by: Option<String>,
        base: usize,
    ) {
        self.targets.push(Target {
            base,
            to: To::Workers {
                senders,
                key_by,
                next: Arc::new(AtomicUsize::new(0)),
            },
        });
    }

    /// The same destinations, sent to as upstream sender `input`.
    pub fn from_input(&self, input: usize) -> Route {
        Route {
            targets: self.targets.clone(),
            from: input,
            blocked: None,
        }
    }

    /// The same route, adding the time it waits on full destinations to
    /// `blocked` (nanoseconds).
    pub fn counting_blocked(mut self, blocked: Arc<AtomicU64>) -> Route {
        self.blocked = Some(blocked);
        self
    }

    /// Adds a sink, where this stream's senders are inputs `base`, ….
    pub fn to_sink(&mut self, sender: Sender<Envelope>, base: usize) {
        self.targets.push(Target {
            base,
            to: To::Sink(sender),
        });
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
        let blocked = self.blocked.as_deref();
        for target in rest {
            target.send(self.from, message.clone(), blocked)?;
        }
        last.send(self.from, message, blocked)
    }
}

impl Route {
    /// Tells every stage downstream that this sender has reached event
    /// time `time`.
    ///
    /// # Errors
    /// When a destination has stopped.
    pub fn send_watermark(&self, time: i64) -> Result<()> {
        self.broadcast(|input| Envelope::Watermark { input, time })
    }

    /// Tells every stage downstream that this sender has sent everything
    /// checkpoint `checkpoint` covers.
    ///
    /// # Errors
    /// When a destination has stopped.
    pub fn send_barrier(&self, checkpoint: u64) -> Result<()> {
        self.broadcast(|input| Envelope::Barrier { input, checkpoint })
    }

    /// Tells every stage downstream that this sender went idle.
    ///
    /// # Errors
    /// When a destination has stopped.
    pub fn send_idle(&self) -> Result<()> {
        self.broadcast(|input| Envelope::Idle { input })
    }

    /// Sends `envelope(input)` to every destination, with this sender's
    /// input number there.
    fn broadcast(&self, envelope: impl Fn(usize) -> Envelope) -> Result<()> {
        for target in &self.targets {
            let senders = match &target.to {
                To::Workers { senders, .. } => senders.as_slice(),
                To::Sink(sender) => std::slice::from_ref(sender),
            };
            let input = target.input(self.from);
            for sender in senders {
                sender
                    .blocking_send(envelope(input))
                    .map_err(|_| stopped())?;
            }
        }
        Ok(())
    }
}

fn stopped() -> anyhow::Error {
    anyhow!("a downstream stage stopped")
}

/// Sends `envelope`, waiting while the destination is full; the wait is
/// added to `blocked`.
fn push(sender: &Sender<Envelope>, envelope: Envelope, blocked: Option<&AtomicU64>) -> Result<()> {
    match sender.try_send(envelope) {
        Ok(()) => Ok(()),
        Err(TrySendError::Closed(_)) => Err(stopped()),
        Err(TrySendError::Full(envelope)) => {
            let started = Instant::now();
            sender.blocking_send(envelope).map_err(|_| stopped())?;
            if let Some(blocked) = blocked {
                blocked.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
            Ok(())
        }
    }
}

impl Target {
    /// The input number at this destination of upstream sender `from`.
    fn input(&self, from: usize) -> usize {
        match from {
            NOT_AN_INPUT => NOT_AN_INPUT,
            from => self.base + from,
        }
    }

    fn send(&self, from: usize, message: Message, blocked: Option<&AtomicU64>) -> Result<()> {
        let input = self.input(from);
        match &self.to {
            To::Sink(sender) => push(sender, Envelope::Batch { input, message }, blocked),
            To::Workers {
                senders,
                key_by,
                next,
            } => {
                let to = |worker: usize, message: Message| {
                    push(
                        &senders[worker],
                        Envelope::Batch { input, message },
                        blocked,
                    )
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
