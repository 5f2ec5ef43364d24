//! Sinks: where records go. Each runs on its own thread behind a bounded
//! channel, so a slow sink slows the pipeline down instead of buffering.

use anyhow::{Context, Result};
use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use tokio::sync::mpsc::{Receiver, Sender, channel};

use crate::codec::encode_json_lines;
use crate::config::{Pipeline, SinkConfig};
use crate::runtime::{CHANNEL_CAPACITY, Message, RunMetrics};

/// Opens a sink (creating its file now, so a bad path fails before anything
/// runs) and starts its thread.
pub(crate) fn spawn(
    config: &SinkConfig,
    pipeline: &Pipeline,
    metrics: Arc<RunMetrics>,
) -> Result<(Sender<Message>, JoinHandle<Result<()>>)> {
    let (sender, receiver) = channel(CHANNEL_CAPACITY);
    let thread = std::thread::Builder::new().name("sink".into());
    let handle = match config {
        SinkConfig::Jsonl { path, .. } => {
            let path = pipeline.resolve(path);
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create folder `{}`", parent.display()))?;
            }
            let file = std::fs::File::create(&path)
                .with_context(|| format!("sink: cannot create `{}`", path.display()))?;
            let label = path.display().to_string();
            thread.spawn(move || {
                write_lines(
                    receiver,
                    BufWriter::with_capacity(1 << 20, file),
                    &label,
                    &metrics,
                )
            })?
        }
        SinkConfig::Stdout { .. } => thread.spawn(move || {
            let stdout = std::io::stdout().lock();
            write_lines(
                receiver,
                BufWriter::with_capacity(1 << 16, stdout),
                "stdout",
                &metrics,
            )
        })?,
        SinkConfig::Blackhole { .. } => thread.spawn(move || {
            let mut receiver = receiver;
            while let Some(message) = receiver.blocking_recv() {
                metrics
                    .records_out
                    .fetch_add(message.rows() as u64, Ordering::Relaxed);
            }
            Ok(())
        })?,
    };
    Ok((sender, handle))
}

fn write_lines(
    mut receiver: Receiver<Message>,
    mut out: impl Write,
    label: &str,
    metrics: &RunMetrics,
) -> Result<()> {
    let mut buffer = Vec::with_capacity(1 << 20);
    while let Some(message) = receiver.blocking_recv() {
        buffer.clear();
        encode_json_lines(&message.batch, &mut buffer);
        out.write_all(&buffer)
            .with_context(|| format!("sink `{label}`: write failed"))?;
        metrics
            .records_out
            .fetch_add(message.rows() as u64, Ordering::Relaxed);
        // Nothing else waiting: a live stream's output shows now, not at the end.
        if receiver.is_empty() {
            out.flush()
                .with_context(|| format!("sink `{label}`: write failed"))?;
        }
    }
    out.flush()
        .with_context(|| format!("sink `{label}`: write failed"))
}
