//! A subject of a NATS JetStream stream: one JSON record per message.
//!
//! # Checkpoints
//!
//! Every message carries a message id (`Nats-Msg-Id`) made of the sink's
//! producer id and the record's place in the sink's output since the start
//! of the pipeline (`<producer>-<n>`), and JetStream drops a message whose id
//! it has seen within the stream's duplicate window. At a checkpoint's
//! barrier the sink waits for the server to ack every message published
//! since the last one (phase one), republishing under the same id what was
//! not acked (a lost connection), and keeps its record count in the
//! checkpoint. A restart from checkpoint k counts on from k's count: the
//! pipeline replays the records after k in the same order, so they get the
//! same ids, and those the first run had published are dropped. Messages
//! are visible at once; phase two has nothing to do.
//!
//! The producer id is made at a fresh start and kept beside the
//! checkpoints, so a fresh run of the same pipeline is not taken for a
//! replay. Exactly-once holds while a replay comes within the stream's
//! duplicate window of the first publish (2 minutes unless the stream sets
//! `duplicate_window`); the sink warns at the start when the window is
//! shorter than two checkpoint intervals. It also needs the records to reach
//! the sink in a repeatable order: one source, or operators feeding it from
//! one worker each.

use anyhow::{Context as _, Result, anyhow, bail};
use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use bytes::Bytes;
use serde::Deserialize;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Sink, SinkSetup};
use crate::codec::encode_json_lines;
use crate::runtime::{DeadLetter, DeadLetters, Message};
use crate::sources::nats::{NatsServer, connect, runtime};

/// A `type = "nats"` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// What the sink receives (see [`crate::config::SinkConfig::from`]).
    #[serde(default)]
    pub from: Option<crate::config::Inputs>,
    /// The server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// The JetStream stream the subject belongs to (checked at the start).
    pub stream: String,
    /// The subject to publish to.
    pub subject: String,
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

/// Most messages awaiting their ack before the sink waits for the oldest
/// (under the client's limit of 5,000).
const MAX_IN_FLIGHT: usize = 4096;

/// How long a message whose publish failed is republished before the run
/// stops.
const REPUBLISH_FOR: Duration = Duration::from_secs(60);

/// The file beside the checkpoints holding the producer id.
const PRODUCER_FILE: &str = "nats-producer-id";

/// An open NATS sink.
pub(super) struct NatsSink {
    runtime: tokio::runtime::Runtime,
    context: jetstream::Context,
    label: String,
    subject: String,
    producer: String,
    /// Records received since the start of the pipeline.
    count: u64,
    /// Published, not yet acked: (message id, payload, its ack; none
    /// when it could not be sent).
    in_flight: VecDeque<(String, Bytes, Option<PublishAckFuture>)>,
    /// The largest payload the server takes.
    max_payload: usize,
    dead_letters: Arc<DeadLetters>,
    buffer: Vec<u8>,
}

impl NatsSink {
    /// Connects, checks the stream, and counts on from the checkpoint
    /// restored.
    ///
    /// # Errors
    /// When the server cannot be reached or the stream does not exist; the
    /// message names server and sink.
    pub(super) fn open(config: &NatsSinkConfig, setup: &SinkSetup) -> Result<Self> {
        let interval = setup.checkpoints.as_ref().map(|c| c.interval());
        let label = format!("sink {} (nats `{}`)", setup.index, config.url);
        let producer = producer_id(&label, setup)?;
        let runtime = runtime(&label)?;
        let server = NatsServer {
            url: &config.url,
            token_env: config.token_env.as_deref(),
            user_env: config.user_env.as_deref(),
            password_env: config.password_env.as_deref(),
            connect_timeout: config.connect_timeout,
        };
        let (context, window, max_payload) = runtime.block_on(async {
            let client = connect(&label, &server).await?;
            let max_payload = client.server_info().max_payload;
            let context = jetstream::new(client);
            let mut stream = context
                .get_stream(&config.stream)
                .await
                .map_err(|e| anyhow!("{label}: cannot open stream `{}`: {e}", config.stream))?;
            let window = stream
                .info()
                .await
                .map_err(|e| anyhow!("{label}: cannot read stream `{}`: {e}", config.stream))?
                .config
                .duplicate_window;
            anyhow::Ok((context, window, max_payload))
        })?;
        if let Some(interval) = interval
            && window < interval * 2
        {
            tracing::warn!(
                "{label}: stream `{}` drops duplicates within {window:?}, under two checkpoint \
                 intervals ({interval:?} each): a replay after a crash may publish records \
                 again; raise its `duplicate_window`",
                config.stream
            );
        }
        Ok(Self {
            runtime,
            context,
            label,
            subject: config.subject.clone(),
            producer,
            count: setup.restore.map_or(0, |(_, count)| count),
            in_flight: VecDeque::new(),
            max_payload,
            dead_letters: Arc::clone(&setup.dead_letters),
            buffer: Vec::with_capacity(1 << 16),
        })
    }

    /// Publishes one message; its ack is awaited by [`Self::wait_for_acks`].
    fn publish(&mut self, id: String, payload: Bytes) -> Result<()> {
        let sent = self.runtime.block_on(
            self.context.send_publish(
                self.subject.clone(),
                PublishMessage::build()
                    .message_id(&id)
                    .payload(payload.clone()),
            ),
        );
        let ack = match sent {
            Ok(ack) => Some(ack),
            Err(e) => {
                tracing::warn!("{}: publish of `{id}` failed ({e}); will retry", self.label);
                None
            }
        };
        self.in_flight.push_back((id, payload, ack));
        if self.in_flight.len() > MAX_IN_FLIGHT {
            self.wait_for_acks(MAX_IN_FLIGHT / 2)?;
        }
        Ok(())
    }

    /// Waits until at most `left` messages await their ack. Messages not
    /// acked (a lost connection) are published again under the same ids,
    /// all at once, with backoff, for up to [`REPUBLISH_FOR`]: a copy the
    /// server already has is dropped as a duplicate.
    fn wait_for_acks(&mut self, left: usize) -> Result<()> {
        if self.in_flight.len() <= left {
            return Ok(());
        }
        let oldest: Vec<_> = self
            .in_flight
            .drain(..self.in_flight.len() - left)
            .collect();
        let mut failed = self.runtime.block_on(acked(oldest));
        let deadline = Instant::now() + REPUBLISH_FOR;
        let mut wait = Duration::from_millis(100);
        while let Some((id, _, error)) = failed.first() {
            if Instant::now() > deadline {
                bail!(
                    "{}: {} messages to `{}` not acked for {REPUBLISH_FOR:?} (`{id}`: {error})",
                    self.label,
                    failed.len(),
                    self.subject
                );
            }
            tracing::warn!(
                "{}: {} messages not acked (`{id}`: {error}); publishing them again",
                self.label,
                failed.len()
            );
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(2));
            let again = std::mem::take(&mut failed);
            failed = self.runtime.block_on(async {
                let mut sent = Vec::with_capacity(again.len());
                for (id, payload, _) in again {
                    let ack = self
                        .context
                        .send_publish(
                            self.subject.clone(),
                            PublishMessage::build()
                                .message_id(&id)
                                .payload(payload.clone()),
                        )
                        .await
                        .ok();
                    sent.push((id, payload, ack));
                }
                acked(sent).await
            });
        }
        Ok(())
    }
}

/// Awaits the acks of `sent` together; returns the messages not acked.
async fn acked(
    sent: Vec<(String, Bytes, Option<PublishAckFuture>)>,
) -> Vec<(String, Bytes, String)> {
    let results =
        futures_util::future::join_all(sent.into_iter().map(|(id, payload, ack)| async move {
            let result = match ack {
                Some(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                None => Err("not sent".to_owned()),
            };
            (id, payload, result)
        }))
        .await;
    results
        .into_iter()
        .filter_map(|(id, payload, result)| result.err().map(|e| (id, payload, e)))
        .collect()
}

/// This sink's producer id: made at a fresh start and kept in the
/// checkpoint folder, read back on a restore.
fn producer_id(label: &str, setup: &SinkSetup) -> Result<String> {
    let file: Option<PathBuf> = setup
        .checkpoints
        .as_ref()
        .map(|c| c.sink_parts(setup.index).join(PRODUCER_FILE));
    if let (Some(file), Some(_)) = (&file, setup.restore)
        && let Ok(id) = std::fs::read_to_string(file)
    {
        return Ok(id.trim().to_owned());
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = format!("weir-{:x}-{nanos:x}-{}", std::process::id(), setup.index);
    if let Some(file) = file {
        if setup.restore.is_some() {
            tracing::warn!(
                "{label}: no producer id beside the checkpoint (`{}`): records replayed now \
                 are not recognised as duplicates",
                file.display()
            );
        }
        if let Some(folder) = file.parent() {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("{label}: cannot create `{}`", folder.display()))?;
        }
        std::fs::write(&file, &id)
            .and_then(|()| std::fs::File::open(&file)?.sync_all())
            .with_context(|| format!("{label}: cannot write `{}`", file.display()))?;
    }
    Ok(id)
}

impl Sink for NatsSink {
    fn write(&mut self, message: &Message) -> Result<()> {
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        encode_json_lines(&message.batch, &mut buffer);
        for (row, line) in buffer
            .split(|&b| b == b'\n')
            .take(message.batch.num_rows())
            .enumerate()
        {
            self.count += 1;
            let id = format!("{}-{}", self.producer, self.count);
            // The id header and its framing take some room too.
            if line.len() + id.len() + 64 > self.max_payload {
                let raw = String::from_utf8_lossy(&line[..line.len().min(1024)]).into_owned();
                self.dead_letters.send(&DeadLetter {
                    source: &message.source,
                    line: message.lines.get(row).copied().unwrap_or(0),
                    raw: &raw,
                    reason: &format!(
                        "{}: the record is {} bytes, over the server's max_payload of {} \
                         (its first 1024 bytes are kept here)",
                        self.label,
                        line.len(),
                        self.max_payload
                    ),
                    operator: None,
                    version: None,
                })?;
                continue;
            }
            self.publish(id, Bytes::copy_from_slice(line))?;
        }
        self.buffer = buffer;
        Ok(())
    }

    fn barrier(&mut self, _id: u64) -> Result<u64> {
        self.wait_for_acks(0)?;
        Ok(self.count)
    }

    fn finish(mut self: Box<Self>, _all: bool) -> Result<()> {
        self.wait_for_acks(0)?;
        let flushed = self.runtime.block_on(self.context.client().flush());
        flushed.map_err(|e| anyhow!("{}: flush failed: {e}", self.label))
    }
}
