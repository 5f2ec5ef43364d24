//! serde `Deserializer`s over one row of a column batch.
//!
//! A row reads as a map from column name to value; a null reads as an absent
//! field, so `Option` fields become `None` and required ones report
//! "missing field". Text values are lent, not copied: `&str` fields borrow
//! straight from the batch.

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;

use crate::abi::types::{Column, Values};
use crate::batch::{BatchView, FieldPlan, PlanRef, is_valid, text_at, text_in};
use crate::error::Error;

/// One record of a batch.
pub(crate) struct RowDeserializer<'v, 'a> {
    pub(crate) view: &'v BatchView<'a>,
    pub(crate) row: usize,
    /// Read a struct's fields by position instead of by name (see
    /// [`BatchView::record`]); fails, to be retried by name, whenever the
    /// two could differ.
    pub(crate) by_position: bool,
}

impl<'de> de::Deserializer<'de> for RowDeserializer<'_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let columns = self.view.batch().columns.iter().enumerate();
        visitor.visit_map(RowAccess {
            view: self.view,
            row: self.row,
            fields: Fields::All(columns),
            current: None,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let plan = self.view.plan_for(fields);
        if self.by_position {
            return by_position(self.row, &plan, visitor);
        }
        visitor.visit_map(RowAccess {
            view: self.view,
            row: self.row,
            fields: Fields::Named {
                names: fields,
                indices: plan,
                next: 0,
            },
            current: None,
        })
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// Reads a struct as the sequence of its fields' values, which skips serde's
/// per-field name matching. Only when every field has a non-null value, and
/// only while the struct's field list turns out to be one name per field
/// (aliases add names); any error means "read it by name", which also gives
/// the error its usual wording.
fn by_position<'de, V: Visitor<'de>>(
    row: usize,
    plan: &FieldPlan<'de>,
    visitor: V,
) -> Result<V::Value, Error> {
    if !plan.by_position.get() || !plan.all_valid(row) {
        return Err(Error::retry());
    }
    let mut seq = RowSeq { row, plan, next: 0 };
    match visitor.visit_seq(&mut seq) {
        Ok(value) if seq.next == plan.sources.len() => Ok(value),
        Ok(_) => {
            // Fewer values taken than names: the list holds aliases.
            plan.by_position.set(false);
            Err(Error::retry())
        }
        Err(e) => {
            plan.note_failure();
            Err(e)
        }
    }
}

/// A row's values in the order of a struct's fields.
struct RowSeq<'v, 'a> {
    row: usize,
    plan: &'v FieldPlan<'a>,
    next: usize,
}

impl<'de> SeqAccess<'de> for RowSeq<'_, 'de> {
    type Error = Error;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some(source) = self.plan.sources.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        seed.deserialize(CellDeserializer {
            column: source.column,
            checked: source.checked,
            row: self.row,
        })
        .map(Some)
    }
}

enum Fields<'v, 'a> {
    /// The fields a struct asks for, with their column indices.
    Named {
        names: &'static [&'static str],
        indices: PlanRef<'v, 'a>,
        next: usize,
    },
    /// Every column (maps, `serde_json::Value`).
    All(std::iter::Enumerate<std::slice::Iter<'a, Column>>),
}

struct RowAccess<'v, 'a> {
    view: &'v BatchView<'a>,
    row: usize,
    fields: Fields<'v, 'a>,
    current: Option<(&'a str, usize)>,
}

impl<'de> MapAccess<'de> for RowAccess<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        loop {
            let (name, index): (&'de str, usize) = match &mut self.fields {
                Fields::Named {
                    names,
                    indices,
                    next,
                } => {
                    let Some(name) = names.get(*next) else {
                        return Ok(None);
                    };
                    let index = indices.columns[*next];
                    *next += 1;
                    match index {
                        Some(index) => (name, index),
                        None => continue,
                    }
                }
                Fields::All(iter) => match iter.next() {
                    Some((index, column)) => (column.name.as_str(), index),
                    None => return Ok(None),
                },
            };
            if !is_valid(self.view.column(index), self.row) {
                continue;
            }
            self.current = Some((name, index));
            // Fields go by name, not by position: a struct's field list also
            // holds its aliases, so a position can name the wrong field.
            return seed
                .deserialize(BorrowedStrDeserializer::new(name))
                .map(Some);
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (name, index) = self
            .current
            .take()
            .ok_or_else(|| Error::new("value requested before its key"))?;
        seed.deserialize(CellDeserializer {
            column: self.view.column(index),
            checked: self.view.text_buffer(index),
            row: self.row,
        })
        .map_err(|e| e.in_field(name))
    }
}

/// One non-null value of a column.
pub(crate) struct CellDeserializer<'a> {
    pub(crate) column: &'a Column,
    /// The column's text buffer, already checked to be UTF-8.
    pub(crate) checked: Option<&'a str>,
    pub(crate) row: usize,
}

impl<'a> CellDeserializer<'a> {
    #[inline]
    fn json(&self) -> Result<Option<&'a str>, Error> {
        match &self.column.values {
            Values::Json(t) => text_in(t, self.checked, self.row).map(Some),
            _ => Ok(None),
        }
    }

    #[inline]
    fn is_json(&self) -> bool {
        matches!(self.column.values, Values::Json(_))
    }

    /// The general way to read a cell: a JSON cell with serde_json (by
    /// `read_json`), any other by its column's type. Out of line, so the
    /// typed cases stay small enough for serde's impls to inline them.
    #[cold]
    #[inline(never)]
    fn any_or_json<V: Visitor<'a>>(
        self,
        visitor: V,
        read_json: impl FnOnce(
            &mut serde_json::Deserializer<serde_json::de::StrRead<'a>>,
            V,
        ) -> Result<V::Value, serde_json::Error>,
    ) -> Result<V::Value, Error> {
        match self.json()? {
            Some(doc) => Ok(read_json(
                &mut serde_json::Deserializer::from_str(doc),
                visitor,
            )?),
            None => de::Deserializer::deserialize_any(self, visitor),
        }
    }

    #[cold]
    #[inline(never)]
    fn shorter_than_batch(&self) -> Error {
        Error::new(format!(
            "column `{}` is shorter than the batch",
            self.column.name
        ))
    }
}

macro_rules! via_json_or_any {
    ($($method:ident)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.any_or_json(visitor, |d, v| de::Deserializer::$method(d, v))
        }
    )*};
}

macro_rules! typed_or_any {
    ($($method:ident: $variant:ident => $visit:ident;)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            if let Values::$variant(v) = &self.column.values
                && let Some(x) = v.get(self.row)
            {
                return visitor.$visit(*x);
            }
            self.any_or_json(visitor, |d, v| de::Deserializer::$method(d, v))
        }
    )*};
}

macro_rules! text_or_any {
    ($($method:ident)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            if let Values::Utf8(t) = &self.column.values
                && let Some(s) = text_at(t, self.checked, self.row)
            {
                return visitor.visit_borrowed_str(s);
            }
            self.any_or_json(visitor, |d, v| de::Deserializer::$method(d, v))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for CellDeserializer<'de> {
    type Error = Error;

    #[inline]
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let row = self.row;
        match &self.column.values {
            Values::Int64(v) => match v.get(row) {
                Some(x) => visitor.visit_i64(*x),
                None => Err(self.shorter_than_batch()),
            },
            Values::Float64(v) => match v.get(row) {
                Some(x) => visitor.visit_f64(*x),
                None => Err(self.shorter_than_batch()),
            },
            Values::Boolean(v) => match v.get(row) {
                Some(x) => visitor.visit_bool(*x),
                None => Err(self.shorter_than_batch()),
            },
            Values::Utf8(t) => visitor.visit_borrowed_str(text_in(t, self.checked, row)?),
            Values::Json(_) => {
                self.any_or_json(visitor, |d, v| de::Deserializer::deserialize_any(d, v))
            }
        }
    }

    #[inline]
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.is_json() {
            return self.any_or_json(visitor, |d, v| de::Deserializer::deserialize_option(d, v));
        }
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.column.values {
            Values::Utf8(t) => {
                visitor.visit_enum(text_in(t, self.checked, self.row)?.into_deserializer())
            }
            Values::Json(t) => Ok(de::Deserializer::deserialize_enum(
                &mut serde_json::Deserializer::from_str(text_in(t, self.checked, self.row)?),
                name,
                variants,
                visitor,
            )?),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.column.values {
            Values::Utf8(t) => {
                visitor.visit_borrowed_bytes(text_in(t, self.checked, self.row)?.as_bytes())
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    // The column type a field most likely has is read inline; anything
    // else (another type, JSON, an error) goes the general way, out of line.
    typed_or_any! {
        deserialize_bool: Boolean => visit_bool;
        deserialize_i8: Int64 => visit_i64;
        deserialize_i16: Int64 => visit_i64;
        deserialize_i32: Int64 => visit_i64;
        deserialize_i64: Int64 => visit_i64;
        deserialize_u8: Int64 => visit_i64;
        deserialize_u16: Int64 => visit_i64;
        deserialize_u32: Int64 => visit_i64;
        deserialize_u64: Int64 => visit_i64;
        deserialize_f32: Float64 => visit_f64;
        deserialize_f64: Float64 => visit_f64;
    }
    text_or_any! {
        deserialize_char deserialize_str deserialize_string
    }
    via_json_or_any! {
        deserialize_unit deserialize_seq deserialize_map deserialize_identifier
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.json()? {
            Some(doc) => Ok(de::Deserializer::deserialize_struct(
                &mut serde_json::Deserializer::from_str(doc),
                name,
                fields,
                visitor,
            )?),
            None => self.deserialize_any(visitor),
        }
    }
}
