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

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBufferBuilder, Float64Array, Int64Array,
    LargeStringArray, StringArray, StringBuilder, StringViewArray,
};
use arrow::buffer::{BooleanBuffer, NullBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::Deserializer as _;
use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde_json::ser::{CompactFormatter, Formatter as _};
use serde_json::value::RawValue;

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

// ---------------------------------------------------------------------------------------
// JSON Lines decoding
// ---------------------------------------------------------------------------------------

/// A classified non-null JSON value.
#[derive(Clone, Copy, Debug)]
enum Val {
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A string without escapes: its text is the raw literal without the quotes.
    Str,
    /// A string with escapes, unescaped into the column's `owned` list at this index.
    StrOwned(u32),
    /// Kept as its raw JSON text: nested, or a number beyond `i64`/`f64`.
    Json,
}

/// The most rows one decoded batch may hold (a [`Cell`] packs the row into 29 bits).
const MAX_ROWS: usize = 1 << 29;

/// One present, non-null value of a column, packed into 20 bytes (decoding is bound by
/// memory traffic): the value, its row, and where its raw text lies in that row's line.
#[derive(Clone, Copy)]
struct Cell {
    payload: [u32; 2],
    /// `row << 3 | tag`
    row_tag: u32,
    off: u32,
    len: u32,
}

impl Cell {
    fn new(row: u32, off: u32, len: u32, val: Val) -> Self {
        let (tag, bits): (u32, u64) = match val {
            Val::Int(v) => (0, v as u64),
            Val::Float(f) => (1, f.to_bits()),
            Val::Bool(b) => (2, u64::from(b)),
            Val::Str => (3, 0),
            Val::StrOwned(i) => (4, u64::from(i)),
            Val::Json => (5, 0),
        };
        Self {
            payload: [bits as u32, (bits >> 32) as u32],
            row_tag: row << 3 | tag,
            off,
            len,
        }
    }

    fn row(&self) -> usize {
        (self.row_tag >> 3) as usize
    }

    fn val(&self) -> Val {
        let bits = u64::from(self.payload[0]) | u64::from(self.payload[1]) << 32;
        match self.row_tag & 7 {
            0 => Val::Int(bits as i64),
            1 => Val::Float(f64::from_bits(bits)),
            2 => Val::Bool(bits != 0),
            3 => Val::Str,
            4 => Val::StrOwned(bits as u32),
            _ => Val::Json,
        }
    }

    /// The value's raw JSON text, found in its row's line.
    fn raw<'a>(&self, lines: &[&'a str]) -> &'a str {
        let start = self.off as usize;
        lines
            .get(self.row())
            .and_then(|line| line.get(start..start.saturating_add(self.len as usize)))
            .unwrap_or("")
    }
}

/// The values of one field seen so far in the batch, in row order.
struct JsonColumn {
    name: String,
    cells: Vec<Cell>,
    owned: Vec<String>,
}

/// Collects an object's keys and raw values, in order, into `fields`.
struct ObjectVisitor<'b, 'a> {
    fields: &'b mut Vec<Entry<'a>>,
}

impl<'a> Visitor<'a> for ObjectVisitor<'_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value: &'a RawValue = map.next_value()?;
            self.fields.push((key, value.get(), Hint::Unknown));
        }
        Ok(())
    }
}

/// Deserializes an object key, borrowing it from the line when it has no escapes.
struct KeySeed;

impl<'a> DeserializeSeed<'a> for KeySeed {
    type Value = Cow<'a, str>;

    fn deserialize<D: serde::Deserializer<'a>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'a> Visitor<'a> for KeySeed {
    type Value = Cow<'a, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, v: &'a str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// One key of a line, its raw value text, and what a scan learned about the value.
type Entry<'a> = (Cow<'a, str>, &'a str, Hint);

/// Parses one line as a JSON object into `fields`, or says why it is not one.
///
/// A fast scanner handles the common case; it accepts only lines that `serde_json` accepts,
/// and yields the same keys and raw values. Anything else — escaped keys, every kind of
/// error — goes through `serde_json`, which also words the error.
fn parse_object<'a>(text: &'a str, fields: &mut Vec<Entry<'a>>) -> Result<(), String> {
    if scan_object(text, fields).is_some() {
        return Ok(());
    }
    fields.clear();
    if !text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        return Err(match serde_json::from_str::<&RawValue>(text) {
            Ok(_) => "not a JSON object".to_owned(),
            Err(e) => format!("invalid JSON: {e}"),
        });
    }
    let mut de = serde_json::Deserializer::from_str(text);
    (&mut de)
        .deserialize_map(ObjectVisitor { fields })
        .and_then(|()| de.end())
        .map_err(|e| format!("invalid JSON: {e}"))
}

/// What the fast scanner learned about a raw value.
#[derive(Clone, Copy, Debug)]
enum Hint {
    /// Not scanned (the `serde_json` path): classify from the raw text.
    Unknown,
    Str,
    StrEscaped,
    Int(i64),
    /// A number with a fraction or exponent.
    Float,
    /// An integer beyond `i64`.
    BigInt,
    True,
    False,
    Null,
    Nested,
}

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// Scans the JSON string literal starting at `b[start] == '"'`, validating it as
/// `serde_json` does (no control characters; escapes `\" \\ \/ \b \f \n \r \t \uXXXX`).
/// Returns the index after the closing quote and whether it holds an escape.
#[inline]
fn scan_string(b: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut i = start + 1;
    let mut escaped = false;
    loop {
        i = next_escape(b, i)?;
        match *b.get(i)? {
            b'"' => return Some((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                match *b.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        if !b.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        i += 6;
                    }
                    _ => return None,
                }
            }
            _ => return None, // a control character
        }
    }
}

/// Scans a JSON number starting at `b[i]`, per the JSON grammar.
#[inline]
fn scan_number(b: &[u8], mut i: usize) -> Option<(usize, Hint)> {
    let negative = b.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    let mut magnitude: Option<u64> = Some(0);
    match b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => {
            while let Some(&d @ b'0'..=b'9') = b.get(i) {
                magnitude = magnitude
                    .and_then(|m| m.checked_mul(10))
                    .and_then(|m| m.checked_add(u64::from(d - b'0')));
                i += 1;
            }
        }
        _ => return None,
    }
    let mut float = false;
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !b.get(i)?.is_ascii_digit() {
            return None;
        }
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        float = true;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        if !b.get(i)?.is_ascii_digit() {
            return None;
        }
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        float = true;
    }
    if float {
        return Some((i, Hint::Float));
    }
    let int = magnitude.and_then(|m| {
        if negative {
            // -2^63 ..= 0
            (m <= 1 << 63).then(|| (m as i64).wrapping_neg())
        } else {
            i64::try_from(m).ok()
        }
    });
    Some((i, int.map_or(Hint::BigInt, Hint::Int)))
}

/// Scans the JSON value starting at `b[i]`; returns the index after it.
#[inline]
fn scan_value(text: &str, b: &[u8], i: usize) -> Option<(usize, Hint)> {
    let literal = |word: &[u8], hint| {
        b.get(i..i + word.len())
            .filter(|w| *w == word)
            .map(|_| (i + word.len(), hint))
    };
    match b.get(i)? {
        b'"' => scan_string(b, i)
            .map(|(end, esc)| (end, if esc { Hint::StrEscaped } else { Hint::Str })),
        b't' => literal(b"true", Hint::True),
        b'f' => literal(b"false", Hint::False),
        b'n' => literal(b"null", Hint::Null),
        b'-' | b'0'..=b'9' => scan_number(b, i),
        b'{' | b'[' => {
            // Nested values are validated and delimited by serde_json (without recursion).
            let mut de = serde_json::Deserializer::from_str(text.get(i..)?);
            let raw = <&RawValue as serde::Deserialize>::deserialize(&mut de).ok()?;
            Some((i + raw.get().len(), Hint::Nested))
        }
        _ => None,
    }
}

/// The fast path of [`parse_object`]: `None` when the line is not a JSON object of the
/// simple kind it handles (then `fields` may hold some of its entries).
fn scan_object<'a>(text: &'a str, fields: &mut Vec<Entry<'a>>) -> Option<()> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let (end, escaped) = scan_string(b, i)?;
            if escaped {
                return None;
            }
            let key = text.get(i + 1..end - 1)?;
            i = skip_ws(b, end);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i = skip_ws(b, i + 1);
            let (end, hint) = scan_value(text, b, i)?;
            fields.push((Cow::Borrowed(key), text.get(i..end)?, hint));
            i = skip_ws(b, end);
            match b.get(i) {
                Some(b',') => i = skip_ws(b, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (skip_ws(b, i) == b.len()).then_some(())
}

/// Compares two (typically short) strings without a `memcmp` call.
#[inline]
fn same_str(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0..4 => a.iter().zip(b).all(|(x, y)| x == y),
        4..8 => load4(a, 0) == load4(b, 0) && load4(a, n - 4) == load4(b, n - 4),
        8..=16 => load8(a, 0) == load8(b, 0) && load8(a, n - 8) == load8(b, n - 8),
        _ => a == b,
    }
}

/// The text between the quotes of a JSON string literal.
fn str_content(raw: &str) -> &str {
    raw.get(1..raw.len().saturating_sub(1)).unwrap_or("")
}

/// Unescapes a JSON string literal into `owned`.
fn unescape(raw: &str, owned: &mut Vec<String>) -> Val {
    match (
        serde_json::from_str::<String>(raw),
        u32::try_from(owned.len()),
    ) {
        (Ok(s), Ok(i)) => {
            owned.push(s);
            Val::StrOwned(i)
        }
        // e.g. a lone surrogate escape: keep the literal as JSON.
        _ => Val::Json,
    }
}

fn float_or_json(raw: &str) -> Val {
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() => Val::Float(v),
        _ => Val::Json,
    }
}

/// Classifies a raw JSON value; `None` for `null`.
fn classify(raw: &str, hint: Hint, owned: &mut Vec<String>) -> Option<Val> {
    Some(match hint {
        Hint::Str => Val::Str,
        Hint::StrEscaped => unescape(raw, owned),
        Hint::Int(v) => Val::Int(v),
        Hint::Float => float_or_json(raw),
        Hint::BigInt | Hint::Nested => Val::Json,
        Hint::True => Val::Bool(true),
        Hint::False => Val::Bool(false),
        Hint::Null => return None,
        Hint::Unknown => {
            let bytes = raw.as_bytes();
            match bytes.first() {
                Some(b'"') if str_content(raw).as_bytes().contains(&b'\\') => unescape(raw, owned),
                Some(b'"') => Val::Str,
                Some(b't') => Val::Bool(true),
                Some(b'f') => Val::Bool(false),
                Some(b'n') => return None,
                Some(b'{' | b'[') | None => Val::Json,
                Some(_) if bytes.iter().any(|&b| matches!(b, b'.' | b'e' | b'E')) => {
                    float_or_json(raw)
                }
                Some(_) => raw.parse::<i64>().map_or(Val::Json, Val::Int),
            }
        }
    })
}

/// Finds (or creates) the column for the `pos`-th key of a line.
///
/// `hints[pos]` remembers the column the `pos`-th key named last time, so lines with a
/// stable key order need no hashing.
fn column_for<'a>(
    cols: &mut Vec<JsonColumn>,
    index: &mut HashMap<String, usize>,
    hints: &mut Vec<usize>,
    pos: usize,
    key: Cow<'a, str>,
    reserve: usize,
) -> usize {
    if let Some(&h) = hints.get(pos)
        && cols.get(h).is_some_and(|c| same_str(&c.name, &key))
    {
        return h;
    }
    let c = match index.get(&*key) {
        Some(&c) => c,
        None => {
            let c = cols.len();
            let name = key.into_owned();
            index.insert(name.clone(), c);
            cols.push(JsonColumn {
                name,
                cells: Vec::with_capacity(reserve),
                owned: Vec::new(),
            });
            c
        }
    };
    match hints.get_mut(pos) {
        Some(h) => *h = c,
        None => hints.push(c),
    }
    c
}

/// Decodes JSON Lines into one batch.
///
/// `lines` are (1-based line number, text without the newline). Blank or whitespace-only
/// lines are skipped silently; a leading byte-order mark is ignored. A line that is not
/// valid JSON or not a JSON object becomes a [`BadLine`] (reason `invalid JSON: …` or
/// `not a JSON object`). Returns the batch of the good lines, in order; for each of its
/// rows, the line number it came from; and the bad lines. With no good line the batch has
/// no columns and no rows.
///
/// # Type inference (per field, per batch)
///
/// Each line is split into its keys (in order) and raw value slices, without building a
/// `serde_json::Value`: a validating scanner handles the common case and hands anything
/// else (escaped keys, errors) to `serde_json`, which also words the error of a bad line;
/// nested values are delimited by `serde_json`. A raw value is classified: a string
/// (unescaped only when it holds a backslash), `true`/`false`, `null` (absent), a number
/// (`Int64` if it has no `.`/`e`/`E` and fits `i64`; `Float64` if it has one and is finite;
/// otherwise — an integer beyond `i64` or a number beyond `f64` — a JSON value kept as its
/// exact text), or a nested object/array (JSON). The column type is the single class of all
/// its non-null values; any mix, `Int64` with `Float64` included (so `250` stays an integer
/// and `390.5` a float for the operator), gives JSON (strings as JSON strings
/// with quotes, numbers and booleans as their raw text). A field that is null in every row
/// is a JSON column of nulls (it carries no type). Columns appear in order of first
/// appearance across the batch; with a duplicate key in one object the last value wins.
pub fn decode_json_lines<'a>(
    lines: impl IntoIterator<Item = (u64, &'a str)>,
) -> (RecordBatch, Vec<u64>, Vec<BadLine>) {
    let lines = lines.into_iter();
    // Columns of the first line are probably dense: size them for the whole batch (up to
    // a million cells in all).
    let expected = lines.size_hint().0.min(1 << 16);
    let mut cols: Vec<JsonColumn> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut hints: Vec<usize> = Vec::new();
    let mut fields: Vec<Entry<'a>> = Vec::new();
    let mut line_numbers: Vec<u64> = Vec::with_capacity(expected);
    let mut accepted: Vec<&'a str> = Vec::with_capacity(expected);
    let mut bad = Vec::new();
    let mut total_bytes = 0usize;

    for (line_no, original) in lines {
        let text = strip_line(original);
        if text.trim().is_empty() {
            continue;
        }
        fields.clear();
        if let Err(reason) = parse_object(text, &mut fields) {
            bad.push(BadLine::new(line_no, original, reason));
            continue;
        }
        let Some(total) = total_bytes
            .checked_add(text.len())
            .filter(|&t| t <= MAX_BATCH_BYTES)
        else {
            bad.push(BadLine::new(line_no, original, too_large()));
            continue;
        };
        let row = line_numbers.len();
        if row >= MAX_ROWS {
            bad.push(BadLine::new(line_no, original, too_large()));
            continue;
        }
        let row = row as u32;
        total_bytes = total;
        line_numbers.push(line_no);
        accepted.push(text);
        for (pos, (key, raw, hint)) in fields.drain(..).enumerate() {
            let first_line = row == 0 && (pos + 1) * expected <= 1 << 20;
            let reserve = if first_line { expected } else { 0 };
            let c = column_for(&mut cols, &mut index, &mut hints, pos, key, reserve);
            let Some(col) = cols.get_mut(c) else { continue };
            // A duplicate key in one object: the last value wins.
            if col
                .cells
                .last()
                .is_some_and(|last| last.row() == row as usize)
            {
                col.cells.pop();
            }
            // Every value is a piece of `text`, which is below 2 GiB.
            let off = (raw.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
            let (Ok(off), Ok(len)) = (u32::try_from(off), u32::try_from(raw.len())) else {
                continue;
            };
            if let Some(val) = classify(raw, hint, &mut col.owned) {
                col.cells.push(Cell::new(row, off, len, val));
            }
        }
    }

    let rows = line_numbers.len();
    let mut schema = Vec::with_capacity(cols.len());
    let arrays = cols
        .iter()
        .map(|col| {
            let (field, array) = build_json_column(col, rows, &accepted)?;
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

const INT: u8 = 1;
const FLOAT: u8 = 2;
const BOOL: u8 = 4;
const STR: u8 = 8;
const JSON: u8 = 16;

/// Scatters `cells` (ascending rows) into `rows` dense slots with a validity bitmap.
fn scatter<T: Copy + Default>(
    cells: &[Cell],
    rows: usize,
    value: impl Fn(Val) -> Option<T>,
) -> (Vec<T>, Option<NullBuffer>) {
    if cells.len() == rows {
        // Present in every row (ascending distinct rows below `rows`): no gaps, no nulls.
        let dense: Option<Vec<T>> = cells.iter().map(|c| value(c.val())).collect();
        if let Some(values) = dense {
            return (values, None);
        }
    }
    let mut values = Vec::with_capacity(rows);
    let mut valid = BooleanBufferBuilder::new(rows);
    for cell in cells {
        let row = cell.row();
        let Some(v) = value(cell.val()) else { continue };
        if row < values.len() || row >= rows {
            continue; // cannot happen: rows ascend and are in range
        }
        valid.append_n(row - values.len(), false);
        values.resize(row, T::default());
        values.push(v);
        valid.append(true);
    }
    valid.append_n(rows - values.len(), false);
    values.resize(rows, T::default());
    let nulls = NullBuffer::new(valid.finish());
    (values, (nulls.null_count() > 0).then_some(nulls))
}

fn check_len(values: usize, nulls: &Option<NullBuffer>) -> Result<(), ArrowError> {
    match nulls {
        Some(n) if n.len() != values => Err(ArrowError::InvalidArgumentError(format!(
            "{values} values but {} validity bits",
            n.len()
        ))),
        _ => Ok(()),
    }
}

fn build_json_column(
    col: &JsonColumn,
    rows: usize,
    lines: &[&str],
) -> Result<(Field, ArrayRef), ArrowError> {
    let mut classes = 0u8;
    for cell in &col.cells {
        classes |= match cell.val() {
            Val::Int(_) => INT,
            Val::Float(_) => FLOAT,
            Val::Bool(_) => BOOL,
            Val::Str | Val::StrOwned(_) => STR,
            Val::Json => JSON,
        };
    }
    let name = col.name.as_str();
    let cells = col.cells.as_slice();
    Ok(match classes {
        INT => {
            let (values, nulls) = scatter(cells, rows, |v| match v {
                Val::Int(i) => Some(i),
                _ => None,
            });
            let array = Int64Array::try_new(ScalarBuffer::from(values), nulls)?;
            (Field::new(name, DataType::Int64, true), Arc::new(array))
        }
        FLOAT => {
            let (values, nulls) = scatter(cells, rows, |v| match v {
                Val::Int(i) => Some(i as f64),
                Val::Float(f) => Some(f),
                _ => None,
            });
            let array = Float64Array::try_new(ScalarBuffer::from(values), nulls)?;
            (Field::new(name, DataType::Float64, true), Arc::new(array))
        }
        BOOL => {
            let (values, nulls) = scatter(cells, rows, |v| match v {
                Val::Bool(b) => Some(b),
                _ => None,
            });
            check_len(values.len(), &nulls)?;
            let array = BooleanArray::new(BooleanBuffer::from(values), nulls);
            (Field::new(name, DataType::Boolean, true), Arc::new(array))
        }
        STR => {
            let bytes = cells.iter().map(|c| c.len as usize).sum();
            let array = build_strings(cells, rows, bytes, |c| match c.val() {
                Val::StrOwned(i) => col.owned.get(i as usize).map_or("", String::as_str),
                _ => str_content(c.raw(lines)),
            });
            (Field::new(name, DataType::Utf8, true), Arc::new(array))
        }
        _ => {
            let bytes = cells.iter().map(|c| c.len as usize).sum();
            let array = build_strings(cells, rows, bytes, |c| c.raw(lines));
            (json_field(name), Arc::new(array))
        }
    })
}

fn build_strings<'c>(
    cells: &[Cell],
    rows: usize,
    bytes: usize,
    text: impl Fn(&Cell) -> &'c str,
) -> StringArray {
    let mut b = StringBuilder::with_capacity(rows, bytes);
    let mut len = 0usize;
    for cell in cells {
        let row = cell.row();
        if row < len || row >= rows {
            continue; // cannot happen: rows ascend and are in range
        }
        b.append_nulls(row - len);
        b.append_value(text(cell));
        len = row + 1;
    }
    b.append_nulls(rows - len);
    b.finish()
}

// ---------------------------------------------------------------------------------------
// CSV decoding
// ---------------------------------------------------------------------------------------

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
fn split_csv_line(line: &str, record: &mut csv::StringRecord) -> Result<(), String> {
    check_csv_line(line)?;
    let mut reader = csv_builder().from_reader(line.as_bytes());
    match reader.read_record(record) {
        Ok(true) => Ok(()),
        Ok(false) => Err("empty record".into()),
        Err(e) => Err(format!("invalid CSV: {e}")),
    }
}

fn csv_builder() -> csv::ReaderBuilder {
    let mut builder = csv::ReaderBuilder::new();
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
    let mut record = csv::StringRecord::new();
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
    let mut record = csv::StringRecord::new();
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

// ---------------------------------------------------------------------------------------
// JSON encoding
// ---------------------------------------------------------------------------------------

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

/// Which escape each byte needs, as `serde_json` writes strings: 0 none, `u` for `\u00XX`.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Marks (high bit of each byte) the bytes of `w` that are a control character, `"` or `\`.
///
/// Each of the three tests is exact for its lowest marked byte (a false mark can only
/// follow a true one), so the lowest marked byte of the union is the first byte that needs
/// escaping (`w` is read little-endian).
#[inline]
fn escape_mask(w: u64) -> u64 {
    let zero_bytes = |v: u64| v.wrapping_sub(LO) & !v & HI;
    let control = w.wrapping_sub(LO * 0x20) & !w & HI;
    control | zero_bytes(w ^ (LO * b'"' as u64)) | zero_bytes(w ^ (LO * b'\\' as u64))
}

/// The index of the first byte at or after `from` that needs escaping.
#[inline]
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(word) = load8(bytes, i) {
        let mask = escape_mask(word);
        if mask != 0 {
            return Some(i + (mask.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if ESCAPE[b as usize] != 0 {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The 8 bytes at `at` as a little-endian word, if there are 8.
#[inline]
fn load8(bytes: &[u8], at: usize) -> Option<u64> {
    let chunk = bytes.get(at..at.checked_add(8)?)?;
    <[u8; 8]>::try_from(chunk).ok().map(u64::from_le_bytes)
}

/// The 4 bytes at `at` as a little-endian word, if there are 4.
#[inline]
fn load4(bytes: &[u8], at: usize) -> Option<u32> {
    let chunk = bytes.get(at..at.checked_add(4)?)?;
    <[u8; 4]>::try_from(chunk).ok().map(u32::from_le_bytes)
}

/// Writes `s` as a JSON string literal, escaping exactly as `serde_json` does.
fn write_json_str(out: &mut Vec<u8>, s: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::{Float64Type, Int64Type};
    use serde_json::{Value, json};

    fn lines(text: &str) -> Vec<(u64, &str)> {
        text.split('\n')
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, l))
            .collect()
    }

    fn decode(text: &str) -> (RecordBatch, Vec<u64>, Vec<BadLine>) {
        decode_json_lines(lines(text))
    }

    fn encode(batch: &RecordBatch) -> String {
        let mut out = Vec::new();
        encode_json_lines(batch, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn values(out: &str) -> Vec<Value> {
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn kinds(batch: &RecordBatch) -> Vec<(String, &'static str)> {
        batch
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let kind = match f.data_type() {
                    _ if is_json_field(f) => "json",
                    DataType::Int64 => "int",
                    DataType::Float64 => "float",
                    DataType::Boolean => "bool",
                    DataType::Utf8 => "utf8",
                    other => panic!("unexpected type {other}"),
                };
                (f.name().clone(), kind)
            })
            .collect()
    }

    fn names_kinds(list: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
        list.iter().map(|(n, k)| (n.to_string(), *k)).collect()
    }

    fn strs(batch: &RecordBatch, col: &str) -> Vec<Option<String>> {
        batch
            .column_by_name(col)
            .unwrap()
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect()
    }

    #[test]
    fn json_field_helpers() {
        let f = json_field("doc");
        assert!(is_json_field(&f));
        assert!(f.is_nullable());
        assert_eq!(f.metadata()["ARROW:extension:name"], "arrow.json");
        assert!(!is_json_field(&Field::new("doc", DataType::Utf8, true)));
        let int_tagged =
            Field::new("doc", DataType::Int64, true).with_metadata(f.metadata().clone());
        assert!(!is_json_field(&int_tagged));
    }

    #[test]
    fn infers_each_type() {
        let (batch, rows, bad) = decode(concat!(
            r#"{"i":1,"f":1.5,"b":true,"s":"x","n":{"k":[1,2]},"a":[1, "two"]}"#,
            "\n",
            r#"{"i":-2,"f":2.0e3,"b":false,"s":"y","n":null,"a":[]}"#,
        ));
        assert!(bad.is_empty());
        assert_eq!(rows, vec![1, 2]);
        assert_eq!(
            kinds(&batch),
            names_kinds(&[
                ("i", "int"),
                ("f", "float"),
                ("b", "bool"),
                ("s", "utf8"),
                ("n", "json"),
                ("a", "json")
            ])
        );
        let i = batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(i.values().as_ref(), &[1, -2]);
        let f = batch.column(1).as_primitive::<Float64Type>();
        assert_eq!(f.values().as_ref(), &[1.5, 2000.0]);
        assert_eq!(strs(&batch, "n"), vec![Some(r#"{"k":[1,2]}"#.into()), None]);
        assert_eq!(
            strs(&batch, "a"),
            vec![Some(r#"[1, "two"]"#.into()), Some("[]".into())]
        );
    }

    #[test]
    fn mixed_types_become_json() {
        let (batch, _, bad) = decode(concat!(
            r#"{"m":1,"x":1,"y":1,"z":true}"#,
            "\n",
            r#"{"m":"one","x":2.5,"y":9007199254740993,"z":"t"}"#,
            "\n",
            r#"{"m":true,"x":3,"y":0.5,"z":null}"#,
        ));
        assert!(bad.is_empty());
        assert_eq!(
            kinds(&batch),
            names_kinds(&[("m", "json"), ("x", "json"), ("y", "json"), ("z", "json")])
        );
        assert_eq!(
            strs(&batch, "m"),
            vec![
                Some("1".into()),
                Some(r#""one""#.into()),
                Some("true".into())
            ]
        );
        // Integers mixed with floats keep their text, so `1` stays an integer.
        assert_eq!(
            strs(&batch, "x"),
            vec![Some("1".into()), Some("2.5".into()), Some("3".into())]
        );
        assert_eq!(
            strs(&batch, "y"),
            vec![
                Some("1".into()),
                Some("9007199254740993".into()),
                Some("0.5".into())
            ]
        );
        assert_eq!(
            strs(&batch, "z"),
            vec![Some("true".into()), Some(r#""t""#.into()), None]
        );
        let (batch, _, _) = decode("{\"v\":1.5e3}\n{\"v\":0.5}");
        assert_eq!(kinds(&batch), names_kinds(&[("v", "float")]));
    }

    #[test]
    fn nulls_absent_fields_and_key_order() {
        let (batch, rows, bad) = decode(concat!(
            r#"{"b":1,"a":"x"}"#,
            "\n",
            r#"{"c":true,"a":null}"#,
            "\n",
            r#"{"a":"z","d":null}"#,
            "\n",
            r#"{}"#,
        ));
        assert!(bad.is_empty());
        assert_eq!(rows, vec![1, 2, 3, 4]);
        assert_eq!(
            kinds(&batch),
            names_kinds(&[("b", "int"), ("a", "utf8"), ("c", "bool"), ("d", "json")])
        );
        let b = batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            vec![Some(1), None, None, None]
        );
        assert_eq!(
            strs(&batch, "a"),
            vec![Some("x".into()), None, Some("z".into()), None]
        );
        assert_eq!(batch.column(3).null_count(), 4);
        assert_eq!(
            encode(&batch),
            concat!(
                r#"{"b":1,"a":"x"}"#,
                "\n",
                r#"{"c":true}"#,
                "\n",
                r#"{"a":"z"}"#,
                "\n",
                r#"{}"#,
                "\n",
            )
        );
    }

    #[test]
    fn empty_objects_only_give_rows_without_columns() {
        let (batch, rows, bad) = decode("{}\n { } ");
        assert!(bad.is_empty());
        assert_eq!((batch.num_rows(), batch.num_columns()), (2, 0));
        assert_eq!(rows, vec![1, 2]);
        assert_eq!(encode(&batch), "{}\n{}\n");
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let (batch, _, _) = decode(concat!(
            r#"{"a":1,"a":"x","b":2,"b":null}"#,
            "\n",
            r#"{"\u0061":"y","b":3}"#,
        ));
        assert_eq!(kinds(&batch), names_kinds(&[("a", "utf8"), ("b", "int")]));
        assert_eq!(strs(&batch, "a"), vec![Some("x".into()), Some("y".into())]);
        let b = batch.column(1).as_primitive::<Int64Type>();
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![None, Some(3)]);
    }

    #[test]
    fn unicode_and_escapes_round_trip() {
        let input = concat!(
            r#"{"plain":"héllo wörld ✓ 😀","esc":"q\"b\\s\/n\nt\tc\u0001r\r\b\f","uni":"\u00e9\ud83d\ude00","k\"ey":1,"ünï":"\u2028"}"#,
            "\n",
            r#"{"plain":"","esc":"\u0000\u001f\u007f","uni":"日本語","k\"ey":2,"ünï":"x"}"#,
        );
        let (batch, _, bad) = decode(input);
        assert!(bad.is_empty());
        assert_eq!(
            strs(&batch, "esc")[0].as_deref(),
            Some("q\"b\\s/n\nt\tc\u{1}r\r\u{8}\u{c}")
        );
        assert_eq!(strs(&batch, "uni")[0].as_deref(), Some("é😀"));
        let out = encode(&batch);
        assert_eq!(out.lines().count(), 2);
        assert_eq!(values(&out), values(input));
        // Strings are escaped as serde_json escapes them; key order is kept.
        assert_eq!(
            out.lines().next().unwrap(),
            r#"{"plain":"héllo wörld ✓ 😀","esc":"q\"b\\s/n\nt\tc\u0001r\r\b\f","uni":"é😀","k\"ey":1,"ünï":"\u{2028}"}"#
                .replace("\\u{2028}", "\u{2028}")
        );
    }

    #[test]
    fn byte_order_mark_and_lone_surrogates() {
        let (batch, rows, bad) = decode("\u{feff}{\"s\":\"\\ud800\"}\r\n{\"s\":\"ok\"}");
        assert!(bad.is_empty());
        assert_eq!(rows, vec![1, 2]);
        // A lone surrogate cannot be a Rust string: the value stays JSON text.
        assert_eq!(kinds(&batch), names_kinds(&[("s", "json")]));
        assert_eq!(
            strs(&batch, "s"),
            vec![Some(r#""\ud800""#.into()), Some(r#""ok""#.into())]
        );
        assert_eq!(encode(&batch), "{\"s\":\"\\ud800\"}\n{\"s\":\"ok\"}\n");
    }

    #[test]
    fn string_escaping_matches_serde_json() {
        let mut samples: Vec<String> = (0u32..0x80)
            .map(|c| char::from_u32(c).unwrap().to_string())
            .collect();
        samples.push(String::new());
        samples.push("a long string of more than eight bytes \"quoted\" \\ \u{1f} é 😀".into());
        samples.push("12345678\n12345678\"1234567\\".into());
        samples.push("x".repeat(63) + "\u{7}");
        for s in samples {
            let mut out = Vec::new();
            write_json_str(&mut out, &s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&s).unwrap()
            );
        }
    }

    #[test]
    fn big_numbers() {
        let (batch, _, bad) = decode(concat!(
            r#"{"max":9223372036854775807,"min":-9223372036854775808,"big":9223372036854775808,"huge":1e400,"neg0":-0}"#,
            "\n",
            r#"{"max":1,"min":2,"big":-123456789012345678901234567890,"huge":2,"neg0":5}"#,
        ));
        assert!(bad.is_empty());
        assert_eq!(
            kinds(&batch),
            names_kinds(&[
                ("max", "int"),
                ("min", "int"),
                ("big", "json"),
                ("huge", "json"),
                ("neg0", "int")
            ])
        );
        assert_eq!(
            batch.column(0).as_primitive::<Int64Type>().value(0),
            i64::MAX
        );
        assert_eq!(
            batch.column(1).as_primitive::<Int64Type>().value(0),
            i64::MIN
        );
        assert_eq!(
            strs(&batch, "big"),
            vec![
                Some("9223372036854775808".into()),
                Some("-123456789012345678901234567890".into())
            ]
        );
        let out = encode(&batch);
        assert!(out.starts_with(r#"{"max":9223372036854775807,"min":-9223372036854775808,"big":9223372036854775808,"huge":1e400,"neg0":0}"#));
    }

    #[test]
    fn bad_lines_blank_lines_and_line_numbers() {
        let input =
            "\n{\"a\":1}\n   \n{\"a\":\n[1,2]\n42\n\"s\"\n{\"a\":2} x\nnot json\n\t\n{\"a\":3}\r\n";
        let (batch, rows, bad) = decode(input);
        assert_eq!(rows, vec![2, 11]);
        assert_eq!(
            batch
                .column(0)
                .as_primitive::<Int64Type>()
                .values()
                .as_ref(),
            &[1, 3]
        );
        let got: Vec<(u64, &str, &str)> = bad
            .iter()
            .map(|b| (b.line, b.raw.as_str(), b.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    4,
                    "{\"a\":",
                    "invalid JSON: EOF while parsing a value at line 1 column 5"
                ),
                (5, "[1,2]", "not a JSON object"),
                (6, "42", "not a JSON object"),
                (7, "\"s\"", "not a JSON object"),
                (
                    8,
                    "{\"a\":2} x",
                    "invalid JSON: trailing characters at line 1 column 9"
                ),
                (
                    9,
                    "not json",
                    "invalid JSON: expected ident at line 1 column 2"
                ),
            ]
        );
        let (_, _, bad) = decode("[1,");
        assert!(
            bad[0].reason.starts_with("invalid JSON: "),
            "{}",
            bad[0].reason
        );
        let (_, _, bad) = decode("{1:2}");
        assert_eq!(
            bad[0].reason,
            "invalid JSON: key must be a string at line 1 column 2"
        );
    }

    #[test]
    fn empty_input() {
        for input in [vec![], vec![(1, ""), (2, "  ")], vec![(7, "oops")]] {
            let (batch, rows, _) = decode_json_lines(input);
            assert_eq!((batch.num_rows(), batch.num_columns()), (0, 0));
            assert!(rows.is_empty());
            assert_eq!(encode(&batch), "");
        }
        let header = vec!["a".to_string()];
        let (batch, rows, bad) = decode_csv_lines(&header, []);
        assert_eq!((batch.num_rows(), batch.num_columns()), (0, 0));
        assert!(rows.is_empty() && bad.is_empty());
    }

    #[test]
    fn deep_nesting_is_kept() {
        let deep = format!("{{\"d\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
        let (batch, _, bad) = decode(&deep);
        assert!(bad.is_empty());
        assert_eq!(encode(&batch), format!("{deep}\n"));
        let (_, _, bad) = decode(&"[".repeat(5000));
        assert!(bad[0].reason.starts_with("invalid JSON"));
    }

    #[test]
    fn float_formatting() {
        let samples = [
            12.0,
            0.1,
            -0.0,
            1e20,
            1e21,
            1.5e-7,
            123456.789,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        let batch = RecordBatch::try_from_iter([(
            "f",
            Arc::new(Float64Array::from(samples.to_vec())) as ArrayRef,
        )])
        .unwrap();
        let out = encode(&batch);
        for (line, v) in out.lines().zip(samples) {
            let expected = serde_json::to_string(&json!({ "f": v })).unwrap();
            assert_eq!(line, expected);
        }
        assert!(out.starts_with("{\"f\":12.0}\n{\"f\":0.1}\n{\"f\":-0.0}\n{\"f\":1e+20}\n"));
        assert!(out.ends_with("{\"f\":null}\n{\"f\":null}\n{\"f\":null}\n"));
    }

    #[test]
    fn encodes_typed_columns_and_json_documents() {
        let fields = vec![
            Field::new("i", DataType::Int64, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("s", DataType::Utf8, true),
            json_field("j"),
        ];
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            vec![
                Arc::new(Int64Array::from(vec![Some(i64::MIN), None, Some(0)])),
                Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
                Arc::new(StringArray::from(vec![Some("a\"b"), None, Some("")])),
                Arc::new(StringArray::from(vec![
                    Some("{\n  \"k\": [1,\r\n 2]\n}"),
                    Some(""),
                    None,
                ])),
            ],
        )
        .unwrap();
        let out = encode(&batch);
        assert_eq!(
            out,
            concat!(
                r#"{"i":-9223372036854775808,"b":true,"s":"a\"b","j":{   "k": [1,   2] }}"#,
                "\n",
                r#"{"b":false,"j":null}"#,
                "\n",
                r#"{"i":0,"s":""}"#,
                "\n",
            )
        );
        assert_eq!(row_to_json(&batch, 2), r#"{"i":0,"s":""}"#);
        assert_eq!(row_to_json(&batch, 3), "{}");
        // Escaped column names.
        let batch = RecordBatch::try_from_iter([(
            "a\"b\n",
            Arc::new(Int64Array::from(vec![1])) as ArrayRef,
        )])
        .unwrap();
        assert_eq!(row_to_json(&batch, 0), r#"{"a\"b\n":1}"#);
    }

    #[test]
    fn encodes_other_arrow_types_without_panicking() {
        use arrow::array::{Date32Array, Int32Array, NullArray, UInt64Array};
        let batch = RecordBatch::try_from_iter([
            (
                "i32",
                Arc::new(Int32Array::from(vec![Some(-5), None])) as ArrayRef,
            ),
            (
                "u64",
                Arc::new(UInt64Array::from(vec![u64::MAX, 1])) as ArrayRef,
            ),
            ("d", Arc::new(Date32Array::from(vec![0, 1])) as ArrayRef),
            ("n", Arc::new(NullArray::new(2)) as ArrayRef),
        ])
        .unwrap();
        assert_eq!(
            encode(&batch),
            concat!(
                r#"{"i32":-5,"u64":18446744073709551615,"d":"1970-01-01"}"#,
                "\n",
                r#"{"u64":1,"d":"1970-01-02"}"#,
                "\n"
            )
        );
    }

    #[test]
    fn decode_then_encode_preserves_values() {
        let input = concat!(
            r#"{"type":"bid","auction":1007,"price":25.5,"ok":true,"tags":["a",{"b":null}],"extra":""}"#,
            "\n",
            r#"{"type":"bid","auction":-1,"price":3,"ok":false,"tags":{},"extra":"x\u0000y"}"#,
        );
        let (batch, _, _) = decode(input);
        let out = encode(&batch);
        // Mixed integers and floats are kept as written (a JSON column).
        assert_eq!(values(&out), values(input));
    }

    #[test]
    fn csv_header() {
        assert_eq!(
            parse_csv_header("\u{feff}a,\"b,c\",\"d \"\"q\"\"\",\r").unwrap(),
            vec!["a", "b,c", "d \"q\"", ""]
        );
        assert!(
            parse_csv_header("a,b,a")
                .unwrap_err()
                .contains("duplicate column name `a`")
        );
        assert!(parse_csv_header("  ").is_err());
        assert!(parse_csv_header("a,\"b").is_err());
    }

    #[test]
    fn csv_quoting_types_and_bad_records() {
        let header = parse_csv_header("id,name,price,flag,zip,note").unwrap();
        let input = concat!(
            "1,\"Smith, J.\",1.5,true,007,\"say \"\"hi\"\"\"\n",
            "\n",
            "-2,,3,false,,plain\n",
            "3,x,2e3,,01234,\n",
            "4,too,few\n",
            "5,\"open,1,true,1,x\n",
            "9223372036854775807,é,-0.25,true,12,\"a\rb\"\r\n",
            "6,a,1,true,1,b\rc,d\n",
        );
        let (batch, rows, bad) = decode_csv_lines(&header, lines(input));
        assert_eq!(rows, vec![1, 3, 4, 7]);
        assert_eq!(
            kinds(&batch),
            names_kinds(&[
                ("id", "int"),
                ("name", "utf8"),
                ("price", "float"),
                ("flag", "bool"),
                ("zip", "utf8"),
                ("note", "utf8")
            ])
        );
        assert_eq!(
            batch
                .column(0)
                .as_primitive::<Int64Type>()
                .values()
                .as_ref(),
            &[1, -2, 3, i64::MAX]
        );
        assert_eq!(
            strs(&batch, "name"),
            vec![
                Some("Smith, J.".into()),
                None,
                Some("x".into()),
                Some("é".into())
            ]
        );
        assert_eq!(
            batch
                .column(2)
                .as_primitive::<Float64Type>()
                .values()
                .as_ref(),
            &[1.5, 3.0, 2000.0, -0.25]
        );
        let flag = batch.column(3).as_boolean();
        assert_eq!(
            flag.iter().collect::<Vec<_>>(),
            vec![Some(true), Some(false), None, Some(true)]
        );
        assert_eq!(
            strs(&batch, "zip"),
            vec![
                Some("007".into()),
                None,
                Some("01234".into()),
                Some("12".into())
            ]
        );
        assert_eq!(
            strs(&batch, "note"),
            vec![
                Some("say \"hi\"".into()),
                Some("plain".into()),
                None,
                Some("a\rb".into())
            ]
        );
        let got: Vec<(u64, &str)> = bad.iter().map(|b| (b.line, b.reason.as_str())).collect();
        assert_eq!(got[0], (5, "expected 6 fields, found 3"));
        assert_eq!(got[1].0, 6);
        assert!(got[1].1.starts_with("unterminated quoted field"));
        assert_eq!(got[2].0, 8);
        assert!(got[2].1.contains("carriage return"), "{}", got[2].1);
        assert_eq!(bad[0].raw, "4,too,few");
    }

    #[test]
    fn csv_inference_edges() {
        let header = vec![
            "a".to_string(),
            "b".into(),
            "c".into(),
            "d".into(),
            "e".into(),
        ];
        let input = "+5,-0,1,9007199254740993,\n5,1,2.5,0.5,\n";
        let (batch, _, bad) = decode_csv_lines(&header, lines(input));
        assert!(bad.is_empty());
        // "+5" and "-0" are not canonical; 2^53+1 cannot mix with floats exactly; an
        // all-empty column is Utf8.
        assert_eq!(
            kinds(&batch),
            names_kinds(&[
                ("a", "utf8"),
                ("b", "utf8"),
                ("c", "float"),
                ("d", "utf8"),
                ("e", "utf8")
            ])
        );
        assert_eq!(
            encode(&batch),
            "{\"a\":\"+5\",\"b\":\"-0\",\"c\":1.0,\"d\":\"9007199254740993\"}\n\
             {\"a\":\"5\",\"b\":\"1\",\"c\":2.5,\"d\":\"0.5\"}\n"
        );
        let (batch, _, _) = decode_csv_lines(&header[..1], lines("nan\ninf\n1.0"));
        assert_eq!(kinds(&batch), names_kinds(&[("a", "utf8")]));
        let (batch, _, _) = decode_csv_lines(&header[..1], lines("True\nfalse"));
        assert_eq!(kinds(&batch), names_kinds(&[("a", "utf8")]));
    }

    /// A small deterministic generator for the randomized tests.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as usize
        }
    }

    /// What a value classifies to, comparable across the two parsing paths.
    fn normalized(raw: &str, hint: Hint) -> String {
        let mut owned = Vec::new();
        match classify(raw, hint, &mut owned) {
            Some(Val::StrOwned(i)) => format!("owned {:?}", owned[i as usize]),
            Some(Val::Float(f)) => format!("float {}", f.to_bits()),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn fast_scanner_agrees_with_serde_json() {
        let seeds = [
            r#"{"type":"bid","auction":1007,"price":-25.5e-3,"ok":true,"no":false,"n":null,"url":"https://x/y?z=1","extra":""}"#,
            r#" { "a" : [1, {"b": "c\"d"}] , "e\u0066" : {"g":[]}, "h":"\u00e9\n\\", "i": -0, "j": 0.5E+7 } "#,
            r#"{"big":123456789012345678901234,"neg":-9223372036854775808,"pos":9223372036854775807,"x":1e400}"#,
            r#"{}"#,
            r#"{"k":"tab	inside","l":"é😀","m":[[[[]]]],"o":{"p":{"q":null}}}"#,
        ];
        let alphabet: Vec<char> = "{}[]\":,\\ \t0123456789.eE+-tfnulrsa/u\u{1}é😀x"
            .chars()
            .collect();
        let mut rng = Lcg(7);
        let (mut fast_ok, mut total) = (0, 0);
        for round in 0..30_000 {
            let mut chars: Vec<char> = seeds[round % seeds.len()].chars().collect();
            for _ in 0..1 + rng.next() % 3 {
                let at = rng.next() % (chars.len() + 1);
                let c = alphabet[rng.next() % alphabet.len()];
                match rng.next() % 4 {
                    0 if at < chars.len() => {
                        chars.remove(at);
                    }
                    1 if at < chars.len() => chars[at] = c,
                    2 => chars.truncate(at),
                    _ => chars.insert(at, c),
                }
            }
            let line: String = chars.into_iter().collect();
            let mut fast = Vec::new();
            let fast_result = scan_object(&line, &mut fast);
            let mut slow = Vec::new();
            let mut de = serde_json::Deserializer::from_str(&line);
            let slow_result = (&mut de)
                .deserialize_map(ObjectVisitor { fields: &mut slow })
                .and_then(|()| de.end());
            total += 1;
            if fast_result.is_none() {
                continue;
            }
            fast_ok += 1;
            assert!(slow_result.is_ok(), "fast path accepted invalid {line:?}");
            let view = |v: &[Entry<'_>]| -> Vec<(String, String, String)> {
                v.iter()
                    .map(|(k, raw, hint)| (k.to_string(), raw.to_string(), normalized(raw, *hint)))
                    .collect()
            };
            assert_eq!(view(&fast), view(&slow), "line {line:?}");
        }
        assert!(
            fast_ok > total / 20,
            "only {fast_ok} of {total} mutated lines parsed"
        );
    }

    #[test]
    fn next_escape_finds_the_first_byte() {
        let pool = [
            b'a', b'"', b'\\', 0x1f, 0x20, 0x7f, 0x80, 0xff, b'\n', b'0', 0x00, 0x21,
        ];
        let mut rng = Lcg(11);
        for _ in 0..20_000 {
            let len = rng.next() % 40;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.next().is_multiple_of(4) {
                        pool[rng.next() % pool.len()]
                    } else {
                        b'a' + (rng.next() % 26) as u8
                    }
                })
                .collect();
            let from = rng.next() % (len + 1);
            let expected = (from..len).find(|&i| ESCAPE[bytes[i] as usize] != 0);
            assert_eq!(next_escape(&bytes, from), expected, "{bytes:?} from {from}");
        }
    }

    #[test]
    fn csv_batch_splitting_agrees_with_one_reader_per_line() {
        let alphabet = ['a', 'b', ',', '"', '"', ' ', '\r', 'é'];
        let header: Vec<String> = vec!["x".into(), "y".into(), "z".into()];
        let mut rng = Lcg(3);
        let texts: Vec<String> = (0..3000)
            .map(|_| {
                let len = rng.next() % 12;
                (0..len)
                    .map(|_| alphabet[rng.next() % alphabet.len()])
                    .collect()
            })
            .collect();
        let input: Vec<(u64, &str)> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (i as u64 + 1, t.as_str()))
            .collect();
        let (batch, rows, bad) = decode_csv_lines(&header, input.iter().copied());
        let (mut expected_rows, mut expected_bad) = (Vec::new(), Vec::new());
        let mut expected_cells: Vec<Vec<Option<String>>> = vec![Vec::new(); 3];
        for &(line_no, text) in &input {
            let line = strip_line(text);
            if line.trim().is_empty() {
                continue;
            }
            let mut record = csv::StringRecord::new();
            match split_csv_line(line, &mut record) {
                Ok(()) if record.len() == 3 => {
                    expected_rows.push(line_no);
                    for (cells, cell) in expected_cells.iter_mut().zip(record.iter()) {
                        cells.push((!cell.is_empty()).then(|| cell.to_owned()));
                    }
                }
                _ => expected_bad.push(line_no),
            }
        }
        assert_eq!(rows, expected_rows);
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), expected_bad);
        assert!(rows.len() > 100 && bad.len() > 100);
        for (name, cells) in ["x", "y", "z"].iter().zip(expected_cells) {
            assert_eq!(strs(&batch, name), cells, "column {name}");
        }
    }
}
