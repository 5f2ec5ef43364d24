//! Sinks: where records go. Each runs on its own thread behind a bounded
//! channel, so a slow sink slows the pipeline down instead of buffering.
//!
//! With checkpoints on, a file sink is exactly-once (see [`parts`]): its
//! output file only ever holds records of complete checkpoints, and after a
//! crash and restart it ends exactly as an uninterrupted run's. Standard
//! output is at-least-once: what was printed stays printed, so records after
//! the last checkpoint are printed again after a restart.

mod parts;

use anyhow::{Context, Result};
use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use tokio::sync::mpsc::{Receiver, Sender, channel};

use crate::checkpoint::Coordinator;
use crate::codec::encode_json_lines;
use crate::config::{Pipeline, SinkConfig};
use crate::runtime::{Aligner, CHANNEL_CAPACITY, Envelope, RunMetrics};

/// What a sink needs besides its config.
pub(crate) struct SinkSetup {
    /// Its index among the pipeline's sinks.
    pub(crate) index: usize,
    /// How many upstream senders feed it (for barrier alignment).
    pub(crate) inputs: usize,
    /// The run's checkpoints, if it takes any.
    pub(crate) checkpoints: Option<Arc<Coordinator>>,
    /// Restored from checkpoint `.0`, when its output had `.1` bytes.
    pub(crate) restore: Option<(u64, u64)>,
    pub(crate) metrics: Arc<RunMetrics>,
}

/// Where a sink's bytes go.
enum Output {
    /// Written as they come, flushed when the input pauses.
    Direct(Box<dyn Write + Send>, String),
    /// A file written through checkpoint-committed parts.
    Parts(parts::Parts),
    /// Nowhere (benchmarks).
    Nowhere,
}

/// Opens a sink (creating its file now, so a bad path fails before anything
/// runs) and starts its thread.
pub(crate) fn spawn(
    config: &SinkConfig,
    pipeline: &Pipeline,
    setup: SinkSetup,
) -> Result<(Sender<Envelope>, JoinHandle<Result<()>>)> {
    let (sender, receiver) = channel(CHANNEL_CAPACITY);
    let output = match config {
        SinkConfig::Jsonl { path, .. } => {
            let path = pipeline.resolve(path);
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create folder `{}`", parent.display()))?;
            }
            match &setup.checkpoints {
                Some(checkpoints) => Output::Parts(parts::Parts::open(
                    &path,
                    &checkpoints.sink_parts(setup.index),
                    setup.restore,
                )?),
                None => {
                    let file = std::fs::File::create(&path)
                        .with_context(|| format!("sink: cannot create `{}`", path.display()))?;
                    Output::Direct(
                        Box::new(BufWriter::with_capacity(1 << 20, file)),
                        path.display().to_string(),
                    )
                }
            }
        }
        SinkConfig::Stdout { .. } => Output::Direct(
            Box::new(BufWriter::with_capacity(1 << 16, std::io::stdout())),
            "stdout".to_owned(),
        ),
        SinkConfig::Blackhole { .. } => Output::Nowhere,
    };
    let handle = std::thread::Builder::new()
        .name("sink".into())
        .spawn(move || run(receiver, output, setup))?;
    Ok((sender, handle))
}

fn run(mut receiver: Receiver<Envelope>, mut output: Output, setup: SinkSetup) -> Result<()> {
    let mut aligner = Aligner::new(setup.inputs);
    let mut buffer = Vec::with_capacity(1 << 20);
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
            buffer.clear();
            if !matches!(output, Output::Nowhere) {
                encode_json_lines(&message.batch, &mut buffer);
            }
            output.write(&buffer)?;
        }
        if let Some(checkpoints) = &setup.checkpoints {
            if let Some(id) = aligner.take_aligned() {
                let bytes = output.barrier(id)?;
                checkpoints.sink_done(id, setup.index, bytes);
            }
            let completed = checkpoints.completed();
            if completed > committed {
                output.commit(completed)?;
                committed = completed;
                checkpoints.sink_committed(setup.index, completed);
            }
        }
        // Nothing else waiting: a live stream's output shows now, not at the end.
        if receiver.is_empty() {
            output.flush()?;
        }
    }
    let all = setup
        .checkpoints
        .as_ref()
        .is_none_or(|c| c.sources_finished());
    output.finish(all)
}

impl Output {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Output::Direct(out, label) => out
                .write_all(bytes)
                .with_context(|| format!("sink `{label}`: write failed")),
            Output::Parts(parts) => parts.write(bytes),
            Output::Nowhere => Ok(()),
        }
    }

    /// Closes the output of checkpoint `id`; returns the bytes written so far.
    fn barrier(&mut self, id: u64) -> Result<u64> {
        match self {
            Output::Parts(parts) => parts.barrier(id),
            Output::Direct(..) => self.flush().map(|()| 0),
            Output::Nowhere => Ok(0),
        }
    }

    fn commit(&mut self, upto: u64) -> Result<()> {
        match self {
            Output::Parts(parts) => parts.commit(upto),
            _ => Ok(()),
        }
    }

    fn flush(&mut self) -> Result<()> {
        match self {
            Output::Direct(out, label) => out
                .flush()
                .with_context(|| format!("sink `{label}`: write failed")),
            _ => Ok(()),
        }
    }

    fn finish(self, all: bool) -> Result<()> {
        match self {
            Output::Parts(parts) => parts.finish(all),
            mut other => other.flush(),
        }
    }
}
