//! Sources: where records come from. Each runs on its own thread, decodes
//! into Arrow batches and hands them to the first stage; bad lines go to the
//! dead-letter output with their line number.

mod file;
pub mod nexmark;

use anyhow::{Context, Result};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::{Format, Pipeline, SourceConfig};
use crate::runtime::{DeadLetters, Route, RunMetrics};

/// What every source needs to run.
pub(crate) struct SourceContext {
    pub(crate) name: Arc<str>,
    pub(crate) batch_size: usize,
    pub(crate) route: Route,
    pub(crate) dead_letters: Arc<DeadLetters>,
    pub(crate) metrics: Arc<RunMetrics>,
}

/// Opens a source (so a missing file is reported before anything runs) and
/// starts its thread.
pub(crate) fn spawn(
    config: &SourceConfig,
    pipeline: &Pipeline,
    context: SourceContext,
) -> Result<JoinHandle<Result<()>>> {
    let name = context.name.to_string();
    let thread = std::thread::Builder::new().name(format!("source-{name}"));
    let handle = match config {
        SourceConfig::Jsonl { path, .. } | SourceConfig::Csv { path, .. } => {
            let path = pipeline.resolve(path);
            let format = if matches!(config, SourceConfig::Csv { .. }) {
                Format::Csv
            } else {
                Format::Jsonl
            };
            let file = std::fs::File::open(&path)
                .with_context(|| format!("source `{name}`: cannot open `{}`", path.display()))?;
            let reader = std::io::BufReader::with_capacity(1 << 20, file);
            thread.spawn(move || file::read(reader, format, false, &context))?
        }
        SourceConfig::Stdin { format, .. } => {
            let format = *format;
            thread.spawn(move || {
                let stdin = std::io::BufReader::with_capacity(1 << 20, std::io::stdin());
                file::read(stdin, format, true, &context)
            })?
        }
        SourceConfig::Nexmark {
            events, seed, rate, ..
        } => {
            let config = nexmark::NexmarkConfig {
                events: *events,
                seed: *seed,
                rate: *rate,
                start_time_ms: NEXMARK_START_TIME_MS,
            };
            thread.spawn(move || generate(&config, &context))?
        }
    };
    Ok(handle)
}

fn generate(config: &nexmark::NexmarkConfig, context: &SourceContext) -> Result<()> {
    let mut generator = nexmark::NexmarkGenerator::new(config);
    let mut next_event = 1u64;
    while let Some(batch) = generator.next_batch(context.batch_size) {
        let rows = batch.num_rows() as u64;
        let lines: Arc<[u64]> = (next_event..next_event + rows).collect();
        next_event += rows;
        context
            .metrics
            .records_in
            .fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
        context.route.send(crate::runtime::Message {
            batch,
            source: Arc::clone(&context.name),
            lines,
        })?;
    }
    Ok(())
}

/// Event time of the first generated Nexmark event (2023-11-14T22:13:20Z).
const NEXMARK_START_TIME_MS: i64 = 1_700_000_000_000;
