//! Run an operator natively on records, the way the host runs it in Wasm.
//!
//! ```
//! use weir_guest::testing::Harness;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Deserialize)] struct In { x: i64 }
//! # #[derive(Serialize)] struct Out { y: i64 }
//! #[weir_guest::map]
//! fn double(r: In) -> Out { Out { y: r.x * 2 } }
//!
//! let out = Harness::new(weir_operator()).run(&[serde_json::json!({"x": 21})]);
//! assert_eq!(out.records("out"), vec![serde_json::json!({"y": 42})]);
//! ```

use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::abi::types::{
    Batch, Column, FiredTimer, KeyGroup, Output, TextValues, TimeDomain, Values,
};
use crate::batch::{is_valid, text};
use crate::operators::Operator;
use crate::ser::BatchBuilder;

/// Builds a batch from serializable records (structs, maps, JSON objects).
///
/// # Panics
/// When a record is not a struct or map: this is a test helper.
pub fn batch_of<T: Serialize>(records: &[T]) -> Batch {
    let mut builder = BatchBuilder::default();
    for record in records {
        builder
            .append(record)
            .expect("test records must be structs or maps");
    }
    builder.finish()
}

/// The rows of a batch as JSON objects; nulls are left out.
pub fn rows_of(batch: &Batch) -> Vec<Value> {
    (0..batch.rows as usize)
        .map(|row| {
            let mut object = Map::new();
            for column in &batch.columns {
                if !is_valid(column, row) {
                    continue;
                }
                object.insert(column.name.clone(), cell(&column.values, row));
            }
            Value::Object(object)
        })
        .collect()
}

fn cell(values: &Values, row: usize) -> Value {
    match values {
        Values::Int64(v) => v.get(row).map_or(Value::Null, |&x| x.into()),
        Values::Float64(v) => v.get(row).map_or(Value::Null, |&x| x.into()),
        Values::Boolean(v) => v.get(row).map_or(Value::Null, |&x| x.into()),
        Values::Utf8(t) => text(t, row).map_or(Value::Null, |s| s.into()),
        Values::Json(t) => text(t, row)
            .ok()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null),
    }
}

/// What one [`Harness::run`] produced.
#[derive(Debug, Default)]
pub struct TestOutput {
    /// Emitted records per output name, in emission order.
    pub outputs: BTreeMap<String, Vec<Value>>,
    /// Rejected input rows (index into the records given) with the reason.
    pub rejected: Vec<(usize, String)>,
}

impl TestOutput {
    /// The records emitted to `output` (`"out"` is the main output).
    pub fn records(&self, output: &str) -> Vec<Value> {
        self.outputs.get(output).cloned().unwrap_or_default()
    }
}

/// Drives an operator natively, keeping keyed state between runs as the host does.
pub struct Harness {
    operator: Box<dyn Operator>,
    key_field: Option<String>,
    states: HashMap<String, Vec<u8>>,
    clock: Option<Clock>,
}

/// Event time as a source with `event_time = { field, watermark_delay }`
/// keeps it, and the event-time timers the host would keep.
struct Clock {
    field: String,
    delay_ms: i64,
    max_seen: Option<i64>,
    timers: BTreeSet<(i64, String)>,
}

impl Harness {
    /// A harness for a stateless operator.
    ///
    /// # Panics
    /// When the operator's `open` fails.
    pub fn new(mut operator: Box<dyn Operator>) -> Self {
        if let Err(e) = operator.open() {
            panic!("the operator failed to open: {e}");
        }
        Self {
            operator,
            key_field: None,
            states: HashMap::new(),
            clock: None,
        }
    }

    /// Gives records an event time, read from their integer field `field`
    /// (epoch ms), with a watermark trailing the largest seen by `delay_ms`;
    /// event-time timers then fire after each run as the watermark passes
    /// them, and [`Harness::finish`] fires the rest.
    pub fn event_time(mut self, field: &str, delay_ms: i64) -> Self {
        self.clock = Some(Clock {
            field: field.to_owned(),
            delay_ms,
            max_seen: None,
            timers: BTreeSet::new(),
        });
        self
    }

    /// Ends the input: the watermark moves to the end of time and every
    /// event-time timer fires.
    pub fn finish(&mut self) -> TestOutput {
        let mut result = TestOutput::default();
        self.fire_timers(i64::MAX, &mut result);
        result
    }

    /// A harness for a keyed operator, keyed by the record field `key_field`.
    ///
    /// # Panics
    /// When the operator's `open` fails.
    pub fn keyed(operator: Box<dyn Operator>, key_field: &str) -> Self {
        Self {
            key_field: Some(key_field.to_owned()),
            ..Self::new(operator)
        }
    }

    /// Hands this harness's keyed state to `next`, as a hot swap does: when
    /// the state versions differ, `next` migrates every key's state first.
    ///
    /// # Errors
    /// The migration error, naming the key; the harness is unchanged then.
    pub fn swap_to(&mut self, mut next: Box<dyn Operator>) -> Result<(), String> {
        next.open()?;
        let from = self.operator.info().state_version;
        if next.info().state_version != from {
            let (keys, old): (Vec<String>, Vec<Vec<u8>>) = self.states.clone().into_iter().unzip();
            let new = next.migrate(from, old).map_err(|e| {
                let key = keys.get(e.index as usize).map_or("?", String::as_str);
                format!("key `{key}`: {}", e.reason)
            })?;
            self.states = keys.into_iter().zip(new).collect();
        }
        self.operator = next;
        Ok(())
    }

    /// The value state of `key` as JSON, if any.
    pub fn state(&self, key: &str) -> Option<Value> {
        self.states
            .get(key)
            .and_then(|b| serde_json::from_slice(b).ok())
    }

    /// Runs the records as one batch.
    ///
    /// # Panics
    /// When the operator fails the whole batch: this is a test helper.
    pub fn run<T: Serialize>(&mut self, records: &[T]) -> TestOutput {
        let batch = batch_of(records);
        let groups = match &self.key_field {
            None => Vec::new(),
            Some(field) => self.groups(&batch, field),
        };
        let times = self.stamp(&batch);
        crate::host::NATIVE.with_borrow_mut(|h| h.event_times = times);
        let output = self
            .operator
            .process(&batch, groups.clone())
            .expect("the operator failed the batch");
        let keys: Vec<String> = groups.iter().map(|g| g.key.clone()).collect();
        let mut result = TestOutput::default();
        self.apply(&keys, &output, Some(&batch), &mut result);
        result.rejected = output
            .rejected
            .iter()
            .map(|r| (r.row as usize, r.reason.clone()))
            .collect();
        if let Some(watermark) = self
            .clock
            .as_ref()
            .and_then(|c| c.max_seen.map(|m| m.saturating_sub(c.delay_ms)))
        {
            self.fire_timers(watermark, &mut result);
        }
        result
    }

    /// Each row's event time and the watermark it arrives under.
    fn stamp(&mut self, batch: &Batch) -> (Vec<i64>, Vec<i64>) {
        let Some(clock) = self.clock.as_mut() else {
            return (Vec::new(), Vec::new());
        };
        let mut times = (Vec::new(), Vec::new());
        for record in rows_of(batch) {
            let time = record
                .get(&clock.field)
                .and_then(Value::as_i64)
                .expect("test records carry their event time as epoch ms");
            let watermark = clock
                .max_seen
                .map_or(i64::MIN, |m| m.saturating_sub(clock.delay_ms));
            clock.max_seen = Some(clock.max_seen.map_or(time, |m| m.max(time)));
            times.0.push(time);
            times.1.push(watermark);
        }
        times
    }

    /// Applies a call's state updates and timers, and collects its records.
    fn apply(
        &mut self,
        keys: &[String],
        output: &Output,
        input: Option<&Batch>,
        result: &mut TestOutput,
    ) {
        for update in &output.state_updates {
            let key = keys[update.group as usize].clone();
            match &update.state {
                Some(bytes) => self.states.insert(key, bytes.clone()),
                None => self.states.remove(&key),
            };
        }
        if let Some(clock) = self.clock.as_mut() {
            for timer in &output.timers {
                if timer.domain != TimeDomain::EventTime {
                    continue;
                }
                let entry = (timer.time, keys[timer.group as usize].clone());
                if timer.delete {
                    clock.timers.remove(&entry);
                } else {
                    clock.timers.insert(entry);
                }
            }
        }
        for emitted in &output.emitted {
            let rows = match (emitted.unchanged, input) {
                (true, Some(batch)) => rows_of(&take(batch, &emitted.origins)),
                _ => rows_of(&emitted.batch),
            };
            result
                .outputs
                .entry(emitted.output.clone())
                .or_default()
                .extend(rows);
        }
    }

    /// Fires every event-time timer at or before `watermark`, in time order.
    fn fire_timers(&mut self, watermark: i64, result: &mut TestOutput) {
        crate::host::NATIVE.with_borrow_mut(|h| h.watermark = watermark);
        loop {
            let Some(clock) = self.clock.as_mut() else {
                return;
            };
            let due: Vec<(i64, String)> = match clock.timers.first() {
                Some((time, _)) if *time <= watermark => {
                    clock.timers.pop_first().into_iter().collect()
                }
                _ => return,
            };
            let (time, key) = &due[0];
            let groups = vec![KeyGroup {
                key: key.clone(),
                rows: Vec::new(),
                state: self.states.get(key).cloned(),
            }];
            let fired = vec![FiredTimer {
                group: 0,
                domain: TimeDomain::EventTime,
                time: *time,
            }];
            crate::host::NATIVE.with_borrow_mut(|h| h.event_times = (vec![*time], vec![watermark]));
            let output = self
                .operator
                .on_timer(fired, groups)
                .expect("the timer function failed");
            self.apply(std::slice::from_ref(key), &output, None, result);
        }
    }

    fn groups(&self, batch: &Batch, field: &str) -> Vec<KeyGroup> {
        let rows = rows_of(batch);
        let mut groups: Vec<KeyGroup> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (row, record) in rows.iter().enumerate() {
            let key = match record.get(field) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => continue,
            };
            let g = *index.entry(key.clone()).or_insert_with(|| {
                groups.push(KeyGroup {
                    key: key.clone(),
                    rows: Vec::new(),
                    state: self.states.get(&key).cloned(),
                });
                groups.len() - 1
            });
            groups[g].rows.push(row as u32);
        }
        groups
    }
}

/// The rows `rows` of `batch`, in that order: what the host does with the
/// rows a filter keeps.
fn take(batch: &Batch, rows: &[u32]) -> Batch {
    let columns = batch
        .columns
        .iter()
        .map(|column| Column {
            name: column.name.clone(),
            values: take_values(&column.values, rows),
            validity: column.validity.as_ref().map(|bits| {
                let mut out = vec![0u8; rows.len().div_ceil(8)];
                for (i, &row) in rows.iter().enumerate() {
                    let row = row as usize;
                    if bits.get(row / 8).is_some_and(|b| b & (1 << (row % 8)) != 0) {
                        out[i / 8] |= 1 << (i % 8);
                    }
                }
                out
            }),
        })
        .collect();
    Batch {
        rows: rows.len() as u32,
        columns,
    }
}

fn take_values(values: &Values, rows: &[u32]) -> Values {
    fn gather<T: Copy + Default>(src: &[T], rows: &[u32]) -> Vec<T> {
        rows.iter()
            .map(|&r| src.get(r as usize).copied().unwrap_or_default())
            .collect()
    }
    fn gather_text(src: &TextValues, rows: &[u32]) -> TextValues {
        let mut offsets = Vec::with_capacity(rows.len() + 1);
        let mut bytes = Vec::new();
        offsets.push(0);
        for &r in rows {
            let r = r as usize;
            let start = src.offsets.get(r).copied().unwrap_or(0) as usize;
            let end = src.offsets.get(r + 1).copied().unwrap_or(0) as usize;
            bytes.extend_from_slice(src.bytes.get(start..end).unwrap_or_default());
            offsets.push(bytes.len() as i32);
        }
        TextValues { offsets, bytes }
    }
    match values {
        Values::Int64(v) => Values::Int64(gather(v, rows)),
        Values::Float64(v) => Values::Float64(gather(v, rows)),
        Values::Boolean(v) => Values::Boolean(gather(v, rows)),
        Values::Utf8(t) => Values::Utf8(gather_text(t, rows)),
        Values::Json(t) => Values::Json(gather_text(t, rows)),
    }
}
