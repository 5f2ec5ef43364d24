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
use std::collections::{BTreeMap, HashMap};

use crate::abi::types::{Batch, KeyGroup, Values};
use crate::batch::{is_valid, take, text};
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
        }
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
        let output = self
            .operator
            .process(&batch, groups.clone())
            .expect("the operator failed the batch");
        for update in &output.state_updates {
            let key = groups[update.group as usize].key.clone();
            match &update.state {
                Some(bytes) => self.states.insert(key, bytes.clone()),
                None => self.states.remove(&key),
            };
        }
        let mut result = TestOutput::default();
        for emitted in &output.emitted {
            let rows = if emitted.unchanged {
                rows_of(&take(&batch, &emitted.origins))
            } else {
                rows_of(&emitted.batch)
            };
            result
                .outputs
                .entry(emitted.output.clone())
                .or_default()
                .extend(rows);
        }
        result.rejected = output
            .rejected
            .iter()
            .map(|r| (r.row as usize, r.reason.clone()))
            .collect();
        result
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
