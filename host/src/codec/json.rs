//! JSON Lines into Arrow: a scanner that classifies each field's values without building a
//! JSON tree, then one typed column per field.

use super::scan::*;
use super::*;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, BooleanBufferBuilder, Float64Array, Int64Array, StringArray,
    StringBuilder,
};
use arrow::buffer::{BooleanBuffer, NullBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A classified non-null JSON value.
#[derive(Clone, Copy, Debug)]
pub(super) enum Val {
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
pub(super) struct ObjectVisitor<'b, 'a> {
    pub(super) fields: &'b mut Vec<Entry<'a>>,
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
pub(super) type Entry<'a> = (Cow<'a, str>, &'a str, Hint);

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
pub(super) enum Hint {
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
pub(super) fn scan_object<'a>(text: &'a str, fields: &mut Vec<Entry<'a>>) -> Option<()> {
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
pub(super) fn classify(raw: &str, hint: Hint, owned: &mut Vec<String>) -> Option<Val> {
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

pub(super) fn check_len(values: usize, nulls: &Option<NullBuffer>) -> Result<(), ArrowError> {
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
