//! Keys of records: the text a `key_by` field has in each row, and the worker
//! that owns it.

use arrow::array::{Array, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::codec::is_json_field;

/// The key of every row of `batch` by field `field`; `None` where the field is
/// absent or null. Integer keys print in decimal, so a key reads the same
/// whichever type its column has in a given batch.
pub fn row_keys<'a>(batch: &'a RecordBatch, field: &str) -> Vec<Option<Cow<'a, str>>> {
    let rows = batch.num_rows();
    let Some((index, f)) = batch.schema_ref().column_with_name(field) else {
        return vec![None; rows];
    };
    let column = batch.column(index);
    let json = is_json_field(f);
    let any = column.as_any();
    let mut keys = Vec::with_capacity(rows);
    for row in 0..rows {
        if column.is_null(row) {
            keys.push(None);
            continue;
        }
        let key: Option<Cow<'a, str>> = match column.data_type() {
            DataType::Utf8 => any.downcast_ref::<StringArray>().map(|a| {
                let text = a.value(row);
                if json {
                    json_key(text)
                } else {
                    Cow::Borrowed(text)
                }
            }),
            DataType::Int64 => any
                .downcast_ref::<Int64Array>()
                .map(|a| Cow::Owned(a.value(row).to_string())),
            DataType::Float64 => any.downcast_ref::<Float64Array>().map(|a| {
                Cow::Owned(
                    serde_json::Number::from_f64(a.value(row))
                        .map_or_else(|| "null".to_owned(), |n| n.to_string()),
                )
            }),
            DataType::Boolean => any
                .downcast_ref::<BooleanArray>()
                .map(|a| Cow::Borrowed(if a.value(row) { "true" } else { "false" })),
            _ => None,
        };
        keys.push(key);
    }
    keys
}

/// The rows of a batch grouped by key, for a keyed operator's call.
pub struct KeyGroups<'a> {
    /// Every key, in order of first appearance, with its rows in order.
    pub groups: Vec<(Cow<'a, str>, Vec<u32>)>,
    /// Rows whose key field is absent or null.
    pub missing: Vec<u32>,
}

/// Groups the rows of `batch` by field `field`, with the keys [`row_keys`]
/// gives. Integer keys are grouped by value and printed once per key, not
/// once per row: the common case of keying by an id.
pub fn group_rows<'a>(batch: &'a RecordBatch, field: &str) -> KeyGroups<'a> {
    let mut groups: Vec<(Cow<'a, str>, Vec<u32>)> = Vec::new();
    let mut missing = Vec::new();
    let ints = batch
        .column_by_name(field)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>());
    if let Some(ints) = ints {
        let mut index: HashMap<i64, usize, foldhash::fast::RandomState> = HashMap::default();
        for (row, value) in ints.iter().enumerate() {
            let Some(value) = value else {
                missing.push(row as u32);
                continue;
            };
            let g = *index.entry(value).or_insert_with(|| {
                groups.push((Cow::Owned(value.to_string()), Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(row as u32);
        }
        return KeyGroups { groups, missing };
    }
    let keys = row_keys(batch, field);
    let mut index: HashMap<&str, usize, foldhash::fast::RandomState> = HashMap::default();
    let mut first_rows = Vec::new();
    for (row, key) in keys.iter().enumerate() {
        let Some(key) = key.as_deref() else {
            missing.push(row as u32);
            continue;
        };
        let g = *index.entry(key).or_insert_with(|| {
            first_rows.push(row);
            first_rows.len() - 1
        });
        if g == groups.len() {
            groups.push((Cow::Borrowed(""), Vec::new()));
        }
        groups[g].1.push(row as u32);
    }
    // The map borrows `keys`; give each group its key only now.
    drop(index);
    let mut keys = keys;
    for ((key, _), row) in groups.iter_mut().zip(first_rows) {
        *key = keys[row].take().unwrap_or_default();
    }
    KeyGroups { groups, missing }
}

/// A JSON document as a key: strings unquoted, anything else as written.
fn json_key(doc: &str) -> Cow<'_, str> {
    if doc.starts_with('"')
        && let Ok(s) = serde_json::from_str::<String>(doc)
    {
        return Cow::Owned(s);
    }
    Cow::Borrowed(doc)
}

/// The worker of `workers` that owns `key`: stable for the whole run.
pub fn partition_of(key: &str, workers: usize) -> usize {
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % workers as u64) as usize
}
