//! CSV lines into Arrow, with the same per-batch type inference as JSON Lines.

use super::json::check_len;
use super::*;
use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringBuilder};
use arrow::buffer::{BooleanBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

/// Checks that a line is exactly one CSV record, following the csv crate's RFC 4180 state
/// machine (a quote opens a quoted field only at the start of a field; `""` inside one is
/// an escaped quote; a quote elsewhere is literal): it must not end inside a quoted field,
/// nor hold a carriage return or line feed outside one.
fn check_csv_line(line: &str) -> Result<(), &'static str> {
    #[derive(Clone, Copy)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut state = State::FieldStart;
    for &b in line.as_bytes() {
        state = match (state, b) {
            (State::Quoted, b'"') => State::QuoteInQuoted,
            (State::Quoted, _) => State::Quoted,
            (State::QuoteInQuoted, b'"') => State::Quoted,
            (_, b'\r' | b'\n') => {
                return Err("a carriage return or line feed outside a quoted field");
            }
            (_, b',') => State::FieldStart,
            (State::FieldStart, b'"') => State::Quoted,
            _ => State::Unquoted,
        };
    }
    match state {
        State::Quoted => {
            Err("unterminated quoted field (quoted fields spanning lines are not supported)")
        }
        _ => Ok(()),
    }
}

/// Splits one CSV line into `record`, with a reader of its own.
pub(super) fn split_csv_line(line: &str, record: &mut ::csv::StringRecord) -> Result<(), String> {
    check_csv_line(line)?;
    let mut reader = csv_builder().from_reader(line.as_bytes());
    match reader.read_record(record) {
        Ok(true) => Ok(()),
        Ok(false) => Err("empty record".into()),
        Err(e) => Err(format!("invalid CSV: {e}")),
    }
}

fn csv_builder() -> ::csv::ReaderBuilder {
    let mut builder = ::csv::ReaderBuilder::new();
    builder.has_headers(false).flexible(true);
    builder
}

/// Parses a CSV header line into column names.
///
/// A leading byte-order mark and a trailing carriage return are ignored; names are not
/// trimmed.
///
/// # Errors
///
/// A blank line, a line ending inside a quoted field, or a duplicate column name.
pub fn parse_csv_header(line: &str) -> Result<Vec<String>, String> {
    let line = strip_line(line);
    if line.trim().is_empty() {
        return Err("empty CSV header".into());
    }
    let mut record = ::csv::StringRecord::new();
    split_csv_line(line, &mut record).map_err(|e| format!("bad CSV header: {e}"))?;
    let names: Vec<String> = record.iter().map(str::to_owned).collect();
    let mut seen = HashSet::new();
    for name in &names {
        if !seen.insert(name.as_str()) {
            return Err(format!("duplicate column name `{name}` in CSV header"));
        }
    }
    Ok(names)
}

/// A canonical integer: optional `-`, digits without a leading zero (except `0`), not `-0`,
/// within `i64`.
fn canonical_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let ok = match digits.as_bytes() {
        [] => false,
        [b'0'] => digits.len() == s.len(),
        [b'0', ..] => false,
        d => d.iter().all(u8::is_ascii_digit),
    };
    if ok { s.parse().ok() } else { None }
}

/// A finite float written with a fraction or exponent.
fn float_text(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) && s.parse::<f64>().is_ok_and(f64::is_finite)
}

/// The cells of one CSV column and what its non-empty cells could all be.
struct CsvColumn {
    text: StringBuilder,
    non_empty: usize,
    int_ok: bool,
    float_ok: bool,
    bool_ok: bool,
    inexact_int: bool,
}

impl CsvColumn {
    fn new() -> Self {
        Self {
            text: StringBuilder::new(),
            non_empty: 0,
            int_ok: true,
            float_ok: true,
            bool_ok: true,
            inexact_int: false,
        }
    }

    fn push(&mut self, cell: &str) {
        if cell.is_empty() {
            self.text.append_null();
            return;
        }
        self.text.append_value(cell);
        self.non_empty += 1;
        if self.int_ok || self.float_ok {
            match canonical_int(cell) {
                Some(v) => self.inexact_int |= v.unsigned_abs() > MAX_EXACT_INT,
                None => {
                    self.int_ok = false;
                    self.float_ok = self.float_ok && float_text(cell);
                }
            }
        }
        self.bool_ok = self.bool_ok && (cell == "true" || cell == "false");
    }

    fn finish(mut self, name: &str) -> Result<(Field, ArrayRef), ArrowError> {
        let text = self.text.finish();
        let nulls = text.nulls().cloned();
        if self.non_empty == 0 {
            return Ok((Field::new(name, DataType::Utf8, true), Arc::new(text)));
        }
        Ok(if self.int_ok {
            let values: Vec<i64> = text
                .iter()
                .map(|v| v.and_then(|s| s.parse().ok()).unwrap_or_default())
                .collect();
            let array = Int64Array::try_new(ScalarBuffer::from(values), nulls)?;
            (Field::new(name, DataType::Int64, true), Arc::new(array))
        } else if self.float_ok && !self.inexact_int {
            let values: Vec<f64> = text
                .iter()
                .map(|v| v.and_then(|s| s.parse().ok()).unwrap_or_default())
                .collect();
            let array = Float64Array::try_new(ScalarBuffer::from(values), nulls)?;
            (Field::new(name, DataType::Float64, true), Arc::new(array))
        } else if self.bool_ok {
            let values: BooleanBuffer = text.iter().map(|v| v == Some("true")).collect();
            check_len(values.len(), &nulls)?;
            let array = BooleanArray::new(values, nulls);
            (Field::new(name, DataType::Boolean, true), Arc::new(array))
        } else {
            (Field::new(name, DataType::Utf8, true), Arc::new(text))
        })
    }
}

/// Decodes CSV records with the given header into one batch.
///
/// `records` are (1-based line number, raw line text) of the data lines; the caller splits
/// lines and takes the header (see [`parse_csv_header`]). Fields are parsed per RFC 4180 by
/// the csv crate, one record per line: a quoted field containing a newline is **not
/// supported**, and a line that ends inside a quoted field (or holds a bare carriage
/// return) is a [`BadLine`]. Blank lines are skipped; a trailing carriage return is
/// ignored. A record whose field count differs from the header's is a [`BadLine`]. Empty
/// cells are null. The contract is otherwise that of [`decode_json_lines`].
///
/// # Type inference (per column, per batch)
///
/// Empty cells are null. `Int64` if every non-empty cell is a canonical integer (optional
/// `-`, no `+`, no leading zeros except `0` itself, not `-0`, fits `i64`); else `Float64` if
/// every non-empty cell is a finite `f64` containing `.`, `e` or `E`, or a canonical integer
/// (and every such integer is exactly representable, |v| ≤ 2^53); else `Boolean` if every
/// non-empty cell is exactly `true` or `false`; else `Utf8`. A column with no non-empty cell
/// is `Utf8`. Cells are not trimmed.
pub fn decode_csv_lines<'a>(
    header: &[String],
    records: impl IntoIterator<Item = (u64, &'a str)>,
) -> (RecordBatch, Vec<u64>, Vec<BadLine>) {
    // Lines that are one record each, joined with '\n' so that one reader (whose set-up
    // costs far more than a line) splits them all; `spans` says where each one ends.
    let mut joined: Vec<u8> = Vec::new();
    let mut spans: Vec<(usize, u64, &'a str, usize)> = Vec::new(); // (input index, line, text, end)
    let mut bad: Vec<(usize, BadLine)> = Vec::new();
    for (index, (line_no, original)) in records.into_iter().enumerate() {
        let line = strip_line(original);
        if line.trim().is_empty() {
            continue;
        }
        if let Err(reason) = check_csv_line(line) {
            bad.push((index, BadLine::new(line_no, original, reason)));
            continue;
        }
        if joined.len().saturating_add(line.len()) >= MAX_BATCH_BYTES {
            bad.push((index, BadLine::new(line_no, original, too_large())));
            continue;
        }
        joined.extend_from_slice(line.as_bytes());
        joined.push(b'\n');
        spans.push((index, line_no, original, joined.len()));
    }

    let mut cols: Vec<CsvColumn> = header.iter().map(|_| CsvColumn::new()).collect();
    let mut line_numbers = Vec::with_capacity(spans.len());
    let mut accepted: Vec<&'a str> = Vec::with_capacity(spans.len());
    let mut record = ::csv::StringRecord::new();
    let builder = csv_builder();
    let mut reader = builder.from_reader(joined.as_slice());
    let mut base = 0usize; // where `reader` starts in `joined`
    for &(index, line_no, original, end) in &spans {
        let read = reader.read_record(&mut record);
        let at = base.saturating_add(usize::try_from(reader.position().byte()).unwrap_or(0));
        let reason = match read {
            Ok(true) if at == end => None,
            Ok(_) => Some("could not split the line as one CSV record".to_owned()),
            Err(e) => Some(format!("invalid CSV: {e}")),
        };
        if let Some(reason) = reason {
            // Start afresh after this line, so the others still split one by one.
            base = end;
            reader = builder.from_reader(joined.get(end..).unwrap_or_default());
            bad.push((index, BadLine::new(line_no, original, reason)));
            continue;
        }
        if record.len() != header.len() {
            let reason = format!("expected {} fields, found {}", header.len(), record.len());
            bad.push((index, BadLine::new(line_no, original, reason)));
            continue;
        }
        for (col, cell) in cols.iter_mut().zip(record.iter()) {
            col.push(cell);
        }
        line_numbers.push(line_no);
        accepted.push(original);
    }
    bad.sort_by_key(|(index, _)| *index);
    let bad = bad.into_iter().map(|(_, b)| b).collect();

    let rows = line_numbers.len();
    let mut schema = Vec::with_capacity(cols.len());
    let arrays = cols
        .into_iter()
        .zip(header)
        .map(|(col, name)| {
            let (field, array) = col.finish(name)?;
            schema.push(field);
            Ok(array)
        })
        .collect::<Result<Vec<_>, ArrowError>>();
    finish_batch(
        schema,
        arrays,
        rows,
        line_numbers,
        || accepted.iter().map(|s| (*s).to_owned()).collect(),
        bad,
    )
}
