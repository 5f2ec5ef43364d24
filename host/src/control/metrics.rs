//! `GET /metrics`: the run's figures in the Prometheus text exposition
//! format (OpenMetrics flavour), through `prometheus-client`.
//!
//! The counters live where the work happens (plain atomics in the workers,
//! sources and sinks, histograms per worker); a scrape reads them into a
//! registry made for that scrape, so the hot path never touches the
//! registry and a pipeline nobody scrapes pays nothing for it.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::Control;

use crate::runtime::metrics::Labels;

/// The registry's counters and gauges, by name, before they are registered.
#[derive(Default)]
struct Families {
    operator_records_in: Family<Labels, Counter>,
    operator_records_out: Family<Labels, Counter>,
    operator_dead_letters: Family<Labels, Counter>,
    operator_blocked: Family<Labels, Counter<f64, AtomicU64>>,
    source_blocked: Family<Labels, Counter<f64, AtomicU64>>,
    source_bytes: Family<Labels, Counter>,
    source_watermark: Family<Labels, Gauge>,
    operator_watermark: Family<Labels, Gauge>,
    operator_watermark_lag: Family<Labels, Gauge<f64, AtomicU64>>,
    operator_version: Family<Labels, Gauge>,
    operator_swaps: Family<Labels, Counter>,
    operator_swap_pause: Family<Labels, Gauge<f64, AtomicU64>>,
    operator_state_keys: Family<Labels, Gauge>,
    operator_failures: Family<Labels, Counter>,
    operator_paused: Family<Labels, Gauge>,
    source_records: Family<Labels, Counter>,
}

/// Renders every figure of the run as of now.
pub fn render(control: &Control) -> String {
    let mut registry = Registry::with_prefix("weir");
    let f = Families::default();
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    for (operator, status) in control.operators.iter().zip(control.status()) {
        let op = || vec![("operator", status.id.clone())];
        for (index, worker) in operator.metrics.workers.iter().enumerate() {
            let labels = vec![
                ("operator", status.id.clone()),
                ("worker", index.to_string()),
            ];
            let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
            f.operator_records_in
                .get_or_create(&labels)
                .inc_by(load(&worker.records_in));
            f.operator_records_out
                .get_or_create(&labels)
                .inc_by(load(&worker.records_out));
            f.operator_dead_letters
                .get_or_create(&labels)
                .inc_by(load(&worker.dead_letters));
            f.operator_blocked
                .get_or_create(&labels)
                .inc_by(load(&worker.blocked_ns) as f64 / 1e9);
            let watermark = worker.watermark.load(Ordering::Relaxed);
            if watermark > i64::MIN && watermark < crate::runtime::END_OF_TIME {
                f.operator_watermark.get_or_create(&labels).set(watermark);
                f.operator_watermark_lag
                    .get_or_create(&labels)
                    .set((now_ms - watermark) as f64 / 1e3);
            }
        }
        f.operator_version
            .get_or_create(&op())
            .set(i64::from(status.version));
        f.operator_swaps
            .get_or_create(&op())
            .inc_by(operator.versions().history.len().saturating_sub(1) as u64);
        if let Some(pause) = status.pause_ms {
            f.operator_swap_pause.get_or_create(&op()).set(pause / 1e3);
        }
        f.operator_state_keys
            .get_or_create(&op())
            .set(status.state_keys);
        f.operator_failures
            .get_or_create(&op())
            .inc_by(status.failures);
        f.operator_paused
            .get_or_create(&op())
            .set(i64::from(status.paused));
    }
    if let Some(run) = &control.run_metrics {
        let sources = run.sources.lock().unwrap_or_else(|e| e.into_inner());
        for (name, figures) in sources.iter() {
            let labels = vec![("source", name.clone())];
            f.source_records
                .get_or_create(&labels)
                .inc_by(figures.records.load(Ordering::Relaxed));
            f.source_bytes
                .get_or_create(&labels)
                .inc_by(figures.bytes_read.load(Ordering::Relaxed));
            let watermark = figures.watermark.load(Ordering::Relaxed);
            if watermark > i64::MIN && watermark < crate::runtime::END_OF_TIME {
                f.source_watermark.get_or_create(&labels).set(watermark);
            }
            f.source_blocked
                .get_or_create(&labels)
                .inc_by(figures.blocked_ns.load(Ordering::Relaxed) as f64 / 1e9);
        }
        let sink_records = Counter::<u64>::default();
        sink_records.inc_by(run.records_out.load(Ordering::Relaxed));
        registry.register("sink_records", "Records written by all sinks", sink_records);
        let read = Counter::<u64>::default();
        read.inc_by(run.records_in.load(Ordering::Relaxed));
        registry.register(
            "source_lines_read",
            "Records read by all sources, bad lines included",
            read,
        );
    }
    register_families(&mut registry, f);
    register_histograms(&mut registry, control);
    register_checkpoint(&mut registry, control, now_ms);
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

fn register_families(registry: &mut Registry, f: Families) {
    registry.register(
        "operator_records_in",
        "Records given to an operator's worker",
        f.operator_records_in,
    );
    registry.register(
        "operator_records_out",
        "Records a worker emitted, on all outputs",
        f.operator_records_out,
    );
    registry.register(
        "operator_dead_letters",
        "Records and timers a worker sent to the dead-letter output",
        f.operator_dead_letters,
    );
    registry.register(
        "operator_backpressure_seconds",
        "Seconds a worker waited on full destinations",
        f.operator_blocked,
    );
    registry.register(
        "source_bytes_read",
        "Bytes of input a file source read",
        f.source_bytes,
    );
    registry.register(
        "source_watermark_milliseconds",
        "The last watermark a source sent (epoch milliseconds)",
        f.source_watermark,
    );
    registry.register(
        "source_backpressure_seconds",
        "Seconds a source waited on a full first stage",
        f.source_blocked,
    );
    registry.register(
        "operator_watermark_milliseconds",
        "A worker's event-time watermark (epoch milliseconds)",
        f.operator_watermark,
    );
    registry.register(
        "operator_watermark_lag_seconds",
        "How far a worker's watermark trails the wall clock",
        f.operator_watermark_lag,
    );
    registry.register(
        "operator_version",
        "The operator version running",
        f.operator_version,
    );
    registry.register(
        "operator_swaps",
        "Versions swapped into the running pipeline (deploys and rollbacks)",
        f.operator_swaps,
    );
    registry.register(
        "operator_last_swap_pause_seconds",
        "Longest gap between two batches around the last swap",
        f.operator_swap_pause,
    );
    registry.register(
        "operator_state_keys",
        "Keys with a value state",
        f.operator_state_keys,
    );
    registry.register(
        "operator_failures",
        "Records that trapped, ran out of time or memory, and batches refused whole",
        f.operator_failures,
    );
    registry.register(
        "operator_paused",
        "1 while the on_failure policy holds the operator paused",
        f.operator_paused,
    );
    registry.register(
        "source_records",
        "Records a source sent on",
        f.source_records,
    );
}

/// The workers' latency histograms, as they are.
fn register_histograms(registry: &mut Registry, control: &Control) {
    let Some(run) = &control.run_metrics else {
        return;
    };
    registry.register(
        "operator_batch_seconds",
        "Seconds from a worker taking a batch to having sent all it made on",
        run.batch_seconds.clone(),
    );
    registry.register(
        "operator_wasm_seconds",
        "Seconds spent inside one guest call",
        run.wasm_seconds.clone(),
    );
}

fn register_checkpoint(registry: &mut Registry, control: &Control, now_ms: i64) {
    let Some(last) = control.last_checkpoint() else {
        return;
    };
    let id = Gauge::<i64>::default();
    id.set(last.id as i64);
    registry.register("checkpoint_last_id", "The last completed checkpoint", id);
    let duration = Gauge::<f64, AtomicU64>::default();
    duration.set(last.duration_ms / 1e3);
    registry.register(
        "checkpoint_last_duration_seconds",
        "Seconds from trigger to completion of the last checkpoint",
        duration,
    );
    let bytes = Gauge::<i64>::default();
    bytes.set(last.state_bytes as i64);
    registry.register(
        "checkpoint_last_bytes",
        "Bytes of state files in the last checkpoint",
        bytes,
    );
    let age = Gauge::<f64, AtomicU64>::default();
    age.set((now_ms - last.completed_unix_ms as i64).max(0) as f64 / 1e3);
    registry.register(
        "checkpoint_last_age_seconds",
        "Seconds since the last checkpoint completed",
        age,
    );
}
