//! A NATS JetStream stream, read through a durable pull consumer.
//!
//! Message payloads are JSON Lines (or CSV lines under a configured header),
//! decoded into batches as file lines are; a record's "line" in dead letters
//! is its message's stream sequence.
//!
//! # Checkpoints
//!
//! The checkpoint keeps the stream sequence of the last message sent on
//! ([`Position::Nats`]). Every start deletes and recreates the durable
//! consumer at the sequence to read next, because JetStream cannot move an
//! existing consumer: after a restore from a checkpoint that is the one
//! after its sequence (`DeliverPolicy::ByStartSequence`), whatever the
//! consumer had acked; without one it is the one after the consumer's ack
//! floor, or the stream's start for a new consumer. The checkpoint, not the
//! acks, is what a restore trusts: exactly-once follows from it. Messages
//! lost on the way (a cut connection: a jump in the delivery sequence, or
//! messages the server delivered that never came) make the source recreate
//! the consumer after the last message it took.
//!
//! Messages are acked only once the checkpoint covering them is complete:
//! the consumer acks cumulatively (`AckPolicy::All`), so one ack of the last
//! message before that checkpoint's barrier acks them all. Lag tools see the
//! consumer's progress, and a stream with work-queue or interest retention
//! drops messages only when Weir has them safely checkpointed. A message the
//! server redelivers (its ack wait passed before its checkpoint completed)
//! is recognised by its sequence and skipped. A bounded run
//! (`stop_at_end = true`) acks what it read when it ends.

use anyhow::{Context, Result, anyhow, bail};
use async_nats::jetstream::{self, consumer::AckPolicy, consumer::DeliverPolicy, consumer::pull};
use futures_util::StreamExt;
use serde::Deserialize;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::SourceContext;
use crate::checkpoint::Position;
use crate::codec::{self, BadLine};
use crate::config::{EventTimeConfig, Format};
use crate::runtime::DeadLetter;

/// A `type = "nats"` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSourceConfig {
    /// Name used in dead-letter entries (default: the type).
    #[serde(default)]
    pub name: Option<String>,
    /// The event time of its records, if the pipeline works in event time.
    #[serde(default)]
    pub event_time: Option<EventTimeConfig>,
    /// The server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// The JetStream stream to read.
    pub stream: String,
    /// Only messages on these subjects (wildcards allowed); default: all of
    /// the stream's. Several need NATS server 2.10 or later.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// The durable consumer's name; it is recreated at every start.
    pub consumer: String,
    /// `jsonl` (default): each payload holds one or more JSON lines; `csv`:
    /// CSV lines under `header`.
    #[serde(default)]
    pub format: Format,
    /// The CSV header (`"product,qty"`), as messages carry none.
    #[serde(default)]
    pub header: Option<String>,
    /// Stop once every message in the stream at the start has been read
    /// (default: read on, waiting for new messages).
    #[serde(default)]
    pub stop_at_end: bool,
    /// Read at most this many records per second of wall time (default:
    /// as fast as it can).
    #[serde(default)]
    pub records_per_second: Option<u64>,
    /// The environment variable holding a token to log in with.
    #[serde(default)]
    pub token_env: Option<String>,
    /// The environment variable holding the user name to log in with.
    #[serde(default)]
    pub user_env: Option<String>,
    /// The environment variable holding the password of `user_env`.
    #[serde(default)]
    pub password_env: Option<String>,
    /// How long to keep retrying a server that is down at the start before
    /// giving up (default 10s).
    #[serde(default, with = "crate::config::humantime_serde_compat::option")]
    pub connect_timeout: Option<Duration>,
}

impl NatsSourceConfig {
    fn server(&self) -> NatsServer<'_> {
        NatsServer {
            url: &self.url,
            token_env: self.token_env.as_deref(),
            user_env: self.user_env.as_deref(),
            password_env: self.password_env.as_deref(),
            connect_timeout: self.connect_timeout,
        }
    }
}

/// Where a NATS server is and how to log in: what source and sink share.
pub(crate) struct NatsServer<'a> {
    pub(crate) url: &'a str,
    pub(crate) token_env: Option<&'a str>,
    pub(crate) user_env: Option<&'a str>,
    pub(crate) password_env: Option<&'a str>,
    /// How long a server down at the start is retried (default 10 s).
    pub(crate) connect_timeout: Option<Duration>,
}

/// A tokio runtime for a connector's thread: one worker, so the client's
/// connection is served (pings, reconnects) while the thread blocks on the
/// pipeline.
pub(crate) fn runtime(connector: &str) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(format!("nats-{connector}"))
        .enable_all()
        .build()
        .with_context(|| format!("{connector}: cannot start its NATS client runtime"))
}

fn env_secret(connector: &str, var: &str) -> Result<String> {
    std::env::var(var).map_err(|_| {
        anyhow!("{connector}: environment variable `{var}` (named in the config) is not set")
    })
}

/// Connects to the server, retrying with backoff for its
/// `connect_timeout`; the error names the server and `connector`. Once
/// connected, the client reconnects by itself whenever the connection is
/// lost.
pub(crate) async fn connect(
    connector: &str,
    server: &NatsServer<'_>,
) -> Result<async_nats::Client> {
    let url = server.url;
    let connect_timeout = server.connect_timeout.unwrap_or(Duration::from_secs(10));
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("weir {connector}"))
        .connection_timeout(Duration::from_secs(2))
        .max_reconnects(None);
    if let Some(var) = server.token_env {
        options = options.token(env_secret(connector, var)?);
    }
    match (server.user_env, server.password_env) {
        (Some(user), Some(password)) => {
            options = options.user_and_password(
                env_secret(connector, user)?,
                env_secret(connector, password)?,
            );
        }
        (None, None) => {}
        _ => bail!("{connector}: `user_env` and `password_env` go together"),
    }
    let deadline = Instant::now() + connect_timeout;
    let mut wait = Duration::from_millis(100);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match options.clone().connect(url).await {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() + wait < deadline => {
                tracing::warn!("{connector}: NATS server `{url}` not reached ({e}); retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => bail!(
                "{connector}: cannot connect to NATS server `{url}` ({attempts} attempts in \
                 {:?}): {e}",
                connect_timeout
            ),
        }
    }
}

/// How long the server waits for an ack before it sends a message again: a
/// message is acked when its checkpoint completes, and one sent again is
/// skipped anyway.
const ACK_WAIT: Duration = Duration::from_secs(300);

/// How long a partial batch waits for more messages, and an idle source
/// between checks for a due checkpoint barrier.
const LINGER: Duration = Duration::from_millis(50);

/// Deletes consumer `name` of `stream` and creates it anew to deliver the
/// messages after stream sequence `after` (JetStream cannot move a
/// consumer); returns its messages and how many it has to deliver.
async fn start_consumer(
    label: &str,
    stream: &jetstream::stream::Stream,
    name: &str,
    subjects: &[String],
    after: u64,
) -> Result<(pull::Stream, u64)> {
    let _ = stream.delete_consumer(name).await;
    let mut config = pull::Config {
        durable_name: Some(name.to_owned()),
        deliver_policy: if after == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            }
        },
        ack_policy: AckPolicy::All,
        ack_wait: ACK_WAIT,
        max_ack_pending: -1,
        ..Default::default()
    };
    match subjects {
        [] => {}
        [one] => config.filter_subject = one.clone(),
        many => config.filter_subjects = many.to_vec(),
    }
    let stream_name = &stream.cached_info().config.name;
    let mut consumer = stream.create_consumer(config).await.map_err(|e| {
        anyhow!("{label}: cannot create consumer `{name}` on stream `{stream_name}`: {e}")
    })?;
    let info = consumer
        .info()
        .await
        .map_err(|e| anyhow!("{label}: cannot read consumer `{name}`: {e}"))?;
    if subjects.len() > 1 && info.config.filter_subjects.is_empty() {
        bail!("{label}: several `subjects` need NATS server 2.10 or later; this one ignored them");
    }
    let pending = info.num_pending;
    let messages = consumer
        .stream()
        .max_messages_per_batch(1024)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| anyhow!("{label}: cannot read consumer `{name}`: {e}"))?;
    Ok((messages, pending))
}

/// How long without messages before the source asks the server whether it
/// delivered messages that never came.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// An open source: connected, its consumer recreated at the place to start.
pub(crate) struct NatsSource {
    runtime: tokio::runtime::Runtime,
    client: async_nats::Client,
    label: String,
    stream: jetstream::stream::Stream,
    consumer: String,
    subjects: Vec<String>,
    /// The consumer (delivery) sequence of the last message delivered: a
    /// jump shows messages lost on the way (a cut connection).
    last_delivery: u64,
    /// Since when no message came.
    idle_since: Option<Instant>,
    format: Format,
    header: Option<Vec<String>>,
    messages: pull::Stream,
    /// The stream sequence of the last message sent on.
    sequence: u64,
    /// With `stop_at_end`: the stream's last sequence at the start.
    end: Option<u64>,
    /// Nothing to read at all (with `stop_at_end`).
    empty: bool,
}

impl NatsSource {
    /// Connects and recreates the consumer where `restore` (or the
    /// consumer's acks) left off.
    ///
    /// # Errors
    /// When the server cannot be reached, the stream does not exist or the
    /// consumer cannot be created; the message names server and source.
    pub(crate) fn open(
        config: &NatsSourceConfig,
        name: &str,
        restore: Option<&Position>,
    ) -> Result<Self> {
        let label = format!("source `{name}` (nats `{}`)", config.url);
        let header = match (config.format, &config.header) {
            (Format::Csv, Some(h)) => Some(
                codec::parse_csv_header(h)
                    .map_err(|e| anyhow!("{label}: bad CSV `header`: {e}"))?,
            ),
            (Format::Csv, None) => bail!("{label}: `format = \"csv\"` needs a `header`"),
            (Format::Jsonl, Some(_)) => bail!("{label}: `header` is for `format = \"csv\"`"),
            (Format::Jsonl, None) => None,
        };
        let restored = match restore {
            Some(Position::Nats { stream, sequence }) => {
                if *stream != config.stream {
                    bail!(
                        "{label}: the checkpoint read stream `{stream}`, the pipeline names \
                         `{}`; start with `--fresh` to read it from the start",
                        config.stream
                    );
                }
                Some(*sequence)
            }
            Some(other) => bail!(
                "{label}: the checkpoint holds a position of another kind of source ({other:?})"
            ),
            None => None,
        };
        let runtime = runtime(&label)?;
        let opened = runtime.block_on(async {
            let client = connect(&label, &config.server()).await?;
            let context = jetstream::new(client.clone());
            let mut stream = context
                .get_stream(&config.stream)
                .await
                .map_err(|e| anyhow!("{label}: cannot open stream `{}`: {e}", config.stream))?;
            let last = stream
                .info()
                .await
                .map_err(|e| anyhow!("{label}: cannot read stream `{}`: {e}", config.stream))?
                .state
                .last_sequence;
            // Where to start: after the checkpoint, else after the acks.
            let after = match restored {
                Some(sequence) => sequence,
                None => match stream.consumer_info(&config.consumer).await {
                    Ok(info) => info.ack_floor.stream_sequence,
                    Err(_) => 0,
                },
            };
            let (messages, pending) =
                start_consumer(&label, &stream, &config.consumer, &config.subjects, after).await?;
            anyhow::Ok((client, stream, messages, last, after, pending))
        })?;
        let (client, stream, messages, last, after, pending) = opened;
        tracing::info!(
            "{label}: reading stream `{}` from sequence {}",
            config.stream,
            after + 1
        );
        Ok(Self {
            runtime,
            client,
            label,
            stream,
            consumer: config.consumer.clone(),
            subjects: config.subjects.clone(),
            last_delivery: 0,
            idle_since: None,
            format: config.format,
            header,
            messages,
            sequence: after,
            end: config.stop_at_end.then_some(last),
            empty: config.stop_at_end && (pending == 0 || after >= last),
        })
    }

    fn position(&self) -> Position {
        Position::Nats {
            stream: self.stream.cached_info().config.name.clone(),
            sequence: self.sequence,
        }
    }

    /// Reads to the end (with `stop_at_end`) or until the pipeline stops,
    /// sending a batch whenever `batch_size` messages have come or none came
    /// for [`LINGER`], with a checkpoint barrier after it when one is due.
    pub(crate) fn read(mut self, context: &SourceContext) -> Result<Position> {
        // (checkpoint, the last message before its barrier): acked once complete.
        let mut unacked: VecDeque<(u64, jetstream::Message)> = VecDeque::new();
        let mut last_read: Option<jetstream::Message> = None;
        let mut batch: Vec<jetstream::Message> = Vec::with_capacity(context.batch_size);
        let mut done = self.empty;
        while !done {
            let (taken, ended) = self.next_batch(&mut batch, context.batch_size)?;
            done = ended;
            if taken > 0 {
                self.send(&batch, context)?;
                last_read = batch.pop();
                batch.clear();
            }
            let before = context.barrier_sent.get();
            context.barrier_point(|| self.position())?;
            let sent = context.barrier_sent.get();
            if sent > before
                && let Some(message) = last_read.take()
            {
                unacked.push_back((sent, message));
            }
            if let Some(checkpoints) = &context.checkpoints {
                let completed = checkpoints.completed();
                let mut newest = None;
                while unacked.front().is_some_and(|(id, _)| *id <= completed) {
                    newest = unacked.pop_front().map(|(_, m)| m);
                }
                if let Some(message) = newest {
                    self.ack(&message);
                }
            }
        }
        // The end of a bounded read: ack all of it (a restore still goes by
        // the checkpoint).
        if let Some(message) = last_read.or_else(|| unacked.pop_back().map(|(_, m)| m)) {
            // Confirmed by the server, as the run is about to end.
            if let Err(e) = self.runtime.block_on(message.double_ack()) {
                tracing::warn!("{}: ack failed: {e}", self.label);
            }
        }
        if let Err(e) = self.runtime.block_on(self.client.flush()) {
            tracing::warn!("{}: flush failed: {e}", self.label);
        }
        Ok(self.position())
    }

    fn ack(&self, message: &jetstream::Message) {
        if let Err(e) = self.runtime.block_on(message.ack()) {
            // The next ack covers this one's messages too.
            tracing::warn!("{}: ack failed: {e}", self.label);
        }
    }

    /// Takes up to `max` new messages into `batch`; returns how many, and
    /// whether the stream's end (with `stop_at_end`) was reached. Messages
    /// lost on the way (a jump in the delivery sequence, or messages the
    /// server says it delivered that never came) restart the consumer after
    /// the last message taken: acking a later one would ack them too.
    fn next_batch(
        &mut self,
        batch: &mut Vec<jetstream::Message>,
        max: usize,
    ) -> Result<(usize, bool)> {
        let runtime = self.runtime.handle().clone();
        let (ended, lost) = runtime.block_on(async {
            while batch.len() < max {
                let next = match tokio::time::timeout(LINGER, self.messages.next()).await {
                    Err(_) if batch.is_empty() => {
                        let idle = *self.idle_since.get_or_insert_with(Instant::now);
                        if idle.elapsed() >= IDLE_CHECK {
                            self.idle_since = Some(Instant::now());
                            return Ok((false, self.delivered_elsewhere().await));
                        }
                        break;
                    }
                    Err(_) => break,
                    Ok(None) => bail!("{}: the consumer's message stream ended", self.label),
                    Ok(Some(next)) => next,
                };
                let message = match next {
                    Ok(message) => message,
                    Err(e)
                        if matches!(
                            e.kind(),
                            pull::MessagesErrorKind::ConsumerDeleted
                                | pull::MessagesErrorKind::PushBasedConsumer
                                | pull::MessagesErrorKind::RequestLimitExceeded
                        ) =>
                    {
                        bail!("{}: cannot read on: {e}", self.label)
                    }
                    Err(e) => {
                        // A lost connection, a missed heartbeat: the client
                        // reconnects and pulls again.
                        tracing::warn!("{}: {e}; reading on", self.label);
                        continue;
                    }
                };
                self.idle_since = None;
                let info = message.info().map_err(|e| {
                    anyhow!("{}: a message without JetStream metadata: {e}", self.label)
                })?;
                let (stream_sequence, delivery, pending) =
                    (info.stream_sequence, info.consumer_sequence, info.pending);
                if delivery > self.last_delivery + 1 && stream_sequence > self.sequence {
                    tracing::warn!(
                        "{}: messages were lost on the way (delivery {delivery} after {}); \
                         reading again from stream sequence {}",
                        self.label,
                        self.last_delivery,
                        self.sequence + 1
                    );
                    return Ok((false, true));
                }
                self.last_delivery = self.last_delivery.max(delivery);
                // Sent again after its ack wait: already read.
                if stream_sequence <= self.sequence {
                    continue;
                }
                self.sequence = stream_sequence;
                batch.push(message);
                if self
                    .end
                    .is_some_and(|end| stream_sequence >= end || pending == 0)
                {
                    return Ok((true, false));
                }
            }
            anyhow::Ok((false, false))
        })?;
        if lost {
            self.restart()?;
        }
        Ok((batch.len(), ended))
    }

    /// Whether the server delivered messages past the last one taken that
    /// never came.
    async fn delivered_elsewhere(&self) -> bool {
        match self.stream.consumer_info(&self.consumer).await {
            Ok(info) => info.delivered.stream_sequence > self.sequence,
            Err(e) => {
                tracing::warn!(
                    "{}: cannot read consumer `{}`: {e}",
                    self.label,
                    self.consumer
                );
                false
            }
        }
    }

    /// Recreates the consumer after the last message taken.
    fn restart(&mut self) -> Result<()> {
        let (messages, _) = self.runtime.block_on(start_consumer(
            &self.label,
            &self.stream,
            &self.consumer,
            &self.subjects,
            self.sequence,
        ))?;
        self.messages = messages;
        self.last_delivery = 0;
        Ok(())
    }

    /// Decodes the payloads of `batch` and sends the records on; bad ones go
    /// to the dead letters.
    fn send(&self, batch: &[jetstream::Message], context: &SourceContext) -> Result<()> {
        let mut text = String::new();
        let mut lines: Vec<(u64, Range<usize>)> = Vec::with_capacity(batch.len());
        for message in batch {
            let sequence = message.info().map_or(0, |i| i.stream_sequence);
            let Ok(payload) = std::str::from_utf8(&message.payload) else {
                context.metrics.records_in.fetch_add(1, Ordering::Relaxed);
                dead_letter(
                    context,
                    &BadLine {
                        line: sequence,
                        raw: String::from_utf8_lossy(&message.payload).into_owned(),
                        reason: format!(
                            "message {sequence} of stream `{}` (subject `{}`) is not valid UTF-8",
                            self.stream.cached_info().config.name,
                            message.subject
                        ),
                    },
                )?;
                continue;
            };
            for line in payload.lines() {
                if line.trim().is_empty() {
                    continue;
                }
                context.metrics.records_in.fetch_add(1, Ordering::Relaxed);
                let start = text.len();
                text.push_str(line);
                lines.push((sequence, start..text.len()));
            }
        }
        let items = lines.iter().map(|(n, r)| (*n, &text[r.clone()]));
        let (records, line_numbers, bad) = match (self.format, &self.header) {
            (Format::Csv, Some(header)) => codec::decode_csv_lines(header, items),
            _ => codec::decode_json_lines(items),
        };
        for bad_line in &bad {
            dead_letter(context, bad_line)?;
        }
        if records.num_rows() == 0 {
            return Ok(());
        }
        let line_numbers: Arc<[u64]> = line_numbers.into();
        context.send(records, line_numbers)
    }
}

fn dead_letter(context: &SourceContext, bad: &BadLine) -> Result<()> {
    context.dead_letters.send(&DeadLetter {
        source: &context.name,
        line: bad.line,
        raw: &bad.raw,
        reason: &bad.reason,
        operator: None,
        version: None,
    })
}
