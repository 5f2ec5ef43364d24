//! The web dashboard: its page (compiled into the binary) and the snapshot
//! of the run that `GET /events` sends it every half second.
//!
//! A snapshot reads the same atomics as `/metrics` and `weir status`, plus
//! the pipeline's graph and the recent dead letters; it is built only for
//! a connected page, so a pipeline nobody watches pays nothing for it.
//! Rates and backpressure shares are worked out by the page from two
//! snapshots' counters.

use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::{Control, rfc3339};
use crate::config::{Pipeline, SinkConfig};
use crate::runtime::DeadLetters;

/// The page, its script and its style, served at `/`, `/dashboard.js` and
/// `/dashboard.css`.
pub const INDEX_HTML: &str = include_str!("dashboard/index.html");
/// See [`INDEX_HTML`].
pub const SCRIPT: &str = include_str!("dashboard/dashboard.js");
/// See [`INDEX_HTML`].
pub const STYLE: &str = include_str!("dashboard/dashboard.css");

/// What the dashboard shows besides the figures the control plane has.
pub struct View {
    /// The pipeline's graph.
    pub topology: Topology,
    /// The run's dead-letter output, with its recent entries.
    pub dead_letters: Arc<DeadLetters>,
}

/// The pipeline's graph: sources, operators and sinks, and what feeds what.
#[derive(Debug, Clone, Serialize)]
pub struct Topology {
    /// Sources by name, in pipeline order.
    pub sources: Vec<String>,
    /// Sinks, each described by its type and where it writes.
    pub sinks: Vec<String>,
    /// What flows from where to where.
    pub edges: Vec<Edge>,
}

/// One stream of the graph.
#[derive(Debug, Clone, Serialize)]
pub struct Edge {
    /// `source:N`, `operator:ID`.
    pub from: String,
    /// `operator:ID`, `sink:N`.
    pub to: String,
    /// The operator output it carries (`out` is the main one); none from a source.
    pub output: Option<String>,
}

impl Topology {
    /// The graph of `pipeline`: the sources feed the first operator, each
    /// operator's main output the next one, and each sink what its `from`
    /// names (default: the last operator's main output).
    pub fn of(pipeline: &Pipeline) -> Self {
        let config = &pipeline.config;
        let sources: Vec<String> = config.sources.iter().map(|s| s.name()).collect();
        let sinks = config.sinks.iter().map(sink_label).collect();
        let operator = |index: usize| format!("operator:{}", config.operators[index].id);
        let edge = |input: &crate::graph::Input, to: String| match &input.stream {
            crate::graph::Stream::Source(index) => Edge {
                from: format!("source:{index}"),
                to,
                output: None,
            },
            crate::graph::Stream::Output {
                operator: index,
                output,
            } => Edge {
                from: operator(*index),
                to,
                output: Some(output.clone()),
            },
        };
        let graph = &pipeline.graph;
        let mut edges = Vec::new();
        for (index, inputs) in graph.operators.iter().enumerate() {
            edges.extend(inputs.iter().map(|input| edge(input, operator(index))));
        }
        for (index, inputs) in graph.sinks.iter().enumerate() {
            edges.extend(
                inputs
                    .iter()
                    .map(|input| edge(input, format!("sink:{index}"))),
            );
        }
        Self {
            sources,
            sinks,
            edges,
        }
    }
}

fn sink_label(sink: &SinkConfig) -> String {
    let relative = |path: &std::path::Path| path.display().to_string();
    match sink {
        SinkConfig::Jsonl { path, .. } => format!("jsonl {}", relative(path)),
        SinkConfig::Stdout { .. } => "stdout".to_owned(),
        SinkConfig::Blackhole { .. } => "blackhole".to_owned(),
        SinkConfig::Postgres(config) => config.describe(),
        SinkConfig::Parquet(config) => format!("parquet {}", relative(&config.path)),
        SinkConfig::Nats(config) => format!("nats {}", config.subject),
        SinkConfig::Kafka(config) => format!("kafka {}", config.topic),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Everything the dashboard shows, as of now.
pub fn snapshot(control: &Control) -> serde_json::Value {
    let now = now_ms();
    let statuses = control.status();
    let mut operators = Vec::new();
    // Per operator: records emitted per output, and the time its workers
    // spent blocked on full channels (summed) with their number.
    let mut outputs = std::collections::HashMap::new();
    for (operator, status) in control.operators.iter().zip(&statuses) {
        let workers = &operator.metrics.workers;
        let blocked: u64 = workers
            .iter()
            .map(|w| w.blocked_ns.load(Ordering::Relaxed))
            .sum();
        let dead: u64 = workers
            .iter()
            .map(|w| w.dead_letters.load(Ordering::Relaxed))
            .sum();
        outputs.insert(
            status.id.clone(),
            (
                operator.metrics.output_records(),
                blocked,
                workers.len().max(1),
            ),
        );
        let versions = operator.versions();
        let history: Vec<_> = versions
            .history
            .iter()
            .map(|v| {
                json!({
                    "version": v.prepared.version,
                    "content_hash": v.prepared.content_hash,
                    "size": v.prepared.size,
                    "state_version": v.state_version,
                    "deployed_at": rfc3339(v.deployed_at),
                    "origin": v.origin,
                })
            })
            .collect();
        let mut entry = serde_json::to_value(status).unwrap_or_default();
        entry["dead_letters"] = json!(dead);
        entry["blocked_ns"] = json!(blocked);
        entry["versions"] = json!(history);
        entry["refusals"] = json!(versions.refusals);
        operators.push(entry);
    }
    let mut sources = Vec::new();
    if let Some(run) = &control.run_metrics {
        let figures = run.sources.lock().unwrap_or_else(|e| e.into_inner());
        for (name, f) in figures.iter() {
            sources.push(json!({
                "name": name,
                "records": f.records.load(Ordering::Relaxed),
                "bytes_read": f.bytes_read.load(Ordering::Relaxed),
                "blocked_ns": f.blocked_ns.load(Ordering::Relaxed),
            }));
        }
    }
    let source_figures = |name: &str| {
        sources
            .iter()
            .find(|s| s["name"] == name)
            .map_or((0, 0), |s| {
                (
                    s["records"].as_u64().unwrap_or(0),
                    s["blocked_ns"].as_u64().unwrap_or(0),
                )
            })
    };
    let (graph, dead_letters) = match &control.view {
        Some(view) => {
            let topology = &view.topology;
            let edges: Vec<_> = topology
                .edges
                .iter()
                .map(|edge| {
                    let (records, blocked, senders) = match edge.from.split_once(':') {
                        Some(("source", index)) => {
                            let name = index
                                .parse::<usize>()
                                .ok()
                                .and_then(|i| topology.sources.get(i));
                            let (records, blocked) =
                                name.map_or((0, 0), |name| source_figures(name));
                            (records, blocked, 1)
                        }
                        Some((_, id)) => outputs.get(id).map_or((0, 0, 1), |(outs, b, n)| {
                            let output = edge.output.as_deref().unwrap_or("out");
                            let records = outs
                                .iter()
                                .find(|(name, _)| name == output)
                                .map_or(0, |(_, n)| *n);
                            (records, *b, *n)
                        }),
                        None => (0, 0, 1),
                    };
                    json!({
                        "from": edge.from,
                        "to": edge.to,
                        "output": edge.output,
                        "records": records,
                        "blocked_ns": blocked,
                        "senders": senders,
                    })
                })
                .collect();
            (
                json!({
                    "sources": topology.sources,
                    "sinks": topology.sinks,
                    "edges": edges,
                }),
                json!({
                    "count": view.dead_letters.count(),
                    "recent": view.dead_letters.recent(),
                }),
            )
        }
        None => (
            json!({"sources": [], "sinks": [], "edges": []}),
            json!({"count": 0, "recent": []}),
        ),
    };
    let checkpoint = control.last_checkpoint().map(|c| {
        json!({
            "id": c.id,
            "duration_ms": c.duration_ms,
            "bytes": c.state_bytes,
            "path": c.path,
            "age_s": now.saturating_sub(c.completed_unix_ms) as f64 / 1e3,
        })
    });
    json!({
        "at_ms": now,
        "graph": graph,
        "operators": operators,
        "sources": sources,
        "sink_records": control
            .run_metrics
            .as_ref()
            .map_or(0, |r| r.records_out.load(Ordering::Relaxed)),
        "dead_letters": dead_letters,
        "checkpoints": control.checkpoints.is_some(),
        "checkpoint": checkpoint,
    })
}
