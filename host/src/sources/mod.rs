//! Sources: where records come from. Each runs on its own thread, decodes
//! into Arrow batches and hands them to the first stage; bad lines go to the
//! dead-letter output with their line number.

mod event_time;
mod file;
pub mod kafka;
pub mod nats;
pub mod nexmark;

use anyhow::{Context, Result};
use std::sync::Arc;
use std::thread::JoinHandle;

use arrow::array::RecordBatch;
use std::cell::{Cell, RefCell};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::checkpoint::{Coordinator, Position, SourceState};
use crate::config::{Format, Pipeline, SourceConfig};
use crate::runtime::{DeadLetter, DeadLetters, END_OF_TIME, Message, Route, RowTimes, RunMetrics};
pub(crate) use event_time::EventClock;

/// What every source needs to run.
pub(crate) struct SourceContext {
    pub(crate) name: Arc<str>,
    /// This source's index among the pipeline's sources (its watermark input).
    pub(crate) input: usize,
    pub(crate) batch_size: usize,
    pub(crate) route: Route,
    pub(crate) dead_letters: Arc<DeadLetters>,
    pub(crate) metrics: Arc<RunMetrics>,
    /// Its figures for `/metrics`.
    pub(crate) figures: Arc<crate::runtime::metrics::SourceMetrics>,
    pub(crate) clock: RefCell<Option<EventClock>>,
    /// When the source last sent records, for its idleness watchdog.
    pub(crate) activity: Arc<Activity>,
    /// The run's checkpoints, if it takes any.
    pub(crate) checkpoints: Option<Arc<Coordinator>>,
    /// The last checkpoint this source sent the barrier of.
    pub(crate) barrier_sent: Cell<u64>,
    /// Where to start: the source's state in the checkpoint restored.
    pub(crate) restore: Option<SourceState>,
    /// The pace it is held to (`records_per_second`), if any.
    pub(crate) pace: Option<Pace>,
}

/// Holds a source to a number of records per second of wall time: after
/// each batch it sleeps until the records sent so far are due.
pub(crate) struct Pace {
    per_second: u64,
    started: Instant,
    sent: Cell<u64>,
}

impl Pace {
    pub(crate) fn new(per_second: u64) -> Self {
        Self {
            per_second: per_second.max(1),
            started: Instant::now(),
            sent: Cell::new(0),
        }
    }

    fn wait_after(&self, records: usize) {
        let sent = self.sent.get() + records as u64;
        self.sent.set(sent);
        let due = self.started + Duration::from_secs_f64(sent as f64 / self.per_second as f64);
        if let Some(ahead) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(ahead);
        }
    }
}

/// What a source's idleness watchdog watches.
#[derive(Default)]
pub(crate) struct Activity {
    /// Milliseconds since `started` at the last batch.
    last_batch_ms: AtomicU64,
    /// The source has ended (its watchdog stops).
    finished: AtomicBool,
    started: OnceLock<Instant>,
}

impl Activity {
    fn now_ms(&self) -> u64 {
        self.started.get_or_init(Instant::now).elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.last_batch_ms.store(self.now_ms(), Ordering::Relaxed);
    }
}

/// Marks source `input` idle downstream whenever it sent nothing for
/// `timeout`, so an idle source does not hold the watermark back forever.
fn watch_idleness(input: usize, timeout: Duration, route: Route, activity: Arc<Activity>) {
    let timeout_ms = timeout.as_millis() as u64;
    let tick = (timeout / 4).clamp(Duration::from_millis(1), Duration::from_millis(100));
    let spawned = std::thread::Builder::new()
        .name(format!("idle-{input}"))
        .spawn(move || {
            activity.touch();
            let mut idle_since = None;
            while !activity.finished.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                let last = activity.last_batch_ms.load(Ordering::Relaxed);
                let quiet = activity.now_ms().saturating_sub(last) >= timeout_ms;
                if quiet && idle_since != Some(last) {
                    if route.send_idle().is_err() {
                        return;
                    }
                    idle_since = Some(last);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("no idleness watchdog for source {input}: {e}");
    }
}

impl SourceContext {
    /// Sends the barrier of a checkpoint asked for since the last one, with
    /// `position`: where the source is after every record it has sent.
    ///
    /// # Errors
    /// When a downstream stage has stopped.
    pub(crate) fn barrier_point(&self, position: impl FnOnce() -> Position) -> Result<()> {
        let Some(checkpoints) = &self.checkpoints else {
            return Ok(());
        };
        let wanted = checkpoints.requested();
        if wanted <= self.barrier_sent.get() {
            return Ok(());
        }
        self.route.send_barrier(wanted)?;
        checkpoints.source_done(wanted, self.input, self.state(position()));
        self.barrier_sent.set(wanted);
        Ok(())
    }

    fn state(&self, position: Position) -> SourceState {
        SourceState {
            name: self.name.to_string(),
            position,
            clock: self.clock.borrow().as_ref().map(EventClock::save),
        }
    }

    /// Sends decoded records on: with their event times when the source has
    /// them (records without a readable one go to the dead letters), followed
    /// by the watermark when it moved.
    pub(crate) fn send(&self, batch: RecordBatch, lines: Arc<[u64]>) -> Result<()> {
        self.send_from_lanes(batch, lines, None)
    }

    /// As [`SourceContext::send`], for a source whose records come from
    /// lanes (partitions) with a watermark each: `lanes` gives each row's.
    pub(crate) fn send_from_lanes(
        &self,
        batch: RecordBatch,
        lines: Arc<[u64]>,
        lanes: Option<&[u32]>,
    ) -> Result<()> {
        if let Some(pace) = &self.pace {
            pace.wait_after(batch.num_rows());
        }
        self.activity.touch();
        let mut clock = self.clock.borrow_mut();
        let Some(clock) = clock.as_mut() else {
            self.figures
                .records
                .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            return self.route.send(Message {
                batch,
                source: Arc::clone(&self.name),
                lines,
                times: None,
            });
        };
        let stamped = clock.stamp(&batch, lanes);
        let mut keep = Vec::with_capacity(stamped.len());
        let mut times = RowTimes::default();
        for (row, time) in stamped.into_iter().enumerate() {
            match time {
                Ok((time, watermark)) => {
                    keep.push(row as u32);
                    times.times.push(time);
                    times.watermarks.push(watermark);
                }
                Err(reason) => self.dead_letters.send(&DeadLetter {
                    source: &self.name,
                    line: lines.get(row).copied().unwrap_or(0),
                    raw: &crate::codec::row_to_json(&batch, row),
                    reason: &reason,
                    operator: None,
                    version: None,
                })?,
            }
        }
        let mut message = Message {
            batch,
            source: Arc::clone(&self.name),
            lines,
            times: None,
        };
        if keep.len() < message.rows() {
            message = message.take(&keep)?;
        }
        message.times = Some(Arc::new(times));
        self.figures
            .records
            .fetch_add(message.rows() as u64, Ordering::Relaxed);
        self.route.send(message)?;
        match clock.advance() {
            Some(watermark) => {
                self.figures.watermark.store(watermark, Ordering::Relaxed);
                self.route.send_watermark(watermark)
            }
            None => Ok(()),
        }
    }
}

impl SourceContext {
    /// Sends the watermark when it moved without a record: a lane of the
    /// source went idle or was read to its end.
    ///
    /// # Errors
    /// When a downstream stage has stopped.
    pub(crate) fn tick(&self) -> Result<()> {
        let watermark = self
            .clock
            .borrow_mut()
            .as_mut()
            .and_then(EventClock::advance);
        match watermark {
            Some(watermark) => self.route.send_watermark(watermark),
            None => Ok(()),
        }
    }
}

/// Opens a source (so a missing file is reported before anything runs) and
/// starts its thread.
pub(crate) fn spawn(
    config: &SourceConfig,
    pipeline: &Pipeline,
    context: SourceContext,
) -> Result<JoinHandle<Result<()>>> {
    let name = context.name.to_string();
    if let Some(timeout) = config.event_time().and_then(|e| e.idle_timeout) {
        watch_idleness(
            context.input,
            timeout,
            context.route.clone(),
            Arc::clone(&context.activity),
        );
    }
    let thread = std::thread::Builder::new().name(format!("source-{name}"));
    let handle = match config {
        SourceConfig::Jsonl { path, .. } | SourceConfig::Csv { path, .. } => {
            let path = pipeline.resolve(path);
            let format = if matches!(config, SourceConfig::Csv { .. }) {
                Format::Csv
            } else {
                Format::Jsonl
            };
            let mut file = std::fs::File::open(&path)
                .with_context(|| format!("source `{name}`: cannot open `{}`", path.display()))?;
            if let Ok(meta) = file.metadata() {
                context
                    .figures
                    .bytes_total
                    .store(meta.len(), Ordering::Relaxed);
            }
            let start = match context.restore.as_ref().map(|r| &r.position) {
                Some(Position::File {
                    offset,
                    line,
                    header,
                }) => {
                    use std::io::Seek;
                    file.seek(std::io::SeekFrom::Start(*offset))
                        .with_context(|| format!("source `{name}`: cannot seek"))?;
                    file::Start {
                        offset: *offset,
                        line: *line,
                        header: header.clone(),
                    }
                }
                _ => file::Start::default(),
            };
            let reader = std::io::BufReader::with_capacity(1 << 20, file);
            thread
                .spawn(move || finish(&context, |c| file::read(reader, format, false, start, c)))?
        }
        SourceConfig::Stdin { format, .. } => {
            let format = *format;
            thread.spawn(move || {
                let stdin = std::io::BufReader::with_capacity(1 << 20, std::io::stdin());
                finish(&context, |c| {
                    file::read(stdin, format, true, file::Start::default(), c)
                })
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
            thread.spawn(move || finish(&context, |c| generate(&config, c)))?
        }
        SourceConfig::Nats(nats) => {
            let position = context.restore.as_ref().map(|r| &r.position);
            let source = nats::NatsSource::open(nats, &name, position)?;
            thread.spawn(move || finish(&context, |c| source.read(c)))?
        }
        SourceConfig::Kafka(kafka) => {
            let opened = kafka::open(kafka, context.restore.as_ref().map(|r| &r.position))?;
            thread.spawn(move || finish(&context, |c| kafka::read(opened, c)))?
        }
    };
    Ok(handle)
}

fn generate(config: &nexmark::NexmarkConfig, context: &SourceContext) -> Result<Position> {
    let mut generator = nexmark::NexmarkGenerator::new(config);
    let mut next_event = 1u64;
    if let Some(Position::Generator { events }) = context.restore.as_ref().map(|r| &r.position) {
        // The events of a seed are fixed: generate the ones sent already
        // again, and drop them.
        let mut left = *events;
        while left > 0 {
            let Some(batch) = generator.next_batch(left.min(1 << 16) as usize) else {
                break;
            };
            left -= batch.num_rows() as u64;
        }
        next_event = events + 1;
    }
    while let Some(batch) = generator.next_batch(context.batch_size) {
        let rows = batch.num_rows() as u64;
        let lines: Arc<[u64]> = (next_event..next_event + rows).collect();
        next_event += rows;
        context
            .metrics
            .records_in
            .fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
        context.send(batch, lines)?;
        context.barrier_point(|| Position::Generator {
            events: next_event - 1,
        })?;
    }
    Ok(Position::Generator {
        events: next_event - 1,
    })
}

/// Runs a source to its end, then tells the operators that its event time
/// has ended, so every open window and timer fires.
fn finish(
    context: &SourceContext,
    read: impl FnOnce(&SourceContext) -> Result<Position>,
) -> Result<()> {
    if let Some((clock, saved)) = context
        .clock
        .borrow_mut()
        .as_mut()
        .zip(context.restore.as_ref().and_then(|r| r.clock))
    {
        clock.restore(saved);
    }
    let read = read(context);
    context.activity.finished.store(true, Ordering::Relaxed);
    let position = read?;
    if let Some(checkpoints) = &context.checkpoints {
        checkpoints.source_finished(context.input, context.state(position));
    }
    context.route.send_watermark(END_OF_TIME)
}

/// Event time of the first generated Nexmark event (2023-11-14T22:13:20Z).
const NEXMARK_START_TIME_MS: i64 = 1_700_000_000_000;
