//! Counters of a run, read by the progress line and the summary.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records counted at the edges of the pipeline.
#[derive(Default)]
pub struct RunMetrics {
    /// Records read by all sources (bad lines included).
    pub records_in: AtomicU64,
    /// Records written by all sinks.
    pub records_out: AtomicU64,
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
                        "\r\x1b[2Kweir: {} in, {} out, {} records/s",
                        human(records_in as f64),
                        human(records_out as f64),
                        human(records_in as f64 / elapsed.as_secs_f64())
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
