//! Sinks: where records go. Each runs on its own thread behind a bounded
//! channel, so a slow sink slows the pipeline down instead of buffering.
//!
//! Every sink is a [`Sink`]: it writes batches, and with checkpoints on it
//! takes part in them in two phases. At a checkpoint's barrier it makes the
//! output since the previous barrier durable but not yet visible
//! ([`Sink::barrier`]); once the checkpoint is complete it makes that output
//! visible ([`Sink::commit`]). A restart from checkpoint k commits what was
//! pending up to k and drops what came after, so the output ends exactly as
//! an uninterrupted run's. One file per kind of sink: [`file`] (exactly-once
//! through [`parts`]), standard output (at-least-once: what was printed
//! stays printed), [`postgres`] (a table upserted or appended to in one
//! transaction per checkpoint), [`parquet`] (files renamed into place),
//! [`nats`] (exactly-once by message ids JetStream deduplicates),
//! [`kafka`] (at-least-once through the idempotent producer) and a
//! blackhole for benchmarks.

mod file;
pub mod kafka;
pub mod nats;
mod parquet;
mod parts;
mod postgres;

pub use parquet::ParquetSinkConfig;
pub use postgres::{PostgresSinkConfig, WriteMode};

use anyhow::Result;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use tokio::sync::mpsc::{Receiver, Sender, channel};

use crate::checkpoint::Coordinator;
use crate::config::{Pipeline, SinkConfig};
use crate::runtime::{Aligner, CHANNEL_CAPACITY, DeadLetters, Envelope, Message, RunMetrics};

/// What a sink needs besides its config.
pub(crate) struct SinkSetup {
    /// Its index among the pipeline's sinks.
    pub(crate) index: usize,
    /// How many upstream senders feed it (for barrier alignment).
    pub(crate) inputs: usize,
    /// The run's checkpoints, if it takes any.
    pub(crate) checkpoints: Option<Arc<Coordinator>>,
    /// Restored from checkpoint `.0`, whose manifest gave this sink `.1`
    /// (what [`Sink::barrier`] returned then).
    pub(crate) restore: Option<(u64, u64)>,
    /// Where records the sink cannot write go.
    pub(crate) dead_letters: Arc<DeadLetters>,
    pub(crate) metrics: Arc<RunMetrics>,
}

/// One kind of output, and how it takes part in checkpoints.
pub(crate) trait Sink: Send {
    /// Writes the records of one message (of the open epoch, with
    /// checkpoints on).
    ///
    /// # Errors
    /// When the output fails; the run stops.
    fn write(&mut self, message: &Message) -> Result<()>;

    /// Phase one at checkpoint `id`'s barrier: makes the open epoch's
    /// output durable, not yet visible. Returns the number the manifest
    /// keeps for this sink (a file's size), handed back on restore.
    ///
    /// # Errors
    /// When the output cannot be made durable; the run stops.
    fn barrier(&mut self, id: u64) -> Result<u64>;

    /// Phase two: makes the output of every checkpoint up to `upto`, which
    /// is complete, visible.
    ///
    /// # Errors
    /// When the output fails; the run stops.
    fn commit(&mut self, upto: u64) -> Result<()> {
        let _ = upto;
        Ok(())
    }

    /// The input paused: a live stream's output shows now, not at the end.
    ///
    /// # Errors
    /// When the output fails.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    /// The input ended: commits everything when `all` sources were read to
    /// their end, else leaves what is pending for a restart.
    ///
    /// # Errors
    /// When the output fails.
    fn finish(self: Box<Self>, all: bool) -> Result<()>;
}

/// Opens a sink (creating its file or connection now, so a bad path or a
/// server that is down fails before anything runs) and starts its thread.
pub(crate) fn spawn(
    config: &SinkConfig,
    pipeline: &Pipeline,
    setup: SinkSetup,
) -> Result<(Sender<Envelope>, JoinHandle<Result<()>>)> {
    let (sender, receiver) = channel(CHANNEL_CAPACITY);
    let sink: Box<dyn Sink> = match config {
        SinkConfig::Jsonl { path, .. } => Box::new(file::FileSink::open(
            &pipeline.resolve(path),
            setup.checkpoints.as_deref(),
            setup.index,
            setup.restore,
        )?),
        SinkConfig::Stdout { .. } => Box::new(file::StdoutSink::new()),
        SinkConfig::Blackhole { .. } => Box::new(Blackhole),
        SinkConfig::Parquet(config) => Box::new(parquet::ParquetSink::open(
            config,
            &pipeline.resolve(&config.path),
            setup.checkpoints.is_some(),
            setup.restore,
        )?),
        SinkConfig::Postgres(config) => Box::new(postgres::PostgresSink::open(
            config,
            setup.checkpoints.as_deref(),
            setup.index,
            setup.restore,
            Arc::clone(&setup.dead_letters),
        )?),
        SinkConfig::Nats(nats) => Box::new(nats::NatsSink::open(nats, &setup)?),
        SinkConfig::Kafka(kafka) => Box::new(kafka::KafkaSink::open(kafka)?),
    };
    let handle = std::thread::Builder::new()
        .name(format!("sink-{}", setup.index))
        .spawn(move || run(receiver, sink, setup))?;
    Ok((sender, handle))
}

fn run(mut receiver: Receiver<Envelope>, mut sink: Box<dyn Sink>, setup: SinkSetup) -> Result<()> {
    let mut aligner = Aligner::new(setup.inputs);
    let mut committed = setup.restore.map_or(0, |(id, _)| id);
    loop {
        let envelope = match aligner.released() {
            Some(envelope) => envelope,
            None => match receiver.blocking_recv() {
                Some(envelope) => envelope,
                None => break,
            },
        };
        if let Some(Envelope::Batch { message, .. }) = aligner.admit(envelope) {
            setup
                .metrics
                .records_out
                .fetch_add(message.rows() as u64, Ordering::Relaxed);
            sink.write(&message)?;
        }
        if let Some(checkpoints) = &setup.checkpoints {
            if let Some(id) = aligner.take_aligned() {
                let kept = sink.barrier(id)?;
                checkpoints.sink_done(id, setup.index, kept);
            }
            let completed = checkpoints.completed();
            if completed > committed {
                sink.commit(completed)?;
                committed = completed;
                checkpoints.sink_committed(setup.index, completed);
            }
        }
        if receiver.is_empty() {
            sink.flush()?;
        }
    }
    let all = setup
        .checkpoints
        .as_ref()
        .is_none_or(|c| c.sources_finished());
    sink.finish(all)
}

/// Discards records (benchmarks).
struct Blackhole;

impl Sink for Blackhole {
    fn write(&mut self, _message: &Message) -> Result<()> {
        Ok(())
    }

    fn barrier(&mut self, _id: u64) -> Result<u64> {
        Ok(0)
    }

    fn finish(self: Box<Self>, _all: bool) -> Result<()> {
        Ok(())
    }
}
