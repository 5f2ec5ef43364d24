//! A serde `Serializer` that appends records to column builders.
//!
//! Each top-level field becomes a column named after it. Scalars keep their
//! type (integers, floats, booleans, text); nested values (structs, lists,
//! maps) are stored as JSON documents. A column whose values change type
//! within one batch becomes a JSON column, so nothing is ever lost.

use serde::ser::{self, Impossible, Serialize, SerializeMap, SerializeStruct};

use crate::abi::types::{Batch, Column, TextValues, Values};
use crate::error::Error;

/// Builds one output batch from records.
#[derive(Default)]
pub(crate) struct BatchBuilder {
    columns: Vec<ColumnBuilder>,
    rows: usize,
}

impl BatchBuilder {
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Appends one record. On error nothing of the record is kept.
    pub(crate) fn append<T: Serialize + ?Sized>(&mut self, record: &T) -> Result<(), Error> {
        let result = record.serialize(RowSerializer {
            builder: self,
            cursor: 0,
            pending_key: None,
        });
        let rows = self.rows;
        match result {
            Ok(()) => {
                for column in &mut self.columns {
                    if column.len == rows {
                        column.push_null();
                    }
                }
                self.rows += 1;
                Ok(())
            }
            Err(e) => {
                for column in &mut self.columns {
                    column.truncate(rows);
                }
                Err(e)
            }
        }
    }

    /// Drops every record after the first `rows`.
    pub(crate) fn truncate(&mut self, rows: usize) {
        if rows >= self.rows {
            return;
        }
        for column in &mut self.columns {
            column.truncate(rows);
        }
        self.rows = rows;
    }

    pub(crate) fn finish(self) -> Batch {
        Batch {
            rows: self.rows as u32,
            columns: self
                .columns
                .into_iter()
                .map(ColumnBuilder::finish)
                .collect(),
        }
    }

    /// The column for field `name` of the current row; `cursor` is the
    /// position the next field most likely has (records of one type list
    /// their fields in the same order).
    #[inline(always)]
    fn column(
        &mut self,
        name: FieldName<'_>,
        cursor: &mut usize,
    ) -> Result<&mut ColumnBuilder, Error> {
        let index = match self.columns.get(*cursor) {
            Some(c) if c.is_named(name) => *cursor,
            _ => self.find_or_add(name),
        };
        *cursor = index + 1;
        let rows = self.rows;
        let column = &mut self.columns[index];
        if column.len > rows {
            return Err(Error::new(format!(
                "field `{}` is written twice",
                name.as_str()
            )));
        }
        Ok(column)
    }

    /// The index of the column for `name`, added if it is new (the first
    /// records of a batch, or fields out of their usual order).
    #[cold]
    #[inline(never)]
    fn find_or_add(&mut self, name: FieldName<'_>) -> usize {
        let index = match self.columns.iter().position(|c| c.is_named(name)) {
            Some(i) => i,
            None => {
                self.columns
                    .push(ColumnBuilder::new(name.as_str(), self.rows));
                self.columns.len() - 1
            }
        };
        if let FieldName::Static(name) = name {
            self.columns[index].static_name = name.as_ptr() as usize;
        }
        index
    }
}

enum Data {
    /// No value yet (only nulls): the type is chosen by the first value.
    Unset,
    Int64(Vec<i64>),
    Float64(Vec<f64>),
    Boolean(Vec<bool>),
    Utf8(TextBuilder),
    Json(TextBuilder),
}

#[derive(Default)]
struct TextBuilder {
    offsets: Vec<i32>,
    bytes: Vec<u8>,
}

impl TextBuilder {
    fn with_nulls(n: usize) -> Self {
        Self {
            offsets: vec![0; n + 1],
            bytes: Vec::new(),
        }
    }
    fn push(&mut self, s: &[u8]) {
        self.bytes.extend_from_slice(s);
        self.offsets.push(self.bytes.len() as i32);
    }
    fn truncate(&mut self, len: usize) {
        self.offsets.truncate(len + 1);
        let end = self.offsets.last().copied().unwrap_or(0) as usize;
        self.bytes.truncate(end);
    }
}

/// A scalar value on its way into a column.
enum Scalar<'a> {
    Null,
    Int64(i64),
    Float64(f64),
    Boolean(bool),
    Text(&'a str),
}

/// A field's name: a struct's (`&'static str`, which can be recognised by its
/// address) or a map's key.
#[derive(Clone, Copy)]
enum FieldName<'a> {
    Static(&'static str),
    Key(&'a str),
}

impl FieldName<'_> {
    fn as_str(&self) -> &str {
        match self {
            FieldName::Static(s) => s,
            FieldName::Key(s) => s,
        }
    }
}

struct ColumnBuilder {
    name: String,
    /// The address of a struct field name equal to `name`, so that the next
    /// record of the same type finds its column without comparing strings
    /// (Wasm's `memcmp` goes byte by byte); 0 until one is seen.
    static_name: usize,
    data: Data,
    /// Validity bits, one per row; only materialised once a null appears.
    validity: Option<Vec<u8>>,
    len: usize,
}

impl ColumnBuilder {
    fn new(name: &str, nulls_before: usize) -> Self {
        let mut column = Self {
            name: name.to_owned(),
            static_name: 0,
            data: Data::Unset,
            validity: None,
            len: 0,
        };
        for _ in 0..nulls_before {
            column.push_null();
        }
        column
    }

    /// Whether this is the column of field `name`. A `&'static str` at a
    /// given address always holds the same text, so an address match is
    /// enough; map keys are compared by content.
    #[inline]
    fn is_named(&self, name: FieldName<'_>) -> bool {
        match name {
            FieldName::Static(s) if s.as_ptr() as usize == self.static_name => {
                s.len() == self.name.len()
            }
            _ => self.name == name.as_str(),
        }
    }

    #[inline]
    fn set_valid(&mut self, valid: bool) {
        if valid && self.validity.is_none() {
            self.len += 1;
            return;
        }
        self.set_validity_bit(valid);
    }

    /// `set_valid` once the column has had a null (out of line, so that
    /// columns without nulls, the common case, inline a small push).
    #[inline(never)]
    fn set_validity_bit(&mut self, valid: bool) {
        let row = self.len;
        if !valid && self.validity.is_none() {
            let mut bits = vec![0xffu8; row.div_ceil(8).max(1)];
            if !row.is_multiple_of(8) {
                let last = bits.len() - 1;
                bits[last] = (1u8 << (row % 8)) - 1;
            } else if row == 0 {
                bits[0] = 0;
            }
            self.validity = Some(bits);
        }
        if let Some(bits) = &mut self.validity {
            if bits.len() <= row / 8 {
                bits.push(0);
            }
            if valid {
                bits[row / 8] |= 1 << (row % 8);
            } else {
                bits[row / 8] &= !(1 << (row % 8));
            }
        }
        self.len += 1;
    }

    fn push_null(&mut self) {
        match &mut self.data {
            Data::Unset => {}
            Data::Int64(v) => v.push(0),
            Data::Float64(v) => v.push(0.0),
            Data::Boolean(v) => v.push(false),
            Data::Utf8(t) | Data::Json(t) => t.push(b""),
        }
        self.set_valid(false);
    }

    #[inline(always)]
    fn push(&mut self, value: Scalar<'_>) {
        if let Scalar::Null = value {
            return self.push_null();
        }
        if let Data::Unset = self.data {
            let n = self.len;
            self.data = match value {
                Scalar::Int64(_) => Data::Int64(vec![0; n]),
                Scalar::Float64(_) => Data::Float64(vec![0.0; n]),
                Scalar::Boolean(_) => Data::Boolean(vec![false; n]),
                Scalar::Text(_) | Scalar::Null => Data::Utf8(TextBuilder::with_nulls(n)),
            };
        }
        match (&mut self.data, value) {
            (Data::Int64(v), Scalar::Int64(x)) => v.push(x),
            (Data::Float64(v), Scalar::Float64(x)) => v.push(x),
            (Data::Boolean(v), Scalar::Boolean(x)) => v.push(x),
            (Data::Utf8(t), Scalar::Text(s)) => t.push(s.as_bytes()),
            (_, value) => self.push_as_json(value),
        }
        self.set_valid(true);
    }

    /// A value of another type than the column's so far: the column becomes
    /// JSON (rare, so out of line).
    #[cold]
    #[inline(never)]
    fn push_as_json(&mut self, value: Scalar<'_>) {
        let json = self.as_json();
        match value {
            Scalar::Int64(x) => json.push(x.to_string().as_bytes()),
            Scalar::Float64(x) => json.push(float_json(x).as_bytes()),
            Scalar::Boolean(x) => json.push(if x { b"true" } else { b"false" }),
            Scalar::Text(s) => json.push(json_string(s).as_bytes()),
            Scalar::Null => json.push(b"null"),
        }
    }

    /// Appends one JSON document (a nested value).
    fn push_json(&mut self, doc: &[u8]) {
        self.as_json().push(doc);
        self.set_valid(true);
    }

    /// Converts the column to JSON documents (on a type change) and returns it.
    fn as_json(&mut self) -> &mut TextBuilder {
        if !matches!(self.data, Data::Json(_)) {
            let n = self.len;
            let mut json = TextBuilder::with_nulls(0);
            let valid = |row: usize| match &self.validity {
                None => true,
                Some(bits) => bits[row / 8] & (1 << (row % 8)) != 0,
            };
            for row in 0..n {
                if !valid(row) {
                    json.push(b"");
                    continue;
                }
                match &self.data {
                    Data::Unset => json.push(b""),
                    Data::Int64(v) => json.push(v[row].to_string().as_bytes()),
                    Data::Float64(v) => json.push(float_json(v[row]).as_bytes()),
                    Data::Boolean(v) => json.push(if v[row] { b"true" } else { b"false" }),
                    Data::Utf8(t) => {
                        let s = &t.bytes[t.offsets[row] as usize..t.offsets[row + 1] as usize];
                        json.push(json_string(&String::from_utf8_lossy(s)).as_bytes())
                    }
                    Data::Json(_) => unreachable!("checked above"),
                }
            }
            self.data = Data::Json(json);
        }
        match &mut self.data {
            Data::Json(t) => t,
            _ => unreachable!("just converted"),
        }
    }

    fn truncate(&mut self, len: usize) {
        if self.len <= len {
            return;
        }
        match &mut self.data {
            Data::Unset => {}
            Data::Int64(v) => v.truncate(len),
            Data::Float64(v) => v.truncate(len),
            Data::Boolean(v) => v.truncate(len),
            Data::Utf8(t) | Data::Json(t) => t.truncate(len),
        }
        if let Some(bits) = &mut self.validity {
            bits.truncate(len.div_ceil(8));
        }
        self.len = len;
    }

    fn finish(self) -> Column {
        let values = match self.data {
            Data::Unset => Values::Json(TextValues {
                offsets: vec![0; self.len + 1],
                bytes: Vec::new(),
            }),
            Data::Int64(v) => Values::Int64(v),
            Data::Float64(v) => Values::Float64(v),
            Data::Boolean(v) => Values::Boolean(v),
            Data::Utf8(t) => Values::Utf8(TextValues {
                offsets: t.offsets,
                bytes: t.bytes,
            }),
            Data::Json(t) => Values::Json(TextValues {
                offsets: t.offsets,
                bytes: t.bytes,
            }),
        };
        Column {
            name: self.name,
            values,
            validity: self.validity,
        }
    }
}

fn float_json(x: f64) -> String {
    serde_json::to_string(&x).unwrap_or_else(|_| "null".to_owned())
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// Serializes one record: a struct or a map with string keys.
struct RowSerializer<'b> {
    builder: &'b mut BatchBuilder,
    cursor: usize,
    pending_key: Option<String>,
}

impl RowSerializer<'_> {
    #[inline]
    fn field<T: Serialize + ?Sized>(
        &mut self,
        name: FieldName<'_>,
        value: &T,
    ) -> Result<(), Error> {
        let key = name.as_str();
        let column = self.builder.column(name, &mut self.cursor)?;
        match value.serialize(CellSerializer {
            column: &mut *column,
        }) {
            Ok(()) => {}
            Err(NotScalar::Nested) => push_nested(column, key, value)?,
            Err(NotScalar::Failed(e)) => return Err(e.in_field(key)),
        }
        Ok(())
    }
}

/// A nested value (struct, list, map) as a JSON document; out of line, so
/// the scalar cases of each field stay small.
#[cold]
#[inline(never)]
fn push_nested<T: Serialize + ?Sized>(
    column: &mut ColumnBuilder,
    key: &str,
    value: &T,
) -> Result<(), Error> {
    let doc = serde_json::to_vec(value).map_err(|e| Error::from(e).in_field(key))?;
    column.push_json(&doc);
    Ok(())
}

fn not_a_record(what: &str) -> Error {
    Error::new(format!(
        "an operator must emit a struct or a map with string keys, not {what}"
    ))
}

macro_rules! reject_non_records {
    ($($method:ident($($arg:ty),*) => $what:literal;)*) => {$(
        fn $method(self, $(_: $arg),*) -> Result<Self::Ok, Error> {
            Err(not_a_record($what))
        }
    )*};
}

impl<'b> ser::Serializer for RowSerializer<'b> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), Error>;

    reject_non_records! {
        serialize_bool(bool) => "a bool";
        serialize_i8(i8) => "an integer";
        serialize_i16(i16) => "an integer";
        serialize_i32(i32) => "an integer";
        serialize_i64(i64) => "an integer";
        serialize_u8(u8) => "an integer";
        serialize_u16(u16) => "an integer";
        serialize_u32(u32) => "an integer";
        serialize_u64(u64) => "an integer";
        serialize_f32(f32) => "a float";
        serialize_f64(f64) => "a float";
        serialize_char(char) => "a char";
        serialize_str(&str) => "a string";
        serialize_bytes(&[u8]) => "bytes";
        serialize_none() => "`None`";
        serialize_unit() => "`()`";
        serialize_unit_struct(&'static str) => "a unit struct";
        serialize_unit_variant(&'static str, u32, &'static str) => "an enum";
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        Err(not_a_record("an enum"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(not_a_record("a list"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(not_a_record("a tuple"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(not_a_record("a tuple struct"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(not_a_record("an enum"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, Error> {
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(not_a_record("an enum"))
    }
}

impl SerializeStruct for RowSerializer<'_> {
    type Ok = ();
    type Error = Error;
    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(FieldName::Static(key), value)
    }
    fn end(self) -> Result<(), Error> {
        Ok(())
    }
}

impl SerializeMap for RowSerializer<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.pending_key = Some(match serde_json::to_value(key)? {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(Error::new("map keys of an emitted record must be strings")),
        });
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .pending_key
            .take()
            .ok_or_else(|| Error::new("map value without a key"))?;
        self.field(FieldName::Key(&key), value)
    }
    fn end(self) -> Result<(), Error> {
        Ok(())
    }
}

/// Why a value is not stored as a scalar.
enum NotScalar {
    /// A nested value: store it as a JSON document.
    Nested,
    Failed(Error),
}

impl ser::Error for NotScalar {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        NotScalar::Failed(Error::new(msg.to_string()))
    }
}
impl std::fmt::Display for NotScalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotScalar::Nested => f.write_str("nested value"),
            NotScalar::Failed(e) => e.fmt(f),
        }
    }
}
impl std::fmt::Debug for NotScalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
impl std::error::Error for NotScalar {}

/// Pushes a field value into its column, or says it is nested.
struct CellSerializer<'c> {
    column: &'c mut ColumnBuilder,
}

impl CellSerializer<'_> {
    #[inline(always)]
    fn put(self, value: Scalar<'_>) -> Result<(), NotScalar> {
        self.column.push(value);
        Ok(())
    }
}

impl ser::Serializer for CellSerializer<'_> {
    type Ok = ();
    type Error = NotScalar;
    type SerializeSeq = Impossible<(), NotScalar>;
    type SerializeTuple = Impossible<(), NotScalar>;
    type SerializeTupleStruct = Impossible<(), NotScalar>;
    type SerializeTupleVariant = Impossible<(), NotScalar>;
    type SerializeMap = Impossible<(), NotScalar>;
    type SerializeStruct = Impossible<(), NotScalar>;
    type SerializeStructVariant = Impossible<(), NotScalar>;

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), NotScalar> {
        self.put(Scalar::Boolean(v))
    }
    #[inline]
    fn serialize_i8(self, v: i8) -> Result<(), NotScalar> {
        self.put(Scalar::Int64(v.into()))
    }
    #[inline]
    fn serialize_i16(self, v: i16) -> Result<(), NotScalar> {
        self.put(Scalar::Int64(v.into()))
    }
    #[inline]
    fn serialize_i32(self, v: i32) -> Result<(), NotScalar> {
        self.put(Scalar::Int64(v.into()))
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> Result<(), NotScalar> {
        self.put(Scalar::Int64(v))
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> Result<(), NotScalar> {
        self.put(Scalar::Int64(v.into()))
    }
    #[inline]
    fn serialize_u16(self, v: u16) -> Result<(), NotScalar> {
        self.put(Scalar::Int64(v.into()))
    }
    #[inline]
    fn serialize_u32(self, v: u32) -> Result<(), NotScalar> {
        self.put(Scalar::Int64(v.into()))
    }
    #[inline]
    fn serialize_u64(self, v: u64) -> Result<(), NotScalar> {
        // Beyond i64 the exact value is kept as a JSON number.
        match i64::try_from(v) {
            Ok(v) => self.put(Scalar::Int64(v)),
            Err(_) => Err(NotScalar::Nested),
        }
    }
    #[inline]
    fn serialize_f32(self, v: f32) -> Result<(), NotScalar> {
        self.put(Scalar::Float64(v.into()))
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<(), NotScalar> {
        self.put(Scalar::Float64(v))
    }
    #[inline]
    fn serialize_char(self, v: char) -> Result<(), NotScalar> {
        self.put(Scalar::Text(v.encode_utf8(&mut [0; 4])))
    }
    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), NotScalar> {
        self.put(Scalar::Text(v))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), NotScalar> {
        Err(NotScalar::Nested)
    }
    #[inline]
    fn serialize_none(self) -> Result<(), NotScalar> {
        self.put(Scalar::Null)
    }
    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), NotScalar> {
        value.serialize(self)
    }
    #[inline]
    fn serialize_unit(self) -> Result<(), NotScalar> {
        self.put(Scalar::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), NotScalar> {
        self.put(Scalar::Null)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), NotScalar> {
        self.put(Scalar::Text(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), NotScalar> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), NotScalar> {
        Err(NotScalar::Nested)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotScalar> {
        Err(NotScalar::Nested)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotScalar> {
        Err(NotScalar::Nested)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, NotScalar> {
        Err(NotScalar::Nested)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotScalar> {
        Err(NotScalar::Nested)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotScalar> {
        Err(NotScalar::Nested)
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, NotScalar> {
        Err(NotScalar::Nested)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotScalar> {
        Err(NotScalar::Nested)
    }
}
