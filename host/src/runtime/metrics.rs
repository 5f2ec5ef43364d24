//! Counters of a run, read by the progress line and the summary.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Labels of a figure: `operator`, `worker`, `source`.
pub type Labels = Vec<(&'static str, String)>;

/// Latency histograms by labels.
pub type Latencies = Family<Labels, Histogram, fn() -> Histogram>;

/// Records counted at the edges of the pipeline, and the workers' latency
/// histograms (one family each, so `/metrics` shows each name once).
pub struct RunMetrics {
    /// Records read by all sources (bad lines included).
    pub records_in: AtomicU64,
    /// Records written by all sinks.
    pub records_out: AtomicU64,
    /// Per source, by name.
    pub sources: Mutex<Vec<(String, Arc<SourceMetrics>)>>,
    /// Seconds from a worker taking a batch to having sent all it made on.
    pub batch_seconds: Latencies,
    /// Seconds spent inside one guest call.
    pub wasm_seconds: Latencies,
    /// The taps attached to the run (`weir tap`).
    pub taps: Arc<super::Taps>,
}

impl Default for RunMetrics {
    fn default() -> Self {
        Self {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            sources: Mutex::default(),
            batch_seconds: Family::new_with_constructor(latency_histogram),
            wasm_seconds: Family::new_with_constructor(latency_histogram),
            taps: Arc::default(),
        }
    }
}

impl RunMetrics {
    /// What the sources have read of their files and their watermark, for
    /// the progress line: `, 37% read, watermark 2026-12-07T10:00:00Z`.
    fn source_progress(&self) -> String {
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let (mut read, mut total) = (0u64, 0u64);
        let mut watermark: Option<i64> = None;
        for (_, figures) in sources.iter() {
            let size = figures.bytes_total.load(Ordering::Relaxed);
            if size > 0 {
                total += size;
                read += figures.bytes_read.load(Ordering::Relaxed).min(size);
            }
            let w = figures.watermark.load(Ordering::Relaxed);
            if w > i64::MIN {
                watermark = Some(watermark.map_or(w, |m| m.min(w)));
            }
        }
        let mut line = String::new();
        if total > 0 {
            line.push_str(&format!(
                ", {:.0}% read",
                read as f64 * 100.0 / total as f64
            ));
        }
        if let Some(ms) = watermark.and_then(|w| u64::try_from(w).ok()) {
            let at = std::time::UNIX_EPOCH + Duration::from_millis(ms);
            line.push_str(&format!(
                ", watermark {}",
                humantime::format_rfc3339_seconds(at)
            ));
        }
        line
    }

    /// The counters of source `name`.
    pub fn source(&self, name: &str) -> Arc<SourceMetrics> {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, counters)) = sources.iter().find(|(n, _)| n == name) {
            return Arc::clone(counters);
        }
        let counters = Arc::new(SourceMetrics::default());
        sources.push((name.to_owned(), Arc::clone(&counters)));
        counters
    }
}

/// Figures of one source, for `/metrics` and the progress line.
pub struct SourceMetrics {
    /// Records it sent on.
    pub records: AtomicU64,
    /// Bytes of input read (files).
    pub bytes_read: AtomicU64,
    /// Bytes of input in all, when known (files); 0 when not.
    pub bytes_total: AtomicU64,
    /// The last watermark it sent (`i64::MIN` before the first).
    pub watermark: AtomicI64,
    /// Nanoseconds it waited on a full first stage (backpressure).
    pub blocked_ns: Arc<AtomicU64>,
}

impl Default for SourceMetrics {
    fn default() -> Self {
        Self {
            records: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            blocked_ns: Arc::default(),
        }
    }
}

/// Counters of one operator, across its workers and versions.
#[derive(Default)]
pub struct OperatorMetrics {
    /// Records given to the operator.
    pub records_in: AtomicU64,
    /// Records it emitted, on all outputs.
    pub records_out: AtomicU64,
    /// Keys with a value state, over all workers.
    pub state_keys: AtomicI64,
    /// Counters the operator itself maintains (`counter-add`).
    pub counters: Arc<Mutex<HashMap<String, i64>>>,
    /// Per worker.
    pub workers: Vec<WorkerMetrics>,
    /// Records emitted per output, over all workers (the edges of the
    /// dashboard's graph), in the order the outputs were first used.
    pub outputs: Mutex<Vec<(String, Arc<AtomicU64>)>>,
    /// The run's taps: one flag a worker checks per batch.
    pub taps: Arc<super::Taps>,
}

impl OperatorMetrics {
    /// The counters of operator `id` with `parallelism` workers, whose
    /// histograms are in `run`'s families.
    pub fn new(id: &str, parallelism: usize, run: &RunMetrics) -> Self {
        let workers = (0..parallelism)
            .map(|index| {
                let labels: Labels =
                    vec![("operator", id.to_owned()), ("worker", index.to_string())];
                WorkerMetrics {
                    records_in: AtomicU64::new(0),
                    records_out: AtomicU64::new(0),
                    dead_letters: AtomicU64::new(0),
                    watermark: AtomicI64::new(i64::MIN),
                    blocked_ns: Arc::default(),
                    batch_seconds: run.batch_seconds.get_or_create(&labels).clone(),
                    wasm_seconds: run.wasm_seconds.get_or_create(&labels).clone(),
                }
            })
            .collect();
        Self {
            workers,
            taps: Arc::clone(&run.taps),
            ..Self::default()
        }
    }

    /// The counter of records emitted on `output` (a worker asks once per
    /// output and keeps it).
    pub fn output(&self, output: &str) -> Arc<AtomicU64> {
        let mut outputs = self.outputs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, counter)) = outputs.iter().find(|(name, _)| name == output) {
            return Arc::clone(counter);
        }
        let counter = Arc::new(AtomicU64::new(0));
        outputs.push((output.to_owned(), Arc::clone(&counter)));
        counter
    }

    /// Records emitted on each output so far.
    pub fn output_records(&self) -> Vec<(String, u64)> {
        let outputs = self.outputs.lock().unwrap_or_else(|e| e.into_inner());
        outputs
            .iter()
            .map(|(name, n)| (name.clone(), n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Figures of one worker, for `/metrics`.
pub struct WorkerMetrics {
    /// Records given to it.
    pub records_in: AtomicU64,
    /// Records it emitted, on all outputs.
    pub records_out: AtomicU64,
    /// Records (and timers) it sent to the dead-letter output.
    pub dead_letters: AtomicU64,
    /// Its event-time watermark (`i64::MIN` before the first).
    pub watermark: AtomicI64,
    /// Nanoseconds it waited on full destinations (backpressure).
    pub blocked_ns: Arc<AtomicU64>,
    /// Seconds from taking a batch to having sent all it made on.
    pub batch_seconds: Histogram,
    /// Seconds spent inside the operator's guest calls for a batch.
    pub wasm_seconds: Histogram,
}

/// A latency histogram: buckets from 10 µs to about 2.6 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e-5, 4.0, 10))
}

/// A figure with a K/M suffix, for people.
pub fn human(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2} M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} K", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// Prints a progress line on stderr every second while the run lasts, when
/// stderr is a terminal.
pub struct Progress {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Starts the progress thread (does nothing unless stderr is a terminal).
    pub fn start(metrics: Arc<RunMetrics>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = std::io::stderr().is_terminal().then(|| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut printed = false;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    let elapsed = started.elapsed();
                    if elapsed < Duration::from_secs(1) || elapsed.subsec_millis() >= 100 {
                        continue;
                    }
                    let records_in = metrics.records_in.load(Ordering::Relaxed);
                    let records_out = metrics.records_out.load(Ordering::Relaxed);
                    eprint!(
                        "\r\x1b[2Kweir: {} in, {} out, {} records/s{}",
                        human(records_in as f64),
                        human(records_out as f64),
                        human(records_in as f64 / elapsed.as_secs_f64()),
                        metrics.source_progress()
                    );
                    printed = true;
                }
                if printed {
                    eprint!("\r\x1b[2K");
                }
            })
        });
        Self { stop, handle }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
