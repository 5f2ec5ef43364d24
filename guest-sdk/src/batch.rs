//! Read access to an input batch, row by row, without copying its columns.

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;

use crate::abi::types::{Batch, Column, TextValues, Values};
use crate::de::RowDeserializer;
use crate::error::Error;

/// How the fields of one struct type map to a batch's columns.
pub(crate) struct FieldPlan<'a> {
    /// The address of serde's `&'static [&'static str]` field list.
    key: usize,
    /// The column index of each field name.
    pub(crate) columns: Box<[Option<usize>]>,
    /// The same columns, each with its checked text buffer: what reading a
    /// row by position needs, looked up once per batch.
    pub(crate) sources: Box<[CellSource<'a>]>,
    /// Whether rows may still be read by position (see `de::by_position`):
    /// every field has a column and no reason to stop has been seen.
    pub(crate) by_position: Cell<bool>,
    failures: Cell<u32>,
}

/// A column and, for a text column, its whole buffer checked to be UTF-8.
#[derive(Clone, Copy)]
pub(crate) struct CellSource<'a> {
    pub(crate) column: &'a Column,
    pub(crate) checked: Option<&'a str>,
}

impl FieldPlan<'_> {
    /// Whether every field's value in `row` is non-null.
    #[inline]
    pub(crate) fn all_valid(&self, row: usize) -> bool {
        self.sources.iter().all(|s| is_valid(s.column, row))
    }

    /// Counts a record that could not be read by position; after a few,
    /// the rest of the batch is read by name straight away (a type that
    /// cannot be read as a sequence, or a batch of bad records).
    pub(crate) fn note_failure(&self) {
        let failures = self.failures.get() + 1;
        self.failures.set(failures);
        if failures >= 8 {
            self.by_position.set(false);
        }
    }
}

/// A [`FieldPlan`] lent by a [`BatchView`]: the batch's first record type
/// without reference counting, any other shared.
pub(crate) enum PlanRef<'v, 'a> {
    First(&'v FieldPlan<'a>),
    Other(Rc<FieldPlan<'a>>),
}

impl<'a> std::ops::Deref for PlanRef<'_, 'a> {
    type Target = FieldPlan<'a>;
    fn deref(&self) -> &FieldPlan<'a> {
        match self {
            PlanRef::First(plan) => plan,
            PlanRef::Other(plan) => plan,
        }
    }
}

/// An input batch with the lookups that turn its rows into typed records.
pub struct BatchView<'a> {
    batch: &'a Batch,
    /// Each text column's whole byte buffer as `&str`, checked once per
    /// batch, so a row's value is a slice without a UTF-8 check of its own.
    /// Filled on first use: columns no record type reads are never checked.
    texts: Vec<OnceCell<Option<&'a str>>>,
    /// Column indices for the field list of the struct last deserialized,
    /// keyed by the address of serde's `&'static [&'static str]` field list:
    /// every row of one batch asks for the same fields, so the name lookup is
    /// done once per batch, not once per record.
    first_plan: OnceCell<FieldPlan<'a>>,
    /// The plan of a second record type read from the same batch (rare).
    other_plan: RefCell<Option<Rc<FieldPlan<'a>>>>,
}

impl<'a> BatchView<'a> {
    /// Wraps a batch.
    pub fn new(batch: &'a Batch) -> Self {
        let texts = batch.columns.iter().map(|_| OnceCell::new()).collect();
        Self {
            batch,
            texts,
            first_plan: OnceCell::new(),
            other_plan: RefCell::new(None),
        }
    }

    /// The number of records.
    pub fn rows(&self) -> usize {
        self.batch.rows as usize
    }

    /// The batch itself.
    pub fn batch(&self) -> &'a Batch {
        self.batch
    }

    /// Deserializes record `row` into `T`.
    ///
    /// A struct is first read by position, the fast way, and read again by
    /// name when that fails: the two agree whenever the first succeeds.
    ///
    /// # Errors
    /// When the record does not match `T`: a missing field, a wrong type.
    pub fn record<T: serde::Deserialize<'a>>(&self, row: usize) -> Result<T, Error> {
        if let Ok(record) = T::deserialize(RowDeserializer {
            view: self,
            row,
            by_position: true,
        }) {
            return Ok(record);
        }
        T::deserialize(RowDeserializer {
            view: self,
            row,
            by_position: false,
        })
    }

    /// The column of each of `fields`, worked out once per field list.
    #[inline]
    pub(crate) fn plan_for(&self, fields: &'static [&'static str]) -> PlanRef<'_, 'a> {
        let key = fields.as_ptr() as usize;
        let first = self.first_plan.get_or_init(|| self.new_plan(fields));
        if first.key == key {
            return PlanRef::First(first);
        }
        let mut other = self.other_plan.borrow_mut();
        match other.as_ref() {
            Some(plan) if plan.key == key => PlanRef::Other(Rc::clone(plan)),
            _ => {
                let plan = Rc::new(self.new_plan(fields));
                *other = Some(Rc::clone(&plan));
                PlanRef::Other(plan)
            }
        }
    }

    fn new_plan(&self, fields: &'static [&'static str]) -> FieldPlan<'a> {
        let columns: Box<[Option<usize>]> = fields
            .iter()
            .map(|f| self.batch.columns.iter().position(|c| c.name == *f))
            .collect();
        // By position only when every field has a column.
        let sources: Box<[CellSource<'a>]> = columns
            .iter()
            .map_while(|c| {
                c.map(|index| CellSource {
                    column: self.column(index),
                    checked: self.text_buffer(index),
                })
            })
            .collect();
        FieldPlan {
            key: fields.as_ptr() as usize,
            by_position: Cell::new(sources.len() == columns.len()),
            columns,
            sources,
            failures: Cell::new(0),
        }
    }

    pub(crate) fn column(&self, index: usize) -> &'a Column {
        &self.batch.columns[index]
    }

    #[cold]
    #[inline(never)]
    fn check_text(&self, index: usize, cell: &OnceCell<Option<&'a str>>) -> Option<&'a str> {
        let checked = match &self.batch.columns.get(index)?.values {
            Values::Utf8(t) | Values::Json(t) => std::str::from_utf8(&t.bytes).ok(),
            _ => None,
        };
        *cell.get_or_init(|| checked)
    }

    /// The checked text buffer of column `index`, if it is a valid text column.
    #[inline]
    pub(crate) fn text_buffer(&self, index: usize) -> Option<&'a str> {
        let cell = self.texts.get(index)?;
        match cell.get() {
            Some(checked) => *checked,
            None => self.check_text(index, cell),
        }
    }
}

/// Whether row `row` of `column` holds a value.
#[inline]
pub(crate) fn is_valid(column: &Column, row: usize) -> bool {
    match &column.validity {
        None => true,
        Some(bits) => bits
            .get(row / 8)
            .is_some_and(|byte| byte & (1 << (row % 8)) != 0),
    }
}

/// Value `row` of a text column whose whole buffer `checked` is known to be
/// UTF-8 (slicing checks the char boundaries); `None` when that fails.
#[inline(always)]
pub(crate) fn text_at<'a>(
    values: &'a TextValues,
    checked: Option<&'a str>,
    row: usize,
) -> Option<&'a str> {
    let start = *values.offsets.get(row)? as usize;
    let end = *values.offsets.get(row + 1)? as usize;
    checked?.get(start..end)
}

/// [`text_at`], or the value checked on its own when that fails (with an
/// error when it is not text).
#[inline(always)]
pub(crate) fn text_in<'a>(
    values: &'a TextValues,
    checked: Option<&'a str>,
    row: usize,
) -> Result<&'a str, Error> {
    match text_at(values, checked, row) {
        Some(s) => Ok(s),
        None => text(values, row),
    }
}

/// Value `row` of a text column, or an error when the host sent bad offsets.
#[cold]
pub(crate) fn text(values: &TextValues, row: usize) -> Result<&str, Error> {
    let start = values.offsets.get(row).copied().unwrap_or(0) as usize;
    let end = values.offsets.get(row + 1).copied().unwrap_or(0) as usize;
    let bytes = values
        .bytes
        .get(start..end)
        .ok_or_else(|| Error::new(format!("text offsets out of range at row {row}")))?;
    std::str::from_utf8(bytes).map_err(|e| Error::new(format!("invalid UTF-8 at row {row}: {e}")))
}
