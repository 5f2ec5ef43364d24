//! Taps: copies of the live records on an edge, or of one key's records at
//! every operator, for `weir tap` (see [`crate::control::admin`]).
//!
//! A tap only reads: it copies rows out of a batch after the operator made
//! it, and never changes what flows on. With no tap attached, a worker pays
//! one atomic load per batch ([`Taps::is_active`]); the copies, the key
//! matching and the rate limiting happen only while one is.

use arrow::array::RecordBatch;
use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::mpsc::error::TrySendError;

use crate::codec::row_to_json;

/// Events a tap buffers for a slow reader before it drops (and counts) more.
pub const TAP_BUFFER: usize = 4096;

/// What a tap copies.
#[derive(Debug, Clone)]
pub enum TapFilter {
    /// A sample of the records operator `operator` emits on `output`.
    Edge {
        /// The operator id.
        operator: String,
        /// The output (`out` is the main one).
        output: String,
        /// Records per second at most, over all its workers.
        rate: f64,
    },
    /// Every record whose field holds `key`, going in and out of every
    /// operator, with the key's state before and after.
    Key {
        /// The key, as `key_by` prints it (an integer key as its digits).
        key: String,
        /// The field holding it; `None`: each operator's `key_by`, else
        /// `default_field`.
        field: Option<String>,
        /// The field of operators without `key_by`.
        default_field: String,
    },
}

impl TapFilter {
    /// The field holding the key at an operator whose `key_by` is `key_by`.
    fn key_field<'a>(&'a self, key_by: Option<&'a str>) -> Option<&'a str> {
        match self {
            TapFilter::Edge { .. } => None,
            TapFilter::Key {
                field,
                default_field,
                ..
            } => Some(
                field
                    .as_deref()
                    .or(key_by)
                    .unwrap_or(default_field.as_str()),
            ),
        }
    }
}

/// One record (or state) a tap saw.
#[derive(Debug, Serialize)]
pub struct TapEvent {
    /// The operator.
    pub operator: String,
    /// Its version that processed the record.
    pub version: u32,
    /// The worker.
    pub worker: usize,
    /// `in` (a record given to the operator), `out` (one it emitted) or
    /// `state` (the key's state after the batch).
    pub stage: &'static str,
    /// The output of an `out` record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The record (`in`, `out`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<Box<RawValue>>,
    /// The key's state before the record's batch (`in`) or after it
    /// (`state`), when the operator keeps state by this key; `null` when
    /// it has none yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<serde_json::Value>,
    /// Events dropped before this one because the reader was slow.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

struct Subscriber {
    id: u64,
    filter: TapFilter,
    sender: tokio::sync::mpsc::Sender<TapEvent>,
    /// Edge taps: records it may still take now (a token bucket).
    tokens: f64,
    refilled: Instant,
    dropped: u64,
}

impl Subscriber {
    fn send(&mut self, mut event: TapEvent) -> bool {
        event.dropped = self.dropped;
        match self.sender.try_send(event) {
            Ok(()) => {
                self.dropped = 0;
                true
            }
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

/// The taps attached to a run, shared by its workers and its admin API.
#[derive(Default)]
pub struct Taps {
    active: AtomicBool,
    next: AtomicU64,
    subscribers: Mutex<Vec<Subscriber>>,
}

/// An attached tap; dropping it detaches it.
pub struct Tap {
    taps: std::sync::Arc<Taps>,
    id: u64,
    /// What the workers saw.
    pub events: tokio::sync::mpsc::Receiver<TapEvent>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.taps.detach(self.id);
    }
}

/// Where a worker's batch is, for the events it makes.
pub struct TapSite<'a> {
    /// The operator id.
    pub operator: &'a str,
    /// Its version.
    pub version: u32,
    /// The worker's index.
    pub worker: usize,
    /// The operator's `key_by`.
    pub key_by: Option<&'a str>,
}

impl TapSite<'_> {
    fn event(&self, stage: &'static str) -> TapEvent {
        TapEvent {
            operator: self.operator.to_owned(),
            version: self.version,
            worker: self.worker,
            stage,
            output: None,
            record: None,
            state: None,
            dropped: 0,
        }
    }
}

/// A keyed state as people read it: its JSON, or its size when it is not JSON.
pub fn state_json(state: Option<&[u8]>) -> serde_json::Value {
    match state {
        None => serde_json::Value::Null,
        Some(bytes) => serde_json::from_slice(bytes).unwrap_or_else(|_| {
            serde_json::Value::String(format!("({} bytes, not JSON)", bytes.len()))
        }),
    }
}

fn record(batch: &RecordBatch, row: usize) -> Option<Box<RawValue>> {
    RawValue::from_string(row_to_json(batch, row)).ok()
}

/// The rows of `batch` whose `field` is `key`.
fn rows_of_key(batch: &RecordBatch, field: &str, key: &str) -> Vec<bool> {
    super::keys::row_keys(batch, field)
        .iter()
        .map(|k| k.as_deref() == Some(key))
        .collect()
}

impl Taps {
    /// Whether any tap is attached: the one check a worker makes per batch.
    #[inline]
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    fn subscribers(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Attaches a tap.
    pub fn attach(self: &std::sync::Arc<Self>, filter: TapFilter) -> Tap {
        let (sender, events) = tokio::sync::mpsc::channel(TAP_BUFFER);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut subscribers = self.subscribers();
        subscribers.push(Subscriber {
            id,
            // An edge tap may show one record at once (none at rate 0).
            tokens: match &filter {
                TapFilter::Edge { rate, .. } => rate.min(1.0),
                TapFilter::Key { .. } => 0.0,
            },
            filter,
            sender,
            refilled: Instant::now(),
            dropped: 0,
        });
        self.active.store(true, Ordering::Relaxed);
        Tap {
            taps: std::sync::Arc::clone(self),
            id,
            events,
        }
    }

    fn detach(&self, id: u64) {
        let mut subscribers = self.subscribers();
        subscribers.retain(|s| s.id != id);
        self.active
            .store(!subscribers.is_empty(), Ordering::Relaxed);
    }

    /// The keys that key taps follow at this site, with their field.
    pub fn keys_followed(&self, site: &TapSite<'_>) -> Vec<(String, String)> {
        self.subscribers()
            .iter()
            .filter_map(|s| match &s.filter {
                TapFilter::Key { key, .. } => s
                    .filter
                    .key_field(site.key_by)
                    .map(|f| (key.clone(), f.to_owned())),
                TapFilter::Edge { .. } => None,
            })
            .collect()
    }

    /// A batch given to the operator: key taps see their key's records,
    /// with its state before (`state_of(key, field)`, when the operator
    /// keeps state by that field).
    pub fn input(
        &self,
        site: &TapSite<'_>,
        batch: &RecordBatch,
        mut state_of: impl FnMut(&str, &str) -> Option<serde_json::Value>,
    ) {
        let mut subscribers = self.subscribers();
        for subscriber in subscribers.iter_mut() {
            let (TapFilter::Key { key, .. }, Some(field)) =
                (&subscriber.filter, subscriber.filter.key_field(site.key_by))
            else {
                continue;
            };
            let (key, field) = (key.clone(), field.to_owned());
            let rows = rows_of_key(batch, &field, &key);
            if !rows.contains(&true) {
                continue;
            }
            let state = state_of(&key, &field);
            for (row, _) in rows.iter().enumerate().filter(|(_, m)| **m) {
                let mut event = site.event("in");
                event.record = record(batch, row);
                event.state = state.clone();
                subscriber.send(event);
            }
        }
    }

    /// The key's state after a batch that held it.
    pub fn state_after(&self, site: &TapSite<'_>, key: &str, state: serde_json::Value) {
        let mut subscribers = self.subscribers();
        for subscriber in subscribers.iter_mut() {
            if matches!(&subscriber.filter, TapFilter::Key { key: k, .. } if k == key) {
                let mut event = site.event("state");
                event.state = Some(state.clone());
                subscriber.send(event);
            }
        }
    }

    /// Records the operator emitted on `output` (`origins[i]` is the row of
    /// `input` that output row `i` came from): edge taps on it take a
    /// sample; key taps, the rows that came from their key's records or
    /// hold the key themselves.
    pub fn output(
        &self,
        site: &TapSite<'_>,
        output: &str,
        input: &RecordBatch,
        emitted: &RecordBatch,
        origins: &[u32],
    ) {
        let mut subscribers = self.subscribers();
        for subscriber in subscribers.iter_mut() {
            let rows: Vec<usize> = match &subscriber.filter {
                TapFilter::Edge {
                    operator,
                    output: tapped,
                    rate,
                } => {
                    if operator != site.operator || tapped != output {
                        continue;
                    }
                    let now = Instant::now();
                    let elapsed = now.duration_since(subscriber.refilled).as_secs_f64();
                    subscriber.refilled = now;
                    subscriber.tokens = (subscriber.tokens + elapsed * rate).min(rate.max(1.0));
                    let take = (subscriber.tokens.floor() as usize).min(emitted.num_rows());
                    subscriber.tokens -= take as f64;
                    // Spread over the batch rather than its first rows.
                    (0..take)
                        .map(|i| i * emitted.num_rows() / take.max(1))
                        .collect()
                }
                TapFilter::Key { key, .. } => {
                    let Some(field) = subscriber.filter.key_field(site.key_by) else {
                        continue;
                    };
                    let from_key = rows_of_key(input, field, key);
                    let holds_key = rows_of_key(emitted, field, key);
                    (0..emitted.num_rows())
                        .filter(|&row| {
                            holds_key[row]
                                || origins
                                    .get(row)
                                    .and_then(|&o| from_key.get(o as usize))
                                    .copied()
                                    .unwrap_or(false)
                        })
                        .collect()
                }
            };
            for row in rows {
                let mut event = site.event("out");
                event.output = Some(output.to_owned());
                event.record = record(emitted, row);
                if !subscriber.send(event) {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{TapFilter, TapSite, Taps};
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;

    fn batch(keys: &[&str]) -> RecordBatch {
        let n: Vec<i64> = (0..keys.len() as i64).collect();
        RecordBatch::try_from_iter([
            ("key", Arc::new(StringArray::from(keys.to_vec())) as _),
            ("n", Arc::new(Int64Array::from(n)) as _),
        ])
        .unwrap()
    }

    fn site() -> TapSite<'static> {
        TapSite {
            operator: "count",
            version: 3,
            worker: 1,
            key_by: Some("key"),
        }
    }

    #[test]
    fn a_key_tap_sees_the_keys_records_in_and_out_with_its_state() {
        let taps = Arc::new(Taps::default());
        assert!(!taps.is_active());
        let mut tap = taps.attach(TapFilter::Key {
            key: "a".to_owned(),
            field: None,
            default_field: "key".to_owned(),
        });
        assert!(taps.is_active());
        let input = batch(&["a", "b", "a"]);
        taps.input(&site(), &input, |key, field| {
            assert_eq!((key, field), ("a", "key"));
            Some(serde_json::json!(7))
        });
        // Output rows without the key field: matched by the row they came from.
        let emitted = RecordBatch::try_from_iter([(
            "total",
            Arc::new(Int64Array::from(vec![10, 20, 30])) as _,
        )])
        .unwrap();
        taps.output(&site(), "out", &input, &emitted, &[2, 1, 0]);
        taps.state_after(&site(), "a", serde_json::json!(9));
        let mut seen = Vec::new();
        while let Ok(event) = tap.events.try_recv() {
            seen.push(serde_json::to_value(&event).unwrap());
        }
        let expected = serde_json::json!([
            {"operator": "count", "version": 3, "worker": 1, "stage": "in",
             "record": {"key": "a", "n": 0}, "state": 7},
            {"operator": "count", "version": 3, "worker": 1, "stage": "in",
             "record": {"key": "a", "n": 2}, "state": 7},
            {"operator": "count", "version": 3, "worker": 1, "stage": "out", "output": "out",
             "record": {"total": 10}},
            {"operator": "count", "version": 3, "worker": 1, "stage": "out", "output": "out",
             "record": {"total": 30}},
            {"operator": "count", "version": 3, "worker": 1, "stage": "state", "state": 9},
        ]);
        assert_eq!(serde_json::Value::Array(seen), expected);
        drop(tap);
        assert!(!taps.is_active());
    }

    #[test]
    fn an_edge_tap_takes_only_its_edge_and_at_most_its_rate() {
        let taps = Arc::new(Taps::default());
        let edge = |rate| TapFilter::Edge {
            operator: "count".to_owned(),
            output: "late".to_owned(),
            rate,
        };
        let (mut one, mut none) = (taps.attach(edge(1.0)), taps.attach(edge(0.0)));
        let rows = batch(&["a", "b", "c", "d"]);
        let origins = [0, 1, 2, 3];
        taps.output(&site(), "out", &rows, &rows, &origins);
        assert!(one.events.try_recv().is_err(), "another output");
        // A burst of one record at most at 1 record/s, none at 0.
        taps.output(&site(), "late", &rows, &rows, &origins);
        let event = one.events.try_recv().unwrap();
        assert_eq!(event.stage, "out");
        assert_eq!(event.output.as_deref(), Some("late"));
        assert!(one.events.try_recv().is_err());
        assert!(none.events.try_recv().is_err());
    }
}
