//! Wiring a pipeline's stages together and running it to the end of its input.

use anyhow::{Context, Result, anyhow, bail};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{WeakSender, channel};

use super::dead_letter::DeadLetters;
use super::failures::Failures;
use super::message::Envelope;
use super::metrics::{OperatorMetrics, Progress, RunMetrics};
use super::route::{CHANNEL_CAPACITY, Route};
use super::state::Owner;
use super::swap::VersionStats;
use super::worker::{Restored, Worker, WorkerSetup};
use crate::checkpoint::{self, Checkpointing, Coordinator, Expected};
use crate::config::Pipeline;
use crate::control::{Control, OperatorSetup};
use crate::graph::{Graph, Reader, Stream};
use crate::sources::{self, EventClock, SourceContext};
use crate::wasm::{PreparedOperator, WasmEngine};

/// The default number of records per batch.
pub const DEFAULT_BATCH_SIZE: usize = 1024;

/// What a finished run did.
#[derive(Debug)]
pub struct RunSummary {
    /// Records read by the sources.
    pub records_in: u64,
    /// Records written by the sinks.
    pub records_out: u64,
    /// Records sent to the dead-letter output.
    pub dead_letters: u64,
    /// Wall time of the run (after the operators were prepared).
    pub elapsed: Duration,
    /// Per operator, in pipeline order.
    pub operators: Vec<OperatorReport>,
}

/// What one operator did in a run.
#[derive(Debug)]
pub struct OperatorReport {
    /// The operator id.
    pub id: String,
    /// Records it was given.
    pub records_in: u64,
    /// Records it emitted.
    pub records_out: u64,
    /// Its own counters.
    pub counters: HashMap<String, i64>,
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "weir: {} records in, {} out, {} dead-lettered in {:.2} s ({} records/s)",
            self.records_in,
            self.records_out,
            self.dead_letters,
            secs,
            super::human(self.records_in as f64 / secs.max(1e-9))
        )
    }
}

/// Runs a pipeline whose operators are prepared (in pipeline order) until
/// every source is exhausted and every sink flushed.
///
/// # Errors
/// When a file cannot be opened or written, or an operator cannot be started
/// or restarted; bad records never fail a run, they go to the dead letters.
pub fn run(
    pipeline: &Pipeline,
    engine: &WasmEngine,
    prepared: Vec<PreparedOperator>,
) -> Result<RunSummary> {
    start(pipeline, engine, prepared, None)?.wait()
}

/// A pipeline whose threads are running.
pub struct Running {
    control: Arc<Control>,
    handles: Vec<JoinHandle<Result<()>>>,
    metrics: Arc<RunMetrics>,
    operator_metrics: Vec<(String, Arc<OperatorMetrics>)>,
    dead_letters: Arc<DeadLetters>,
    started: Instant,
    progress: Progress,
    checkpoints: Option<Arc<Coordinator>>,
}

impl Running {
    /// The control plane: deploy, roll back, status.
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// The checkpoint coordinator, when the run takes checkpoints.
    pub fn checkpoints(&self) -> Option<&Arc<Coordinator>> {
        self.checkpoints.as_ref()
    }

    /// Waits for the end of the input and the last sink flush.
    ///
    /// # Errors
    /// See [`run`].
    pub fn wait(self) -> Result<RunSummary> {
        // Join upstream to downstream; report the most downstream real
        // failure (an upstream "downstream stopped" is only its echo).
        let mut errors = Vec::new();
        for handle in self.handles {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e),
                Err(_) => errors.push(anyhow!("a pipeline thread panicked")),
            }
        }
        drop(self.progress);
        self.dead_letters.flush()?;
        if let Some(checkpoints) = &self.checkpoints {
            checkpoints.stop();
            // Read to the end and committed: nothing to resume.
            if errors.is_empty() && checkpoints.sources_finished() {
                checkpoints.clean_up();
            }
        }
        if let Some(e) = errors
            .iter()
            .rev()
            .find(|e| !e.to_string().contains("downstream stage stopped"))
            .or(errors.first())
        {
            return Err(anyhow!("{e:#}"));
        }
        Ok(RunSummary {
            records_in: self.metrics.records_in.load(Ordering::Relaxed),
            records_out: self.metrics.records_out.load(Ordering::Relaxed),
            dead_letters: self.dead_letters.count(),
            elapsed: self.started.elapsed(),
            operators: self
                .operator_metrics
                .iter()
                .map(|(id, m)| OperatorReport {
                    id: id.clone(),
                    records_in: m.records_in.load(Ordering::Relaxed),
                    records_out: m.records_out.load(Ordering::Relaxed),
                    counters: m.counters.lock().map(|c| c.clone()).unwrap_or_default(),
                })
                .collect(),
        })
    }
}

/// Starts a pipeline whose operators are prepared (in pipeline order).
///
/// # Errors
/// When a file cannot be opened, or an operator cannot be started.
pub fn start(
    pipeline: &Pipeline,
    engine: &WasmEngine,
    prepared: Vec<PreparedOperator>,
    checkpointing: Option<Checkpointing>,
) -> Result<Running> {
    let config = &pipeline.config;
    let batch_size = config.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
    let metrics = Arc::new(RunMetrics::default());
    let dead_letters = Arc::new(DeadLetters::open(&pipeline.dead_letter_path())?);
    let (checkpoints, restore) = match checkpointing {
        Some(c) => {
            // New checkpoints are numbered after every one in the folder,
            // also those skipped as damaged or of another format, so none
            // is written over one of them.
            let newest_kept = checkpoint::store::list(&c.folder.path)
                .first()
                .map_or(0, |(id, _)| *id);
            let last_id = c
                .restore
                .as_ref()
                .map_or(0, |r| r.manifest.id)
                .max(newest_kept);
            let coordinator = Coordinator::new(c.folder, c.interval, expected(pipeline), last_id)?;
            (Some(Arc::new(coordinator)), c.restore)
        }
        None => (None, None),
    };

    // Sinks first, so every stage has somewhere to send to.
    let mut sink_senders = Vec::new();
    let mut sink_handles = Vec::new();
    for (index, sink) in config.sinks.iter().enumerate() {
        let setup = crate::sinks::SinkSetup {
            index,
            inputs: pipeline.graph.senders(Reader::Sink(index)),
            checkpoints: checkpoints.clone(),
            restore: restore.as_ref().map(|r| {
                let bytes = r.manifest.sinks.get(index).map_or(0, |s| s.bytes);
                // A savepoint's parts are not in this folder: only its size counts.
                (if r.parts_here { r.manifest.id } else { 0 }, bytes)
            }),
            dead_letters: Arc::clone(&dead_letters),
            metrics: Arc::clone(&metrics),
        };
        let (sender, handle) = crate::sinks::spawn(sink, pipeline, setup)?;
        sink_senders.push(sender);
        sink_handles.push(handle);
    }
    if let Some(c) = &checkpoints {
        c.set_sinks(sink_senders.iter().map(|s| s.downgrade()).collect());
    }

    // Disk state: a working store per run, under the pipeline's `.weir`.
    let state_dir = match config.state_backend {
        crate::config::StateBackend::Memory => None,
        crate::config::StateBackend::Disk => Some(pipeline.state_dir_path()),
    };

    // One channel per worker of every operator.
    let mut worker_channels = Vec::new();
    for op in &config.operators {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..op.parallelism)
            .map(|_| channel(CHANNEL_CAPACITY))
            .unzip();
        worker_channels.push((senders, receivers));
    }

    let operator_metrics: Vec<Arc<OperatorMetrics>> = config
        .operators
        .iter()
        .map(|op| Arc::new(OperatorMetrics::new(&op.id, op.parallelism, &metrics)))
        .collect();

    // Start every worker before any source, so a component that fails to
    // start stops the run before data flows.
    let mut worker_handles: Vec<JoinHandle<Result<()>>> = Vec::new();
    let mut controls = Vec::new();
    let mut receivers_by_op: Vec<_> = worker_channels
        .iter_mut()
        .map(|(_, receivers)| std::mem::take(receivers))
        .collect();
    // Where a stream goes: every operator and sink that reads it.
    let route_of = |stream: &Stream| {
        let mut route = Route::default();
        for (reader, input) in pipeline.graph.readers(stream) {
            match reader {
                Reader::Operator(i) => route.to_workers(
                    worker_channels[i].0.clone(),
                    config.operators[i].key_by.clone(),
                    input.senders.start,
                ),
                Reader::Sink(i) => route.to_sink(sink_senders[i].clone(), input.senders.start),
            }
        }
        route
    };
    for (index, (op, prepared)) in config.operators.iter().zip(&prepared).enumerate() {
        let outputs: HashMap<String, Route> = pipeline
            .graph
            .outputs_read(index)
            .into_iter()
            .map(|output| {
                let route = route_of(&Stream::Output {
                    operator: index,
                    output: output.clone(),
                });
                (output, route)
            })
            .collect();
        let config_json = serde_json::to_string(&op.config.clone().unwrap_or_default())
            .context("operator config is not representable as JSON")?;
        let stats = Arc::new(VersionStats::default());
        let failures = Arc::new(Failures::new(op.on_failure.clone()));
        let mut state_version = 0;
        let inputs = pipeline.graph.senders(Reader::Operator(index));
        let mut restored: Vec<Restored> = match restore.as_ref() {
            // A disk store loads the files itself, entry by entry: worker i
            // takes saved worker i's file when the parallelism is the same
            // (its keys are the same), else its own keys of every file.
            Some(r) if state_dir.is_some() => match r.state_files(&op.id) {
                Some(files) if files.len() == op.parallelism => files
                    .into_iter()
                    .map(|file| Restored::Files {
                        dir: r.dir.clone(),
                        files: vec![file],
                        owner: Owner::ALL,
                    })
                    .collect(),
                Some(files) => (0..op.parallelism)
                    .map(|index| Restored::Files {
                        dir: r.dir.clone(),
                        files: files.clone(),
                        owner: Owner {
                            index,
                            workers: op.parallelism,
                        },
                    })
                    .collect(),
                None => Vec::new(),
            },
            Some(r) => match r.operator_states(&op.id)? {
                Some(states) => checkpoint::partition(states, op.parallelism)
                    .into_iter()
                    .map(Restored::Decoded)
                    .collect(),
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        restored.resize_with(op.parallelism, || Restored::Decoded(Vec::new()));
        for (worker_index, (receiver, restore)) in std::mem::take(&mut receivers_by_op[index])
            .into_iter()
            .zip(restored)
            .enumerate()
        {
            let worker = Worker::new(WorkerSetup {
                inputs,
                index: worker_index,
                prepared: prepared.clone(),
                config_json: config_json.clone(),
                limits: op.limits.clone(),
                key_by: op.key_by.clone(),
                metrics: Arc::clone(&operator_metrics[index]),
                dead_letters: Arc::clone(&dead_letters),
                outputs: outputs
                    .iter()
                    .map(|(name, route)| {
                        let blocked = operator_metrics[index]
                            .workers
                            .get(worker_index)
                            .map(|w| Arc::clone(&w.blocked_ns))
                            .unwrap_or_default();
                        (
                            name.clone(),
                            route.from_input(worker_index).counting_blocked(blocked),
                        )
                    })
                    .collect(),
                stats: Arc::clone(&stats),
                failures: Arc::clone(&failures),
                operator: index,
                checkpoints: checkpoints.clone(),
                restore,
                state_file: state_dir
                    .as_ref()
                    .map(|dir| dir.join(format!("{}-{worker_index}.redb", op.id))),
            })?;
            state_version = worker.state_version();
            if worker.is_keyed() && op.key_by.is_none() && op.parallelism > 1 {
                bail!(
                    "operator `{}` is keyed: give it a `key_by` field, or `parallelism = 1` to \
                     run it over all records as one key",
                    op.id
                );
            }
            let handle = std::thread::Builder::new()
                .name(format!("op-{}", op.id))
                .spawn(move || worker.run(receiver))?;
            worker_handles.push(handle);
        }
        controls.push(OperatorSetup {
            id: op.id.clone(),
            inputs: pipeline.graph.operators[index]
                .iter()
                .map(|input| Graph::describe(config, &input.stream))
                .collect(),
            config_json,
            limits: op.limits.clone(),
            key_by: op.key_by.clone(),
            workers: worker_channels[index]
                .0
                .iter()
                .map(|s| s.downgrade())
                .collect(),
            metrics: Arc::clone(&operator_metrics[index]),
            prepared: prepared.clone(),
            state_version,
            stats,
            failures,
        });
    }
    let control = Arc::new(
        Control::new(engine.clone(), controls, checkpoints.clone())
            .with_run_metrics(Arc::clone(&metrics))
            .with_view(pipeline, Arc::clone(&dead_letters)),
    );
    start_clock(
        worker_channels
            .iter()
            .flat_map(|(senders, _)| senders.iter().map(|s| s.downgrade()))
            .collect(),
    );

    // Each source feeds what reads it; a source is one sender (number 0 of
    // its stream).
    let source_routes: Vec<Route> = (0..config.sources.len())
        .map(|input| route_of(&Stream::Source(input)).from_input(0))
        .collect();
    drop(worker_channels);
    drop(sink_senders);

    let started = Instant::now();
    let progress = Progress::start(Arc::clone(&metrics));
    let mut source_handles = Vec::new();
    for ((input, source), route) in config.sources.iter().enumerate().zip(source_routes) {
        let figures = metrics.source(&source.name());
        let context = SourceContext {
            name: source.name().into(),
            input,
            batch_size,
            route: route.counting_blocked(Arc::clone(&figures.blocked_ns)),
            dead_letters: Arc::clone(&dead_letters),
            metrics: Arc::clone(&metrics),
            figures: Arc::clone(&figures),
            clock: std::cell::RefCell::new(source.event_time().map(EventClock::new)),
            activity: Arc::default(),
            checkpoints: checkpoints.clone(),
            barrier_sent: std::cell::Cell::new(restore.as_ref().map_or(0, |r| r.manifest.id)),
            pace: source.records_per_second().map(crate::sources::Pace::new),
            restore: restore.as_ref().and_then(|r| {
                let name = source.name();
                // By place when the names repeat (two unnamed file sources).
                r.manifest
                    .sources
                    .get(input)
                    .filter(|s| s.name == name)
                    .or_else(|| r.source(&name))
                    .cloned()
            }),
        };
        source_handles.push(sources::spawn(source, pipeline, context)?);
    }
    if let Some(c) = &checkpoints {
        c.spawn();
    }

    Ok(Running {
        control,
        handles: source_handles
            .into_iter()
            .chain(worker_handles)
            .chain(sink_handles)
            .collect(),
        metrics,
        operator_metrics: config
            .operators
            .iter()
            .map(|op| op.id.clone())
            .zip(operator_metrics)
            .collect(),
        dead_letters,
        started,
        progress,
        checkpoints,
    })
}

/// Who takes part in every checkpoint of `pipeline`.
fn expected(pipeline: &Pipeline) -> Expected {
    let config = &pipeline.config;
    Expected {
        sources: config.sources.iter().map(|s| s.name()).collect(),
        operators: config
            .operators
            .iter()
            .map(|o| (o.id.clone(), o.parallelism))
            .collect(),
        sinks: config
            .sinks
            .iter()
            .map(|s| match s {
                crate::config::SinkConfig::Jsonl { path, .. } => {
                    pipeline.resolve(path).display().to_string()
                }
                crate::config::SinkConfig::Postgres(config) => config.describe(),
                crate::config::SinkConfig::Parquet(config) => {
                    pipeline.resolve(&config.path).display().to_string()
                }
                _ => String::new(),
            })
            .collect(),
    }
}

/// How often workers hear the wall clock, for processing-time timers.
const CLOCK_TICK: Duration = Duration::from_millis(50);

/// Sends every worker the wall clock every [`CLOCK_TICK`] until they have
/// all finished. A busy worker misses a tick rather than slowing the clock.
fn start_clock(workers: Vec<WeakSender<Envelope>>) {
    let spawned = std::thread::Builder::new()
        .name("weir-clock".into())
        .spawn(move || {
            loop {
                std::thread::sleep(CLOCK_TICK);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                let mut alive = false;
                for worker in workers.iter().filter_map(WeakSender::upgrade) {
                    alive = true;
                    let _ = worker.try_send(Envelope::Tick(now));
                }
                if !alive {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("no clock thread, processing-time timers will not fire: {e}");
    }
}
