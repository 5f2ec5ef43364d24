//! Arrow batches into JSON Lines, written by hand: the output's hot path.

use super::scan::*;
use super::*;

use arrow::array::{
    Array, BooleanArray, Float64Array, Int64Array, LargeStringArray, StringArray, StringViewArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::ser::CompactFormatter;

/// How one column's non-null values are written.
enum Values<'b> {
    Int(&'b Int64Array),
    Float(&'b Float64Array),
    Bool(&'b BooleanArray),
    Str(&'b StringArray),
    Json(&'b StringArray),
    LargeStr(&'b LargeStringArray),
    LargeJson(&'b LargeStringArray),
    ViewStr(&'b StringViewArray),
    ViewJson(&'b StringViewArray),
    /// Integers of other widths: their display text is a JSON number.
    Number(ArrayFormatter<'b>),
    /// Any other type: its display text as a JSON string.
    Display(ArrayFormatter<'b>),
    /// Always null (the `Null` type, or a type that cannot be displayed).
    Null,
}

struct ColumnWriter<'b> {
    /// `"name":`; the `{` or `,` before it depends on which fields a row has.
    prefix: Vec<u8>,
    nulls: Option<NullBuffer>,
    values: Values<'b>,
}

/// A batch prepared for writing rows as JSON objects.
struct RowWriter<'b> {
    columns: Vec<ColumnWriter<'b>>,
}

impl<'b> RowWriter<'b> {
    fn new(batch: &'b RecordBatch) -> Self {
        let schema = batch.schema_ref();
        let columns = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, array)| {
                let mut prefix = Vec::with_capacity(field.name().len() + 4);
                write_json_str(&mut prefix, field.name());
                prefix.push(b':');
                ColumnWriter {
                    prefix,
                    nulls: array.logical_nulls(),
                    values: Self::values(field, array.as_ref()),
                }
            })
            .collect();
        Self { columns }
    }

    fn values(field: &Field, array: &'b dyn Array) -> Values<'b> {
        let any = array.as_any();
        let json = has_json_tag(field);
        let typed = match array.data_type() {
            DataType::Int64 => any.downcast_ref().map(Values::Int),
            DataType::Float64 => any.downcast_ref().map(Values::Float),
            DataType::Boolean => any.downcast_ref().map(Values::Bool),
            DataType::Utf8 if json => any.downcast_ref().map(Values::Json),
            DataType::Utf8 => any.downcast_ref().map(Values::Str),
            DataType::LargeUtf8 if json => any.downcast_ref().map(Values::LargeJson),
            DataType::LargeUtf8 => any.downcast_ref().map(Values::LargeStr),
            DataType::Utf8View if json => any.downcast_ref().map(Values::ViewJson),
            DataType::Utf8View => any.downcast_ref().map(Values::ViewStr),
            DataType::Null => Some(Values::Null),
            _ => None,
        };
        typed.unwrap_or_else(|| {
            let numeric = array.data_type().is_integer();
            match ArrayFormatter::try_new(array, &FormatOptions::default()) {
                Ok(f) if numeric => Values::Number(f),
                Ok(f) => Values::Display(f),
                Err(_) => Values::Null,
            }
        })
    }

    /// Writes row `row` (which must be in range) as one JSON object.
    fn write_row(&self, row: usize, out: &mut Vec<u8>) {
        if self.columns.is_empty() {
            out.extend_from_slice(b"{}");
            return;
        }
        // A null is an absent field (Weir does not tell them apart), so it
        // is left out rather than written as `null`.
        let mut separator = b'{';
        for col in &self.columns {
            if matches!(col.values, Values::Null)
                || col.nulls.as_ref().is_some_and(|n| n.is_null(row))
            {
                continue;
            }
            out.push(separator);
            separator = b',';
            out.extend_from_slice(&col.prefix);
            match &col.values {
                Values::Int(a) => {
                    let _ = CompactFormatter.write_i64(out, a.value(row));
                }
                Values::Float(a) => write_f64(out, a.value(row)),
                Values::Bool(a) => {
                    out.extend_from_slice(if a.value(row) { b"true" } else { b"false" })
                }
                Values::Str(a) => write_json_str(out, a.value(row)),
                Values::Json(a) => write_raw_json(out, a.value(row)),
                Values::LargeStr(a) => write_json_str(out, a.value(row)),
                Values::LargeJson(a) => write_raw_json(out, a.value(row)),
                Values::ViewStr(a) => write_json_str(out, a.value(row)),
                Values::ViewJson(a) => write_raw_json(out, a.value(row)),
                Values::Number(f) => {
                    use std::io::Write as _;
                    let _ = write!(out, "{}", f.value(row));
                }
                Values::Display(f) => {
                    use std::fmt::Write as _;
                    let mut text = String::new();
                    let _ = write!(text, "{}", f.value(row));
                    write_json_str(out, &text);
                }
                Values::Null => out.extend_from_slice(b"null"),
            }
        }
        if separator == b'{' {
            out.push(b'{');
        }
        out.push(b'}');
    }
}

/// Writes an `f64` exactly as `serde_json` does (`12.0`, `1e+20`), non-finite as `null`.
fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let _ = CompactFormatter.write_f64(out, v);
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Writes a stored JSON document: blank as `null`; line breaks (which a valid document can
/// only hold as whitespace) as spaces, so the output stays one line per row.
fn write_raw_json(out: &mut Vec<u8>, doc: &str) {
    let bytes = doc.as_bytes();
    if doc.trim_ascii().is_empty() {
        out.extend_from_slice(b"null");
    } else if bytes.contains(&b'\n') || bytes.contains(&b'\r') {
        out.extend(
            bytes
                .iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
    } else {
        out.extend_from_slice(bytes);
    }
}

/// Writes `s` as a JSON string literal, escaping exactly as `serde_json` does.
pub(super) fn write_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    while let Some(i) = next_escape(bytes, start) {
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        let b = bytes.get(i).copied().unwrap_or_default();
        match ESCAPE[b as usize] {
            b'u' => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xf) as usize],
                ]);
            }
            e => out.extend_from_slice(&[b'\\', e]),
        }
        start = i + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

/// Appends each row of `batch` as one JSON object line (with a trailing `\n`) to `out`.
///
/// Fields are written in column order; a null as `null`. `Int64`, `Float64`, `Boolean` and
/// `Utf8` values are written as JSON values — floats exactly as `serde_json` formats an
/// `f64` (`12.0`, `1e+20`), NaN and infinities as `null`; strings escaped as `serde_json`
/// escapes them. JSON-extension columns are written raw, as the documents they hold are
/// trusted to be valid JSON (a blank one is written as `null`, and line breaks inside one as
/// spaces). Other Arrow types, which Weir batches do not hold, are written as numbers
/// (integer types) or as their display text in a JSON string.
pub fn encode_json_lines(batch: &RecordBatch, out: &mut Vec<u8>) {
    let writer = RowWriter::new(batch);
    let rows = batch.num_rows();
    let per_row: usize = writer
        .columns
        .iter()
        .map(|c| c.prefix.len() + 8)
        .sum::<usize>()
        + 3;
    out.reserve(rows.saturating_mul(per_row));
    for row in 0..rows {
        writer.write_row(row, out);
        out.push(b'\n');
    }
}

/// Renders row `row` of `batch` as one JSON object (no newline), as [`encode_json_lines`]
/// writes it; used for dead-letter entries. A row out of range renders as `{}`.
pub fn row_to_json(batch: &RecordBatch, row: usize) -> String {
    let mut out = Vec::new();
    if row < batch.num_rows() {
        RowWriter::new(batch).write_row(row, &mut out);
    } else {
        out.extend_from_slice(b"{}");
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
