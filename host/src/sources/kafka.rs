//! Kafka: records of one or more topics, read with librdkafka (`rdkafka`).
//!
//! The source assigns itself every partition of its topics (as Flink's
//! Kafka source does; the consumer group is not joined), decodes each
//! record's value as one JSON Lines or CSV line into Arrow batches the way a
//! file's lines are, and with `metadata = true` adds the record's `_topic`,
//! `_key`, `_partition`, `_offset` and `_timestamp` (epoch milliseconds) as
//! fields.
//!
//! Checkpoints: every checkpoint keeps the next offset of every partition
//! ([`Position::Kafka`]); a restore assigns the partitions at those offsets,
//! so each record is read into the pipeline's state exactly once. The
//! group's committed offsets are only a report for lag tools: they are
//! committed once the checkpoint covering them is complete, and never read.
//!
//! Event time comes from a field of the value, or from the Kafka timestamp
//! with `field = "_timestamp"` (which needs `metadata = true`). Each
//! partition has its own watermark lane; the source's watermark is the
//! smallest, and a partition idle for `idle_timeout` (or read to its end)
//! stops holding it back.
//!
//! The source streams without end unless `stop_at_end = true`: then it ends
//! once every partition is read up to the end it had when the source first
//! fetched from it (the high watermark of that fetch), which makes a
//! bounded run.

use anyhow::{Context, Result, anyhow, bail};
use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::SourceContext;
use crate::checkpoint::Position;
use crate::codec::{self, BadLine};
use crate::config::{EventTimeConfig, Format};
use crate::runtime::DeadLetter;

/// `type = "kafka"`: one or more topics of a Kafka cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Name used in dead-letter entries and errors (default: `kafka`).
    #[serde(default)]
    pub name: Option<String>,
    /// The event time of its records, if the pipeline works in event time.
    #[serde(default)]
    pub event_time: Option<EventTimeConfig>,
    /// `host:port[,host:port...]` of the cluster.
    pub bootstrap_servers: String,
    /// The topics read; every partition of each.
    pub topics: Vec<String>,
    /// The consumer group its offsets are committed to (for lag tools).
    pub group_id: String,
    /// Where a run without a checkpoint starts: `"earliest"` (default),
    /// `"latest"`, or an RFC 3339 time (the first record at or after it).
    #[serde(default)]
    pub start: StartPosition,
    /// How each record's value is written: `jsonl` (default: one JSON
    /// object) or `csv` (one CSV line, with `csv_header` naming the columns).
    #[serde(default)]
    pub format: Format,
    /// The header line of CSV values, e.g. `"product,qty,price_cents"`.
    #[serde(default)]
    pub csv_header: Option<String>,
    /// Adds the fields `_topic`, `_key`, `_partition`, `_offset` and
    /// `_timestamp` to every record (default false).
    #[serde(default)]
    pub metadata: bool,
    /// Ends once every partition is read to the end it had at the start
    /// (default false: streams without end).
    #[serde(default)]
    pub stop_at_end: bool,
    /// Read at most this many records per second of wall time (default:
    /// as fast as it can).
    #[serde(default)]
    pub records_per_second: Option<u64>,
    /// How long an unreachable cluster is retried at the start before the
    /// run fails (default 30 s).
    #[serde(
        default = "default_connect_timeout",
        with = "crate::config::humantime_serde_compat"
    )]
    pub connect_timeout: Duration,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Where a source without a checkpoint starts reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest record kept.
    #[default]
    Earliest,
    /// Only records written after the start.
    Latest,
    /// The first record with a timestamp at or after this (epoch ms).
    Timestamp(i64),
}

impl<'de> Deserialize<'de> for StartPosition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "earliest" => Ok(Self::Earliest),
            "latest" => Ok(Self::Latest),
            _ => chrono::DateTime::parse_from_rfc3339(&text)
                .map(|t| Self::Timestamp(t.timestamp_millis()))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "`{text}` is not `earliest`, `latest` or an RFC 3339 time"
                    ))
                }),
        }
    }
}

/// The next offset to read of one partition, as a checkpoint keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the next record to read.
    pub next: i64,
}

/// The fields `metadata = true` adds.
const METADATA_FIELDS: [&str; 5] = ["_topic", "_key", "_partition", "_offset", "_timestamp"];

impl KafkaSourceConfig {
    /// The source's name.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| "kafka".to_owned())
    }

    /// Checks what serde cannot.
    ///
    /// # Errors
    /// When the configuration cannot work, naming the field.
    pub fn check(&self) -> Result<()> {
        let name = self.label();
        if self.topics.is_empty() || self.topics.iter().any(String::is_empty) {
            bail!("source `{name}`: field `topics` needs at least one topic name");
        }
        if self.format == Format::Csv && self.csv_header.is_none() {
            bail!(
                "source `{name}`: `format = \"csv\"` needs `csv_header`, the header line naming \
                 the columns of each value"
            );
        }
        if let Some(field) = self.event_time.as_ref().map(|e| e.field.as_str())
            && METADATA_FIELDS.contains(&field)
            && !self.metadata
        {
            bail!(
                "source `{name}`: event time field `{field}` is a record's Kafka metadata; it \
                 needs `metadata = true`"
            );
        }
        Ok(())
    }
}

/// librdkafka's own reports, quieter: a broker that is down shows as one
/// warning every few seconds, not a line per connection attempt.
pub(crate) struct QuietLogs {
    connector: String,
    last_warning: std::sync::Mutex<Option<Instant>>,
}

impl QuietLogs {
    pub(crate) fn new(connector: String) -> Self {
        Self {
            connector,
            last_warning: std::sync::Mutex::default(),
        }
    }
}

impl rdkafka::ClientContext for QuietLogs {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::debug!(
            "{}: librdkafka {level:?} {facility}: {message}",
            self.connector
        );
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::PartitionEOF(_)) {
            return; // the end of a partition, not a failure
        }
        let Ok(mut last) = self.last_warning.lock() else {
            return;
        };
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
            tracing::warn!("{}: {error}: {reason} (librdkafka retries)", self.connector);
            *last = Some(Instant::now());
        }
    }
}

impl rdkafka::consumer::ConsumerContext for QuietLogs {}

/// A source's consumer, connected, with its partitions and where each starts.
pub(crate) struct Opened {
    consumer: BaseConsumer<QuietLogs>,
    config: KafkaSourceConfig,
    header: Option<Vec<String>>,
    partitions: Vec<PartitionState>,
}

struct PartitionState {
    topic: String,
    partition: i32,
    /// The next offset to read.
    next: Option<i64>,
    /// With `stop_at_end`: the high watermark of the first fetch.
    end: Option<i64>,
    done: bool,
}

/// Connects to the cluster (retrying with backoff up to `connect_timeout`),
/// finds the partitions of every topic and assigns them at the checkpoint's
/// offsets, or at `start`.
///
/// # Errors
/// When the cluster cannot be reached, a topic does not exist, or the
/// consumer cannot be set up; the message names the source and the servers.
pub(crate) fn open(config: &KafkaSourceConfig, restore: Option<&Position>) -> Result<Opened> {
    config.check()?;
    let name = config.label();
    let servers = &config.bootstrap_servers;
    let context = || format!("source `{name}` (kafka at `{servers}`)");
    let header = match &config.csv_header {
        Some(line) => Some(
            codec::parse_csv_header(line)
                .map_err(|e| anyhow!("{}: bad `csv_header`: {e}", context()))?,
        ),
        None => None,
    };
    let consumer: BaseConsumer<QuietLogs> = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", &config.group_id)
        .set("client.id", format!("weir-{name}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set(
            "auto.offset.reset",
            if config.start == StartPosition::Latest {
                "latest"
            } else {
                "earliest"
            },
        )
        .create_with_context(QuietLogs::new(context()))
        .with_context(context)?;
    let attempt = config.connect_timeout.min(Duration::from_secs(5));
    let mut partitions = Vec::new();
    for topic in &config.topics {
        let metadata = retry(config.connect_timeout, || {
            consumer.fetch_metadata(Some(topic), attempt)
        })
        .with_context(|| format!("{}: cannot reach the cluster", context()))?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| anyhow!("{}: topic `{topic}` does not exist", context()))?;
        let mut ids: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        partitions.extend(ids.into_iter().map(|partition| PartitionState {
            topic: topic.clone(),
            partition,
            next: None,
            end: None,
            done: false,
        }));
    }
    let restored: HashMap<(&str, i32), i64> = match restore {
        Some(Position::Kafka { partitions }) => partitions
            .iter()
            .map(|p| ((p.topic.as_str(), p.partition), p.next))
            .collect(),
        _ => HashMap::new(),
    };
    // Where each partition starts: the checkpoint's offset, else `start`
    // made an offset now, so that every checkpoint holds every partition.
    let mut by_time = TopicPartitionList::new();
    if let StartPosition::Timestamp(ms) = config.start {
        for p in &partitions {
            by_time
                .add_partition_offset(&p.topic, p.partition, Offset::Offset(ms))
                .with_context(context)?;
        }
        by_time = retry(config.connect_timeout, || {
            consumer.offsets_for_times(by_time.clone(), attempt)
        })
        .with_context(|| format!("{}: cannot look up the start time's offsets", context()))?;
    }
    let mut assignment = TopicPartitionList::new();
    for p in &mut partitions {
        let (low, high) = retry(config.connect_timeout, || {
            consumer.fetch_watermarks(&p.topic, p.partition, attempt)
        })
        .with_context(|| {
            format!(
                "{}: cannot read the offsets of `{}` partition {}",
                context(),
                p.topic,
                p.partition
            )
        })?;
        let next = match restored.get(&(p.topic.as_str(), p.partition)) {
            Some(&next) => next,
            None => match config.start {
                StartPosition::Earliest => low,
                StartPosition::Latest => high,
                // No record at or after the time: the end.
                StartPosition::Timestamp(_) => match by_time
                    .find_partition(&p.topic, p.partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(o)) => o,
                    _ => high,
                },
            },
        };
        p.next = Some(next);
        assignment
            .add_partition_offset(&p.topic, p.partition, Offset::Offset(next))
            .with_context(context)?;
    }
    consumer.assign(&assignment).with_context(context)?;
    Ok(Opened {
        consumer,
        config: config.clone(),
        header,
        partitions,
    })
}

/// Calls `attempt` until it succeeds, waiting 0.2 s, then twice as long
/// each time (up to 5 s), for up to `timeout` in all.
fn retry<T>(timeout: Duration, mut attempt: impl FnMut() -> Result<T, KafkaError>) -> Result<T> {
    let started = Instant::now();
    let mut wait = Duration::from_millis(200);
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(e) if started.elapsed() + wait > timeout => {
                return Err(anyhow!(
                    "{e} (retried for {:.0?})",
                    started.elapsed().max(Duration::from_millis(1))
                ));
            }
            Err(e) => {
                tracing::debug!("kafka: {e}; retrying in {wait:?}");
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One record read, waiting for its batch.
struct Pending {
    lane: u32,
    offset: i64,
    key: Option<String>,
    timestamp: Option<i64>,
    value: Option<Result<String, String>>,
}

/// Reads until the source ends (`stop_at_end`) or the pipeline stops.
pub(crate) fn read(opened: Opened, context: &SourceContext) -> Result<Position> {
    let Opened {
        consumer,
        config,
        header,
        mut partitions,
    } = opened;
    let name = config.label();
    let servers = config.bootstrap_servers.clone();
    let lane_of: HashMap<(String, i32), u32> = partitions
        .iter()
        .enumerate()
        .map(|(i, p)| ((p.topic.clone(), p.partition), i as u32))
        .collect();
    if let Some(clock) = context.clock.borrow_mut().as_mut() {
        clock.set_lanes(partitions.len());
        for (lane, p) in partitions.iter().enumerate() {
            if p.done {
                clock.end_lane(lane);
            }
        }
    }
    // Offsets to commit to the group once their checkpoint completes.
    let mut to_commit: VecDeque<(u64, Vec<PartitionOffset>)> = VecDeque::new();
    let mut committed: Vec<PartitionOffset> = Vec::new();
    let mut pending: Vec<Pending> = Vec::with_capacity(context.batch_size);
    let mut last_error: Option<Instant> = None;
    loop {
        if config.stop_at_end && partitions.iter().all(|p| p.done) {
            break;
        }
        let timeout = if pending.is_empty() {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        };
        match consumer.poll(timeout) {
            Some(Ok(message)) => {
                let Some(&lane) = lane_of.get(&(message.topic().to_owned(), message.partition()))
                else {
                    continue;
                };
                let p = &mut partitions[lane as usize];
                p.next = Some(message.offset() + 1);
                context.metrics.records_in.fetch_add(1, Ordering::Relaxed);
                pending.push(Pending {
                    lane,
                    offset: message.offset(),
                    key: message
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                    timestamp: message.timestamp().to_millis(),
                    value: message.payload().map(|v| {
                        std::str::from_utf8(v)
                            .map(|t| t.trim_end_matches(['\n', '\r']).to_owned())
                            .map_err(|_| String::from_utf8_lossy(v).into_owned())
                    }),
                });
                if config.stop_at_end {
                    if p.end.is_none() {
                        p.end = fetched_end(&consumer, p);
                    }
                    if p.end.is_some_and(|end| message.offset() + 1 >= end) {
                        end_partition(p, lane as usize, context);
                    }
                }
                if pending.len() >= context.batch_size {
                    flush(
                        &mut pending,
                        &partitions,
                        &config,
                        header.as_deref(),
                        context,
                    )?;
                    checkpoint(context, &partitions, &mut to_commit)?;
                }
                continue;
            }
            Some(Err(KafkaError::PartitionEOF(id))) if config.stop_at_end => {
                // A partition `id` (of some topic) has nothing more now:
                // those read up to their end are done, with an empty one.
                let positions = consumer.position().ok();
                for (lane, p) in partitions.iter_mut().enumerate() {
                    if p.done || p.partition != id {
                        continue;
                    }
                    if p.end.is_none() {
                        p.end = fetched_end(&consumer, p);
                    }
                    // The position skips transaction markers an offset would not.
                    let at = positions
                        .as_ref()
                        .and_then(|l| l.find_partition(&p.topic, p.partition))
                        .and_then(|e| e.offset().to_raw())
                        .max(p.next);
                    if at.zip(p.end).is_some_and(|(at, end)| at >= end) {
                        end_partition(p, lane, context);
                    }
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => {
                // librdkafka reconnects by itself; say so now and then.
                if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                    tracing::warn!(
                        "source `{name}` (kafka at `{servers}`): {e}; reconnecting and reading on"
                    );
                    last_error = Some(Instant::now());
                }
                if is_fatal(&e) {
                    bail!("source `{name}` (kafka at `{servers}`): {e}");
                }
            }
            None => {}
        }
        // Nothing more waiting: send what was read, move the watermark of
        // idle partitions, take part in a checkpoint asked for.
        if !pending.is_empty() {
            flush(
                &mut pending,
                &partitions,
                &config,
                header.as_deref(),
                context,
            )?;
        }
        context.tick()?;
        checkpoint(context, &partitions, &mut to_commit)?;
        commit_completed(
            &consumer,
            context,
            &mut to_commit,
            &partitions,
            &mut committed,
        );
    }
    if !pending.is_empty() {
        flush(
            &mut pending,
            &partitions,
            &config,
            header.as_deref(),
            context,
        )?;
    }
    // Read to the end: report the ends to the group.
    commit(
        &consumer,
        &context.name,
        &offsets(&partitions),
        CommitMode::Sync,
    );
    Ok(position(&partitions))
}

/// The end of a partition as the broker's first fetch response gave it
/// (its high watermark then), if one came. The
/// fetch's high watermark is used rather than a ListOffsets request, which
/// tansu 0.6 answers wrongly for batches of several records.
fn fetched_end(consumer: &BaseConsumer<QuietLogs>, p: &PartitionState) -> Option<i64> {
    use rdkafka::bindings::{rd_kafka_get_watermark_offsets, rd_kafka_resp_err_t};
    let topic = std::ffi::CString::new(p.topic.as_str()).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // The rdkafka crate does not wrap this cached (no request) lookup.
    // SAFETY: the client handle lives as long as `consumer`, `topic` is a
    // NUL-terminated string, and the outputs are local integers.
    let error = unsafe {
        rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            p.partition,
            &mut low,
            &mut high,
        )
    };
    (error == rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

fn end_partition(p: &mut PartitionState, lane: usize, context: &SourceContext) {
    p.done = true;
    if let Some(clock) = context.clock.borrow_mut().as_mut() {
        clock.end_lane(lane);
    }
}

/// Errors librdkafka does not recover from.
fn is_fatal(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        e.rdkafka_error_code(),
        Some(Code::Fatal | Code::UnknownTopicOrPartition | Code::TopicAuthorizationFailed)
    )
}

/// Where every partition is: for a checkpoint, or the end.
fn position(partitions: &[PartitionState]) -> Position {
    Position::Kafka {
        partitions: offsets(partitions),
    }
}

fn offsets(partitions: &[PartitionState]) -> Vec<PartitionOffset> {
    partitions
        .iter()
        .filter_map(|p| {
            p.next.map(|next| PartitionOffset {
                topic: p.topic.clone(),
                partition: p.partition,
                next,
            })
        })
        .collect()
}

/// Sends the barrier of a checkpoint asked for, and keeps its offsets to
/// commit to the group once it completes.
fn checkpoint(
    context: &SourceContext,
    partitions: &[PartitionState],
    to_commit: &mut VecDeque<(u64, Vec<PartitionOffset>)>,
) -> Result<()> {
    let before = context.barrier_sent.get();
    context.barrier_point(|| position(partitions))?;
    let sent = context.barrier_sent.get();
    if sent > before {
        to_commit.push_back((sent, offsets(partitions)));
    }
    Ok(())
}

/// Commits to the group the offsets of the newest completed checkpoint
/// (without checkpoints: of what was read), so lag tools see progress. A
/// failed commit only delays that report.
fn commit_completed(
    consumer: &BaseConsumer<QuietLogs>,
    context: &SourceContext,
    to_commit: &mut VecDeque<(u64, Vec<PartitionOffset>)>,
    partitions: &[PartitionState],
    committed: &mut Vec<PartitionOffset>,
) {
    let newest = match &context.checkpoints {
        Some(checkpoints) => {
            let completed = checkpoints.completed();
            let mut newest = None;
            while to_commit.front().is_some_and(|(id, _)| *id <= completed) {
                newest = to_commit.pop_front().map(|(_, offsets)| offsets);
            }
            newest
        }
        None => Some(offsets(partitions)),
    };
    if let Some(newest) = newest.filter(|n| n != committed) {
        commit(consumer, &context.name, &newest, CommitMode::Async);
        *committed = newest;
    }
}

fn commit(
    consumer: &BaseConsumer<QuietLogs>,
    source: &str,
    offsets: &[PartitionOffset],
    mode: CommitMode,
) {
    let mut list = TopicPartitionList::new();
    for o in offsets {
        if list
            .add_partition_offset(&o.topic, o.partition, Offset::Offset(o.next))
            .is_err()
        {
            return;
        }
    }
    if let Err(e) = consumer.commit(&list, mode) {
        tracing::warn!("source `{source}`: offsets not committed to the group: {e}");
    }
}

/// Decodes the records read into one batch and sends it: bad values go to
/// the dead letters, naming topic, partition and offset.
fn flush(
    pending: &mut Vec<Pending>,
    partitions: &[PartitionState],
    config: &KafkaSourceConfig,
    header: Option<&[String]>,
    context: &SourceContext,
) -> Result<()> {
    let records = std::mem::take(pending);
    let at = |r: &Pending| {
        let p = &partitions[r.lane as usize];
        format!(
            "topic `{}` partition {} offset {}",
            p.topic, p.partition, r.offset
        )
    };
    let mut texts: Vec<(u64, &str)> = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        match &record.value {
            Some(Ok(text)) => texts.push((index as u64, text)),
            Some(Err(lossy)) => dead_letter(
                context,
                record,
                lossy,
                &format!("{}: the value is not valid UTF-8", at(record)),
            )?,
            None => dead_letter(
                context,
                record,
                "",
                &format!("{}: the record has no value", at(record)),
            )?,
        }
    }
    let (batch, rows, bad) = match header {
        Some(header) => codec::decode_csv_lines(header, texts),
        None => codec::decode_json_lines(texts),
    };
    for BadLine { line, raw, reason } in &bad {
        if let Some(record) = records.get(*line as usize) {
            dead_letter(context, record, raw, &format!("{}: {reason}", at(record)))?;
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    let kept: Vec<&Pending> = rows
        .iter()
        .filter_map(|&i| records.get(i as usize))
        .collect();
    let batch = if config.metadata {
        with_metadata(batch, &kept, partitions)?
    } else {
        batch
    };
    let lines: Arc<[u64]> = kept.iter().map(|r| r.offset.max(0) as u64).collect();
    let lanes: Vec<u32> = kept.iter().map(|r| r.lane).collect();
    context.send_from_lanes(batch, lines, Some(&lanes))
}

/// Adds the metadata fields (replacing fields of the value with their names).
fn with_metadata(
    batch: RecordBatch,
    records: &[&Pending],
    partitions: &[PartitionState],
) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if !METADATA_FIELDS.contains(&field.name().as_str()) {
            fields.push(field.as_ref().clone());
            columns.push(Arc::clone(column));
        }
    }
    let topic = |r: &&Pending| Some(partitions[r.lane as usize].topic.as_str());
    let added: [(&str, DataType, ArrayRef); 5] = [
        (
            "_topic",
            DataType::Utf8,
            Arc::new(records.iter().map(topic).collect::<StringArray>()),
        ),
        (
            "_key",
            DataType::Utf8,
            Arc::new(
                records
                    .iter()
                    .map(|r| r.key.as_deref())
                    .collect::<StringArray>(),
            ),
        ),
        (
            "_partition",
            DataType::Int64,
            Arc::new(
                records
                    .iter()
                    .map(|r| Some(i64::from(partitions[r.lane as usize].partition)))
                    .collect::<Int64Array>(),
            ),
        ),
        (
            "_offset",
            DataType::Int64,
            Arc::new(
                records
                    .iter()
                    .map(|r| Some(r.offset))
                    .collect::<Int64Array>(),
            ),
        ),
        (
            "_timestamp",
            DataType::Int64,
            Arc::new(records.iter().map(|r| r.timestamp).collect::<Int64Array>()),
        ),
    ];
    for (name, data_type, column) in added {
        fields.push(Field::new(name, data_type, true));
        columns.push(column);
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        columns,
    )?)
}

fn dead_letter(context: &SourceContext, record: &Pending, raw: &str, reason: &str) -> Result<()> {
    context.dead_letters.send(&DeadLetter {
        source: &context.name,
        line: record.offset.max(0) as u64,
        raw,
        reason,
        operator: None,
        version: None,
    })
}
