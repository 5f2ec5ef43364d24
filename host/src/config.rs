//! The pipeline file: sources → operators → sinks, in TOML.
//!
//! Every table refuses unknown keys, and every error names the file, the line
//! and the field, so a typo never silently changes what a pipeline does.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A whole pipeline file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// A name for logs and `weir status`; defaults to the file's folder name.
    #[serde(default)]
    pub name: Option<String>,
    /// Where records come from; several sources are merged.
    #[serde(rename = "source", default)]
    pub sources: Vec<SourceConfig>,
    /// The operators: a chain in file order, or a graph through their `from`
    /// keys (see [`crate::graph`]).
    #[serde(rename = "operator", default)]
    pub operators: Vec<OperatorConfig>,
    /// Where records go.
    #[serde(rename = "sink", default)]
    pub sinks: Vec<SinkConfig>,
    /// Where records that cannot be decoded or processed go.
    #[serde(default)]
    pub dead_letter: Option<DeadLetterConfig>,
    /// Records per batch handed to an operator (default 1024).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Loopback address of the admin HTTP API (`weir deploy`, `weir status`,
    /// `weir rollback`); none by default. Port 0 picks a free port.
    #[serde(default)]
    pub admin: Option<std::net::SocketAddr>,
    /// A folder watched while the pipeline runs: writing `<operator-id>.wasm`
    /// there deploys it as that operator's next version.
    #[serde(default)]
    pub deploy_dir: Option<PathBuf>,
    /// Time between checkpoints (default 10 s). A restart resumes from the
    /// newest one, exactly once.
    #[serde(default, with = "humantime_serde_compat::option")]
    pub checkpoint_interval: Option<std::time::Duration>,
    /// Where checkpoints go (default `.weir/checkpoints` beside the pipeline
    /// file).
    #[serde(default)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Where keyed state (value and map states, timers) lives while the pipeline runs.
    #[serde(default)]
    pub state_backend: StateBackend,
}

/// Where keyed state (value and map states, timers) lives while a pipeline runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    /// In memory: the fastest.
    #[default]
    Memory,
    /// In an embedded database file per worker (redb), for state that
    /// outgrows memory; checkpoints and recovery work the same.
    Disk,
}

/// One source; the `type` key picks the kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// A JSON Lines file: one JSON object per line.
    Jsonl {
        /// Name used in dead-letter entries (default: the type).
        #[serde(default)]
        name: Option<String>,
        /// The event time of its records, if the pipeline works in event time.
        #[serde(default)]
        event_time: Option<EventTimeConfig>,
        /// The file, relative to the pipeline file.
        path: PathBuf,
        /// Read at most this many records per second of wall time (default:
        /// as fast as it can): replays a file as a live feed, for dashboards,
        /// demos and tests of a running pipeline.
        #[serde(default)]
        records_per_second: Option<u64>,
    },
    /// A CSV file whose first line is the header.
    Csv {
        /// Name used in dead-letter entries (default: the type).
        #[serde(default)]
        name: Option<String>,
        /// The event time of its records, if the pipeline works in event time.
        #[serde(default)]
        event_time: Option<EventTimeConfig>,
        /// The file, relative to the pipeline file.
        path: PathBuf,
        /// Read at most this many records per second of wall time (default:
        /// as fast as it can): replays a file as a live feed, for dashboards,
        /// demos and tests of a running pipeline.
        #[serde(default)]
        records_per_second: Option<u64>,
    },
    /// Standard input, as JSON Lines or CSV.
    Stdin {
        /// Name used in dead-letter entries (default: the type).
        #[serde(default)]
        name: Option<String>,
        /// The event time of its records, if the pipeline works in event time.
        #[serde(default)]
        event_time: Option<EventTimeConfig>,
        /// `jsonl` (default) or `csv`.
        #[serde(default)]
        format: Format,
    },
    /// The built-in, seeded Nexmark event generator.
    Nexmark {
        /// Name used in dead-letter entries (default: the type).
        #[serde(default)]
        name: Option<String>,
        /// The event time of its records, if the pipeline works in event time.
        #[serde(default)]
        event_time: Option<EventTimeConfig>,
        /// Number of events (all three kinds together).
        events: u64,
        /// Seed of the deterministic generator (default 42).
        #[serde(default = "nexmark_seed")]
        seed: u64,
        /// Events per second of event time (default 10,000).
        #[serde(default = "nexmark_rate")]
        rate: u64,
        /// Read at most this many records per second of wall time (default:
        /// as fast as it can): replays a file as a live feed, for dashboards,
        /// demos and tests of a running pipeline.
        #[serde(default)]
        records_per_second: Option<u64>,
    },
    /// A NATS JetStream stream, read through a durable pull consumer.
    Nats(crate::sources::nats::NatsSourceConfig),
    /// Topics of a Kafka cluster (see [`crate::sources::kafka`]).
    Kafka(crate::sources::kafka::KafkaSourceConfig),
}

/// Where a source's records keep their event time, and how late they may
/// arrive: the watermark trails the largest event time seen by
/// `watermark_delay` (Flink's bounded out-of-orderness).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTimeConfig {
    /// The record field holding the event time: epoch milliseconds (an
    /// integer) or an RFC 3339 string.
    pub field: String,
    /// How far behind the largest event time seen the watermark stays.
    #[serde(default, with = "humantime_serde_compat")]
    pub watermark_delay: std::time::Duration,
    /// After this long without records the source stops holding the
    /// watermark of the operators it feeds back (default: never).
    #[serde(default, with = "humantime_serde_compat::option")]
    pub idle_timeout: Option<std::time::Duration>,
}

fn nexmark_seed() -> u64 {
    42
}

fn nexmark_rate() -> u64 {
    10_000
}

impl SourceConfig {
    /// The `type` key of this kind.
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceConfig::Jsonl { .. } => "jsonl",
            SourceConfig::Csv { .. } => "csv",
            SourceConfig::Stdin { .. } => "stdin",
            SourceConfig::Nexmark { .. } => "nexmark",
            SourceConfig::Nats(_) => "nats",
            SourceConfig::Kafka(_) => "kafka",
        }
    }

    /// How the source's records carry their event time, if they do.
    pub fn event_time(&self) -> Option<&EventTimeConfig> {
        match self {
            SourceConfig::Jsonl { event_time, .. }
            | SourceConfig::Csv { event_time, .. }
            | SourceConfig::Stdin { event_time, .. }
            | SourceConfig::Nexmark { event_time, .. } => event_time.as_ref(),
            SourceConfig::Nats(nats) => nats.event_time.as_ref(),
            SourceConfig::Kafka(kafka) => kafka.event_time.as_ref(),
        }
    }

    /// The pace the source is held to, if it has one.
    pub fn records_per_second(&self) -> Option<u64> {
        match self {
            SourceConfig::Jsonl {
                records_per_second, ..
            }
            | SourceConfig::Csv {
                records_per_second, ..
            }
            | SourceConfig::Nexmark {
                records_per_second, ..
            } => *records_per_second,
            SourceConfig::Nats(nats) => nats.records_per_second,
            SourceConfig::Kafka(kafka) => kafka.records_per_second,
            SourceConfig::Stdin { .. } => None,
        }
    }

    /// The source's name (default: its type).
    pub fn name(&self) -> String {
        let name = match self {
            SourceConfig::Jsonl { name, .. }
            | SourceConfig::Csv { name, .. }
            | SourceConfig::Stdin { name, .. }
            | SourceConfig::Nexmark { name, .. } => name,
            SourceConfig::Nats(nats) => &nats.name,
            SourceConfig::Kafka(kafka) => &kafka.name,
        };
        name.clone().unwrap_or_else(|| self.type_name().to_owned())
    }
}

/// A text format of records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON Lines.
    #[default]
    Jsonl,
    /// CSV with a header line.
    Csv,
}

/// One operator of the chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// The operator's id: names it in errors, state and deployments.
    pub id: String,
    /// The streams it reads (see [`Inputs`]); by default the operator
    /// before it, or every source for the first one.
    #[serde(default)]
    pub from: Option<Inputs>,
    /// An operator project folder, built to a component on demand: a Rust
    /// crate (`Cargo.toml`), a Python app (`app.py`) or a JavaScript module
    /// (`app.js` + `package.json`). `project` is another name for the key.
    #[serde(rename = "crate", alias = "project", default)]
    pub crate_path: Option<PathBuf>,
    /// A component file (`.wasm`), used as is.
    #[serde(default)]
    pub module: Option<PathBuf>,
    /// Partition records by this field: records with equal values go to the
    /// same worker, in order, and a keyed operator sees that key's state.
    #[serde(default)]
    pub key_by: Option<String>,
    /// Number of parallel workers, each with its own instance (default 1).
    #[serde(default = "one")]
    pub parallelism: usize,
    /// Passed to the operator's `init` as a JSON object.
    #[serde(default)]
    pub config: Option<toml::Table>,
    /// Limits of each instance.
    #[serde(default)]
    pub limits: Limits,
    /// What happens when the operator keeps failing.
    #[serde(default)]
    pub on_failure: FailurePolicy,
}

fn one() -> usize {
    1
}

/// Resource limits of one operator instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Linear memory an instance may grow to, in MiB (default 256).
    #[serde(default = "default_memory_mib")]
    pub memory_mib: usize,
    /// Longest a single call (one batch) may run, e.g. "2s" (default 2s).
    #[serde(default = "default_call_timeout", with = "humantime_serde_compat")]
    pub call_timeout: std::time::Duration,
    /// Most records a call may emit per input record (default 1,000): a
    /// record that makes the operator emit more is dead-lettered, and what
    /// it emitted is dropped.
    #[serde(default = "default_max_output_per_record")]
    pub max_output_per_record: usize,
    /// Most elements an instance's tables (function references) may grow
    /// to, all tables together (default 1,000,000).
    #[serde(default = "default_max_table_elements")]
    pub max_table_elements: usize,
    /// WASI capabilities granted beyond none (default none). Files,
    /// sockets and the environment are never granted.
    #[serde(default)]
    pub allow: Vec<Capability>,
}

/// A WASI capability an operator may be granted. Without it, its clocks
/// stand at 0 and its random bytes are a fixed sequence: WASI has no way to
/// refuse them, and an operator that gets neither is deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// The wall clock and the monotonic clock of the host.
    Clocks,
    /// The host's random numbers.
    Random,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mib: default_memory_mib(),
            call_timeout: default_call_timeout(),
            max_output_per_record: default_max_output_per_record(),
            max_table_elements: default_max_table_elements(),
            allow: Vec::new(),
        }
    }
}

/// How many failures an operator may have in a span of time, and what
/// happens past that: Flink's failure-rate strategy. A failure is a record
/// (or a timer) that made the guest trap, run out of time or memory, or a
/// batch the operator refused whole; records it rejects are data, not
/// failures. Each failure's record is dead-lettered whatever the policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailurePolicy {
    /// Failures allowed within `within` (default 100).
    #[serde(default = "default_max_failures")]
    pub max_failures: usize,
    /// The span failures are counted over, e.g. "1m" (default 1m).
    #[serde(default = "default_failure_span", with = "humantime_serde_compat")]
    pub within: std::time::Duration,
    /// What happens at the failure after `max_failures`.
    #[serde(default)]
    pub then: FailureAction,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        Self {
            max_failures: default_max_failures(),
            within: default_failure_span(),
            then: FailureAction::default(),
        }
    }
}

fn default_max_failures() -> usize {
    100
}

fn default_failure_span() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}

/// What an operator over its failure rate does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    /// Log a warning and go on (the default).
    #[default]
    Continue,
    /// Stop taking input until `weir resume`: the operator's input backs
    /// up, the rest of the pipeline goes on with what it has.
    Pause,
    /// Stop the pipeline with an error naming the operator.
    Stop,
}

fn default_max_output_per_record() -> usize {
    1000
}

fn default_max_table_elements() -> usize {
    1_000_000
}

fn default_memory_mib() -> usize {
    256
}

fn default_call_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(2)
}

pub(crate) mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }

    pub mod option {
        use super::*;
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<std::time::Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

/// One sink; the `type` key picks the kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    /// A JSON Lines file (created, or truncated).
    Jsonl {
        /// What the sink receives (see [`SinkConfig::from`]).
        #[serde(default)]
        from: Option<Inputs>,
        /// The file, relative to the pipeline file.
        path: PathBuf,
    },
    /// Standard output, as JSON Lines.
    Stdout {
        /// What the sink receives (see [`SinkConfig::from`]).
        #[serde(default)]
        from: Option<Inputs>,
    },
    /// Discards records (benchmarks).
    Blackhole {
        /// What the sink receives (see [`SinkConfig::from`]).
        #[serde(default)]
        from: Option<Inputs>,
    },
    /// A PostgreSQL table, upserted or appended to.
    Postgres(crate::sinks::PostgresSinkConfig),
    /// Parquet files in a folder, partitioned by a field.
    Parquet(crate::sinks::ParquetSinkConfig),
    /// A subject of a NATS JetStream stream, one JSON record per message.
    Nats(crate::sinks::nats::NatsSinkConfig),
    /// A Kafka topic (see [`crate::sinks::kafka`]).
    Kafka(crate::sinks::kafka::KafkaSinkConfig),
}

impl SinkConfig {
    /// What the sink receives (see [`Inputs`]); `None` means the main
    /// output of the last operator (or the sources when there is no
    /// operator).
    pub fn from(&self) -> Option<&Inputs> {
        match self {
            SinkConfig::Jsonl { from, .. }
            | SinkConfig::Stdout { from }
            | SinkConfig::Blackhole { from } => from.as_ref(),
            SinkConfig::Postgres(config) => config.from.as_ref(),
            SinkConfig::Parquet(config) => config.from.as_ref(),
            SinkConfig::Nats(nats) => nats.from.as_ref(),
            SinkConfig::Kafka(kafka) => kafka.from.as_ref(),
        }
    }
}

/// The `from` key of an operator or sink: one stream name or several. A
/// name is a source's `name`, an operator's `id` (its main output), or
/// `id.output` for one of its side outputs.
#[derive(Clone, PartialEq, Eq)]
pub enum Inputs {
    /// `from = "name"`.
    One(String),
    /// `from = ["a", "b"]`: the union of the streams.
    Many(Vec<String>),
}

impl Inputs {
    /// The names, in order.
    pub fn names(&self) -> &[String] {
        match self {
            Inputs::One(name) => std::slice::from_ref(name),
            Inputs::Many(names) => names,
        }
    }
}

/// As a plain string for one name: the checkpoint folder's name hashes the
/// sinks' debug form, which must not change for pipelines written before
/// graphs.
impl std::fmt::Debug for Inputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inputs::One(name) => name.fmt(f),
            Inputs::Many(names) => names.fmt(f),
        }
    }
}

/// A string or an array of strings; by hand, since a sink's table is read
/// through serde's buffered internally-tagged enum, where an untagged
/// enum's messages would be vague.
impl<'de> Deserialize<'de> for Inputs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Inputs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a stream name or an array of stream names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Inputs, E> {
                Ok(Inputs::One(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Inputs, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                if names.is_empty() {
                    return Err(serde::de::Error::custom(
                        "`from` names no stream; leave it out to read the one before",
                    ));
                }
                Ok(Inputs::Many(names))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Where bad records go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// A JSON Lines file, relative to the pipeline file; `-` is standard error.
    pub path: PathBuf,
}

/// Where the operator's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleSource {
    /// An operator project to build (its folder): Rust, Python or JavaScript.
    Crate(PathBuf),
    /// A ready component file.
    File(PathBuf),
}

impl OperatorConfig {
    /// The component source, with paths resolved against `base`.
    ///
    /// # Errors
    /// When neither or both of `crate` and `module` are given.
    pub fn module_source(&self, base: &Path) -> Result<ModuleSource> {
        match (&self.crate_path, &self.module) {
            (Some(c), None) => Ok(ModuleSource::Crate(base.join(c))),
            (None, Some(m)) => Ok(ModuleSource::File(base.join(m))),
            (None, None) => bail!(
                "operator `{}` needs `project` (or `crate`) or `module`",
                self.id
            ),
            (Some(_), Some(_)) => bail!(
                "operator `{}` has both `crate` and `module`; give one",
                self.id
            ),
        }
    }
}

/// A pipeline file, read and checked, with the folder its paths are relative to.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file it was read from.
    pub file: PathBuf,
    /// The folder relative paths are resolved against.
    pub base_dir: PathBuf,
    /// Its content.
    pub config: PipelineConfig,
    /// What each operator and sink reads, worked out from `config`.
    pub graph: crate::graph::Graph,
}

impl Pipeline {
    /// Reads and checks a pipeline file.
    ///
    /// # Errors
    /// When the file cannot be read, is not valid TOML, has unknown or missing
    /// fields, or its parts do not fit together; the message names the file,
    /// the line and the field.
    pub fn load(file: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read pipeline file `{}`", file.display()))?;
        Self::parse(&text, file)
    }

    /// Checks the text of pipeline file `file` (which is not read: it names
    /// the pipeline's folder and is named in errors).
    ///
    /// # Errors
    /// As [`Pipeline::load`], but for reading the file.
    pub fn parse(text: &str, file: &Path) -> Result<Self> {
        let config: PipelineConfig = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}: {}", file.display(), e.to_string().trim_end()))?;
        let base_dir = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base_dir = if base_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base_dir
        };
        let mut pipeline = Self {
            file: file.to_path_buf(),
            base_dir,
            config,
            graph: crate::graph::Graph::default(),
        };
        pipeline
            .check(text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        Ok(pipeline)
    }

    /// The pipeline's name.
    pub fn name(&self) -> String {
        self.config.name.clone().unwrap_or_else(|| {
            self.base_dir
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "pipeline".to_owned())
        })
    }

    /// Resolves a path from the pipeline file against its folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }

    fn check(&mut self, text: &str) -> Result<()> {
        let c = &self.config;
        let line = |needle: &str| {
            text.lines()
                .position(|l| l.contains(needle))
                .map(|i| format!("line {}: ", i + 1))
                .unwrap_or_default()
        };
        if c.sources.is_empty() {
            bail!("no `[[source]]`: a pipeline needs at least one source");
        }
        if c.sinks.is_empty() {
            bail!("no `[[sink]]`: a pipeline needs at least one sink");
        }
        if c.batch_size == Some(0) {
            bail!(
                "{}field `batch_size` must be at least 1",
                line("batch_size")
            );
        }
        if let Some(admin) = c.admin {
            check_admin_address(admin).map_err(|e| anyhow::anyhow!("{}{e}", line("admin")))?;
        }
        let mut ids = std::collections::HashSet::new();
        for op in &c.operators {
            let at = line(&format!("\"{}\"", op.id));
            if op.id.is_empty() || op.id.contains(['.', '/', ' ']) {
                bail!(
                    "{at}field `id`: operator id `{}` must be non-empty without `.`, `/` or spaces",
                    op.id
                );
            }
            if !ids.insert(op.id.as_str()) {
                bail!("{at}field `id`: operator id `{}` is used twice", op.id);
            }
            op.module_source(&self.base_dir)
                .map_err(|e| anyhow::anyhow!("{at}{e}"))?;
            if op.parallelism == 0 {
                bail!(
                    "{at}field `parallelism` of operator `{}` must be at least 1",
                    op.id
                );
            }
            if op.key_by.as_deref() == Some("") {
                bail!("{at}field `key_by` of operator `{}` is empty", op.id);
            }
        }
        for source in &c.sources {
            if source.records_per_second() == Some(0) {
                bail!(
                    "{}field `records_per_second` of source `{}` must be at least 1 \
                     (leave it out to read at full speed)",
                    line("records_per_second"),
                    source.name()
                );
            }
            if let SourceConfig::Kafka(kafka) = source {
                kafka.check()?;
            }
        }
        for sink in &c.sinks {
            if let SinkConfig::Kafka(kafka) = sink {
                kafka.check()?;
            }
        }
        self.graph = crate::graph::Graph::build(c, text)?;
        Ok(())
    }

    /// Replaces the pipeline's single source (or its single file source,
    /// when it also has generators) with a file; `-` means standard input.
    /// The format stays CSV for a CSV source and is JSON Lines otherwise, so
    /// a Nexmark pipeline runs unchanged over a JSON Lines file of events.
    ///
    /// # Errors
    /// When it is ambiguous which source to replace.
    pub fn override_input(&mut self, input: &Path) -> Result<()> {
        let sources = &mut self.config.sources;
        let index = if sources.len() == 1 {
            0
        } else {
            let files: Vec<usize> = sources
                .iter()
                .enumerate()
                .filter(|(_, s)| !matches!(s, SourceConfig::Nexmark { .. }))
                .map(|(i, _)| i)
                .collect();
            match files.as_slice() {
                [i] => *i,
                _ => bail!(
                    "--input needs a pipeline with one source, or one file or stdin source; \
                     this one has {} sources",
                    sources.len()
                ),
            }
        };
        let source = &mut sources[index];
        let event_time = source.event_time().cloned();
        let records_per_second = source.records_per_second();
        let (name, format) = match source {
            SourceConfig::Csv { name, .. } => (name.clone(), Format::Csv),
            SourceConfig::Stdin { name, format, .. } => (name.clone(), *format),
            SourceConfig::Jsonl { name, .. } | SourceConfig::Nexmark { name, .. } => {
                (name.clone(), Format::Jsonl)
            }
            SourceConfig::Nats(nats) => (nats.name.clone(), nats.format),
            SourceConfig::Kafka(kafka) => (kafka.name.clone(), kafka.format),
        };
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        *source = match (input.to_str() == Some("-"), format) {
            (true, format) => SourceConfig::Stdin {
                name,
                event_time,
                format,
            },
            (false, Format::Jsonl) => SourceConfig::Jsonl {
                name,
                event_time,
                path: cwd.join(input),
                records_per_second,
            },
            (false, Format::Csv) => SourceConfig::Csv {
                name,
                event_time,
                path: cwd.join(input),
                records_per_second,
            },
        };
        Ok(())
    }

    /// Replaces the path of the single file sink (`-` means standard output).
    ///
    /// # Errors
    /// When the pipeline has no file or stdout sink, or more than one.
    pub fn override_output(&mut self, output: &Path) -> Result<()> {
        let files: Vec<&mut SinkConfig> = self
            .config
            .sinks
            .iter_mut()
            .filter(|s| matches!(s, SinkConfig::Jsonl { .. } | SinkConfig::Stdout { .. }))
            .collect();
        let [sink] = <[&mut SinkConfig; 1]>::try_from(files).map_err(|f| {
            anyhow::anyhow!(
                "--output needs exactly one file or stdout sink, the pipeline has {}",
                f.len()
            )
        })?;
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let from = sink.from().cloned();
        *sink = if output.to_str() == Some("-") {
            SinkConfig::Stdout { from }
        } else {
            SinkConfig::Jsonl {
                from,
                path: cwd.join(output),
            }
        };
        Ok(())
    }

    /// Replaces the dead-letter path (`-` means standard error).
    pub fn override_dead_letter(&mut self, path: &Path) -> Result<()> {
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let path = if path.to_str() == Some("-") {
            path.to_path_buf()
        } else {
            cwd.join(path)
        };
        self.config.dead_letter = Some(DeadLetterConfig { path });
        Ok(())
    }

    /// The watched deploy folder, if any, resolved against the pipeline file.
    pub fn deploy_dir_path(&self) -> Option<PathBuf> {
        self.config.deploy_dir.as_deref().map(|d| self.resolve(d))
    }

    /// The checkpoint folder: configured, or one under `.weir/checkpoints`
    /// beside the pipeline file named by the file and by what the run reads
    /// and writes, so a run with `--input` or `--output` never resumes from
    /// another's checkpoints.
    pub fn checkpoint_dir_path(&self) -> PathBuf {
        if let Some(dir) = &self.config.checkpoint_dir {
            return self.resolve(dir);
        }
        use sha2::Digest;
        let ends = format!("{:?} {:?}", self.config.sources, self.config.sinks);
        let hash = hex::encode(&sha2::Sha256::digest(ends.as_bytes())[..4]);
        let stem = self
            .file
            .file_stem()
            .map_or_else(|| "pipeline".into(), |s| s.to_string_lossy());
        self.resolve(Path::new(".weir/checkpoints"))
            .join(format!("{stem}-{hash}"))
    }

    /// The folder of this run's disk state stores (`state_backend = "disk"`):
    /// `.weir/state/<process id>` beside the pipeline file. Folders of runs
    /// that are gone are deleted.
    pub fn state_dir_path(&self) -> PathBuf {
        let root = self.resolve(Path::new(".weir/state"));
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                let gone = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
                if gone {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        root.join(std::process::id().to_string())
    }

    /// Whether every source can be read again from a position: not so
    /// standard input, so a pipeline reading it takes no checkpoints.
    pub fn sources_replayable(&self) -> bool {
        !self
            .config
            .sources
            .iter()
            .any(|s| matches!(s, SourceConfig::Stdin { .. }))
    }

    /// The dead-letter file: configured, or `dead-letter.jsonl` beside the pipeline file.
    pub fn dead_letter_path(&self) -> PathBuf {
        match &self.config.dead_letter {
            Some(d) if d.path.to_str() == Some("-") => d.path.clone(),
            Some(d) => self.resolve(&d.path),
            None => self.resolve(Path::new("dead-letter.jsonl")),
        }
    }
}

/// The admin API changes what runs, so it only listens on loopback.
///
/// # Errors
/// When `address` is not a loopback address.
pub fn check_admin_address(address: std::net::SocketAddr) -> Result<()> {
    if !address.ip().is_loopback() {
        bail!(
            "field `admin`: `{address}` is not a loopback address; the admin API only listens \
             on 127.0.0.1 or ::1"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pace_of_zero_is_refused_with_its_line() {
        let text = "[[source]]\ntype = \"jsonl\"\npath = \"in.jsonl\"\n\
                    records_per_second = 0\n\n[[sink]]\ntype = \"stdout\"\n";
        let err = Pipeline::parse(text, Path::new("p.toml"))
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.contains("line 4"), "{err}");
        assert!(
            err.contains("`records_per_second` of source `jsonl`"),
            "{err}"
        );
        let paced = text.replace("= 0", "= 5");
        assert!(Pipeline::parse(&paced, Path::new("p.toml")).is_ok());
    }
}
