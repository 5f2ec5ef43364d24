//! Text codecs: JSON Lines and CSV lines ⇄ Arrow [`RecordBatch`]es.
//!
//! Weir is schema-agnostic: every column of a batch has one of five types, inferred
//! afresh for every batch, so one field may be `Int64` in one batch and JSON in the next.
//!
//! | type | Arrow storage | used for |
//! |---|---|---|
//! | `Int64` | `Int64` | integers that fit `i64` |
//! | `Float64` | `Float64` | finite numbers with a fraction or exponent |
//! | `Boolean` | `Boolean` | `true` / `false` |
//! | `Utf8` | `Utf8` | strings |
//! | JSON | `Utf8` whose field has metadata `ARROW:extension:name` = [`JSON_EXTENSION`] | one JSON document per value: nested objects and arrays, integers beyond `i64`, numbers beyond `f64`, and fields whose values mix types within the batch |
//!
//! A null means the field is absent from the record (or was JSON `null`).
//!
//! Types are inferred per field and per batch: see [`decode_json_lines`] and
//! [`decode_csv_lines`] for the rules.
//!
//! # Limits
//!
//! One decoded batch holds at most [`MAX_BATCH_BYTES`] bytes of input lines (Arrow `Utf8`
//! offsets are `i32`) and 2^29 rows; lines past that become [`BadLine`]s. A quoted CSV
//! field containing a newline is not supported: each line is one record, and a line that
//! ends inside a quoted field is a [`BadLine`]. Both decoders ignore a leading byte-order
//! mark and a trailing carriage return on a line.
//!
//! No function here panics on its input.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use serde::Deserializer as _;
use serde_json::ser::Formatter as _;

/// The Arrow extension name that marks a `Utf8` column as holding JSON documents.
pub const JSON_EXTENSION: &str = "arrow.json";

/// The field metadata key that names an Arrow extension type.
const EXTENSION_KEY: &str = "ARROW:extension:name";

/// The most input bytes (sum of accepted line lengths) that one decoded batch may hold.
///
/// Every string value is a piece of its line, so this keeps each `Utf8` column within
/// Arrow's `i32` offsets.
pub const MAX_BATCH_BYTES: usize = i32::MAX as usize;

/// Integers up to this magnitude convert to `f64` exactly.
const MAX_EXACT_INT: u64 = 1 << 53;

/// Returns a nullable JSON column field: `Utf8` tagged with the [`JSON_EXTENSION`] extension.
pub fn json_field(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true).with_metadata(HashMap::from([(
        EXTENSION_KEY.to_owned(),
        JSON_EXTENSION.to_owned(),
    )]))
}

/// Tells whether `f` is a JSON column: `Utf8` tagged with the [`JSON_EXTENSION`] extension.
pub fn is_json_field(f: &Field) -> bool {
    f.data_type() == &DataType::Utf8 && has_json_tag(f)
}

fn has_json_tag(f: &Field) -> bool {
    f.metadata().get(EXTENSION_KEY).map(String::as_str) == Some(JSON_EXTENSION)
}

/// A line that could not be decoded; it goes to the dead-letter output.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    /// The 1-based line number the caller gave for the line.
    pub line: u64,
    /// The line's text, as given.
    pub raw: String,
    /// Why it was refused, e.g. `invalid JSON: expected value at line 1 column 3`.
    pub reason: String,
}

impl BadLine {
    fn new(line: u64, raw: &str, reason: impl Into<String>) -> Self {
        Self {
            line,
            raw: raw.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Drops a leading byte-order mark and one trailing carriage return.
fn strip_line(text: &str) -> &str {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.strip_suffix('\r').unwrap_or(text)
}

fn too_large() -> String {
    format!("batch too large: its lines exceed {MAX_BATCH_BYTES} bytes; use smaller batches")
}

/// Assembles a batch, or on an (unexpected) Arrow error refuses every row's line.
fn finish_batch(
    fields: Vec<Field>,
    arrays: Result<Vec<ArrayRef>, ArrowError>,
    rows: usize,
    lines: Vec<u64>,
    raws: impl FnOnce() -> Vec<String>,
    mut bad: Vec<BadLine>,
) -> (RecordBatch, Vec<u64>, Vec<BadLine>) {
    if rows == 0 {
        return (
            RecordBatch::new_empty(Arc::new(Schema::empty())),
            lines,
            bad,
        );
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    let batch = arrays.and_then(|arrays| {
        RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
    });
    match batch {
        Ok(batch) => (batch, lines, bad),
        Err(e) => {
            let reason = format!("internal error building the batch: {e}");
            bad.extend(
                lines
                    .iter()
                    .zip(raws())
                    .map(|(&line, raw)| BadLine::new(line, &raw, reason.clone())),
            );
            bad.sort_by_key(|b| b.line);
            let empty = RecordBatch::new_empty(Arc::new(Schema::empty()));
            (empty, Vec::new(), bad)
        }
    }
}

mod csv;
mod encode;
mod json;
mod scan;
#[cfg(test)]
mod tests;

pub use csv::{decode_csv_lines, parse_csv_header};
pub use encode::{encode_json_lines, row_to_json};
pub use json::decode_json_lines;
