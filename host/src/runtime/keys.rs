//! Keys of records: the text a `key_by` field has in each row, and the worker
//! that owns it.

use arrow::array::{Array, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use std::borrow::Cow;
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
