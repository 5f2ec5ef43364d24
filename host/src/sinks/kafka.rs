//! Kafka: each record as a JSON value of a topic, keyed by one of its
//! fields, written with librdkafka's idempotent producer.
//!
//! Checkpoints (`delivery = "at-least-once"`, the default): at each
//! checkpoint's barrier the sink waits until the broker acknowledged every
//! record sent before it, so a complete checkpoint never covers a record
//! the topic may lack. After a crash the records sent since the last
//! complete checkpoint are sent again: the topic holds every record of an
//! uninterrupted run, and may hold those of the interrupted epochs twice.
//! The idempotent producer keeps librdkafka's own retries (a lost
//! connection) from adding duplicates or reordering a partition.
//!
//! `delivery = "exactly-once"` would need transactions that commit with
//! the checkpoint (Flink's two-phase KafkaSink). The only broker the tests
//! can run here (tansu 0.6) does not commit transactions (it lacks
//! EndTxn), so Weir refuses that setting rather than promise what it cannot
//! test.

use anyhow::{Context, Result, anyhow, bail};
use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use serde::Deserialize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Sink;
use crate::codec::{encode_json_lines, is_json_field};
use crate::runtime::Message;
use crate::sources::kafka::QuietLogs;

/// `type = "kafka"`: records as JSON values of a topic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// What the sink receives (see [`crate::config::SinkConfig::from`]).
    #[serde(default)]
    pub from: Option<crate::config::Inputs>,
    /// `host:port[,host:port...]` of the cluster.
    pub bootstrap_servers: String,
    /// The topic written; it must exist.
    pub topic: String,
    /// The field whose value is each record's key (its text); records
    /// without it, or every record when unset, have no key.
    #[serde(default)]
    pub key: Option<String>,
    /// `at-least-once` (default) or `exactly-once` (refused: see the module).
    #[serde(default)]
    pub delivery: Delivery,
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

/// What the sink promises across a crash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Every record, some of the interrupted epochs twice.
    #[default]
    AtLeastOnce,
    /// Every record once (needs a broker that commits transactions).
    ExactlyOnce,
}

impl KafkaSinkConfig {
    fn label(&self) -> String {
        format!(
            "sink `kafka` (topic `{}` at `{}`)",
            self.topic, self.bootstrap_servers
        )
    }

    /// Checks what serde cannot.
    ///
    /// # Errors
    /// When the configuration cannot work, naming the field.
    pub fn check(&self) -> Result<()> {
        if self.topic.is_empty() {
            bail!("sink `kafka`: field `topic` is empty");
        }
        if self.delivery == Delivery::ExactlyOnce {
            bail!(
                "{}: `delivery = \"exactly-once\"` is not offered: it needs Kafka transactions \
                 committed with each checkpoint, and the broker Weir is tested against (tansu \
                 0.6) cannot commit a transaction (no EndTxn), so that promise is untested. Use \
                 `delivery = \"at-least-once\"`: every record arrives, those sent after the last \
                 checkpoint before a crash possibly twice",
                self.label()
            );
        }
        Ok(())
    }
}

/// Keeps the first delivery failure librdkafka reports.
struct Deliveries {
    failed: Mutex<Option<String>>,
    logs: QuietLogs,
}

impl ClientContext for Deliveries {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        self.logs.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.logs.error(error, reason);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((e, _)) = result
            && let Ok(mut failed) = self.failed.lock()
        {
            failed.get_or_insert_with(|| e.to_string());
        }
    }
}

/// A topic written through the idempotent producer.
pub(super) struct KafkaSink {
    producer: BaseProducer<Deliveries>,
    config: KafkaSinkConfig,
    label: String,
    /// The encoded lines of one message, reused.
    buffer: Vec<u8>,
}

impl KafkaSink {
    /// Connects (retrying with backoff up to `connect_timeout`) and checks
    /// that the topic exists.
    ///
    /// # Errors
    /// When the cluster cannot be reached or the topic does not exist.
    pub(super) fn open(config: &KafkaSinkConfig) -> Result<Self> {
        config.check()?;
        let label = config.label();
        let producer: BaseProducer<Deliveries> = ClientConfig::new()
            .set("bootstrap.servers", &config.bootstrap_servers)
            // Names the sink and its topic in the broker's logs.
            .set("client.id", format!("weir-sink-{}", config.topic))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create_with_context(Deliveries {
                failed: Mutex::default(),
                logs: QuietLogs::new(label.clone()),
            })
            .with_context(|| label.clone())?;
        let started = Instant::now();
        let mut wait = Duration::from_millis(200);
        let metadata = loop {
            match producer.client().fetch_metadata(
                Some(&config.topic),
                config.connect_timeout.min(Duration::from_secs(5)),
            ) {
                Ok(metadata) => break metadata,
                Err(e) if started.elapsed() + wait > config.connect_timeout => {
                    bail!(
                        "{label}: cannot reach the cluster: {e} (retried for {:.0?})",
                        started.elapsed()
                    )
                }
                Err(e) => {
                    tracing::debug!("{label}: {e}; retrying in {wait:?}");
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        };
        if !metadata
            .topics()
            .iter()
            .any(|t| t.name() == config.topic && t.error().is_none() && !t.partitions().is_empty())
        {
            bail!("{label}: topic `{}` does not exist", config.topic);
        }
        Ok(Self {
            producer,
            config: config.clone(),
            label,
            buffer: Vec::with_capacity(1 << 20),
        })
    }

    /// The first delivery failure, as an error.
    fn check_deliveries(&self) -> Result<()> {
        let failed = self
            .producer
            .context()
            .failed
            .lock()
            .map_err(|_| anyhow!("{}: delivery report poisoned", self.label))?
            .clone();
        match failed {
            Some(e) => bail!("{}: a record was not delivered: {e}", self.label),
            None => Ok(()),
        }
    }

    /// Waits until the broker acknowledged every record sent.
    fn wait_for_acks(&mut self) -> Result<()> {
        self.producer
            .flush(Timeout::Never)
            .with_context(|| format!("{}: flush failed", self.label))?;
        self.check_deliveries()
    }
}

/// Each row's key: the text of field `field` (a string as is, other values
/// as JSON), `None` where it is null or the batch lacks the field.
fn keys(batch: &arrow::array::RecordBatch, field: Option<&str>) -> Result<Vec<Option<String>>> {
    let rows = batch.num_rows();
    let Some((index, field)) = field.and_then(|f| batch.schema_ref().column_with_name(f)) else {
        return Ok(vec![None; rows]);
    };
    let json = is_json_field(field);
    let text = arrow::compute::cast(batch.column(index), &DataType::Utf8)?;
    let text = text.as_string::<i32>();
    Ok((0..rows)
        .map(|row| {
            text.is_valid(row).then(|| {
                let value = text.value(row);
                match serde_json::from_str::<serde_json::Value>(value) {
                    Ok(serde_json::Value::String(s)) if json => s,
                    _ => value.to_owned(),
                }
            })
        })
        .collect())
}

impl Sink for KafkaSink {
    fn write(&mut self, message: &Message) -> Result<()> {
        self.buffer.clear();
        encode_json_lines(&message.batch, &mut self.buffer);
        let keys = keys(&message.batch, self.config.key.as_deref())
            .with_context(|| format!("{}: cannot read the key field", self.label))?;
        let lines = self
            .buffer
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty());
        for (line, key) in lines.zip(&keys) {
            let mut record = BaseRecord::<str, [u8]>::to(&self.config.topic).payload(line);
            if let Some(key) = key {
                record = record.key(key.as_str());
            }
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // Full of records in flight: serve acknowledgements.
                        record = back;
                        self.producer.poll(Duration::from_millis(100));
                    }
                    Err((e, _)) => bail!("{}: cannot send a record: {e}", self.label),
                }
            }
        }
        self.producer.poll(Duration::ZERO);
        self.check_deliveries()
    }

    fn barrier(&mut self, _id: u64) -> Result<u64> {
        self.wait_for_acks()?;
        Ok(0)
    }

    fn flush(&mut self) -> Result<()> {
        self.producer.poll(Duration::ZERO);
        self.check_deliveries()
    }

    fn finish(mut self: Box<Self>, _all: bool) -> Result<()> {
        self.wait_for_acks()
    }
}
