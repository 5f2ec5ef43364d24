//! Arrow record batches to and from the WIT batch shape.
//!
//! Going in, columns are lent to the canonical ABI as slices of the Arrow
//! buffers, so each column is copied once, straight into guest memory. Coming
//! out, the lifted `Vec`s become Arrow buffers without another copy.

use anyhow::{Result, anyhow, bail, ensure};
use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use std::sync::Arc;
use wasmtime::component::{ComponentType, Lower};

use super::bindings::types;
use crate::codec::{is_json_field, json_field};

/// A batch as the `process` export takes it, borrowing the Arrow buffers.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct BatchArg<'a> {
    rows: u32,
    columns: Vec<ColumnArg<'a>>,
}

/// One column of a [`BatchArg`].
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct ColumnArg<'a> {
    name: &'a str,
    values: ValuesArg<'a>,
    validity: Option<&'a [u8]>,
}

/// The values of a [`ColumnArg`].
#[derive(ComponentType, Lower)]
#[component(variant)]
pub enum ValuesArg<'a> {
    #[component(name = "int64")]
    Int64(&'a [i64]),
    #[component(name = "float64")]
    Float64(&'a [f64]),
    #[component(name = "boolean")]
    Boolean(Vec<bool>),
    #[component(name = "utf8")]
    Utf8(TextArg<'a>),
    #[component(name = "json")]
    Json(TextArg<'a>),
}

/// A text column of a [`ValuesArg`].
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct TextArg<'a> {
    offsets: &'a [i32],
    bytes: &'a [u8],
}

/// One key of a batch given to a keyed operator, borrowing its rows and state.
#[derive(ComponentType, Lower, Clone, Copy)]
#[component(record)]
pub struct KeyGroupArg<'a> {
    /// The key as text.
    pub key: &'a str,
    /// The key's rows in the batch, in arrival order.
    pub rows: &'a [u32],
    /// The key's value state (JSON).
    pub state: Option<&'a [u8]>,
}

/// Validity bitmaps that had to be realigned to start at bit 0.
#[derive(Default)]
pub(crate) struct Scratch {
    validity: Vec<Option<Vec<u8>>>,
}

/// Lends `batch` as a WIT batch. `scratch` keeps realigned bitmaps alive.
pub(crate) fn batch_arg<'a>(
    batch: &'a RecordBatch,
    scratch: &'a mut Scratch,
) -> Result<BatchArg<'a>> {
    scratch.validity.clear();
    for column in batch.columns() {
        let realigned = column.nulls().and_then(|nulls| {
            let bits = nulls.inner();
            (bits.offset() % 8 != 0).then(|| bits.sliced().as_slice().to_vec())
        });
        scratch.validity.push(realigned);
    }
    let scratch: &'a Scratch = scratch;
    let schema = batch.schema_ref();
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (i, (field, column)) in schema.fields().iter().zip(batch.columns()).enumerate() {
        // All null (a Nexmark bid has no person or auction fields) is the
        // same as absent: not copying it saves most of a filtered batch.
        if column.data_type() == &DataType::Null || column.null_count() == column.len() {
            continue;
        }
        let validity = match (column.nulls(), &scratch.validity[i]) {
            (None, _) => None,
            (Some(_), Some(realigned)) => Some(realigned.as_slice()),
            (Some(nulls), None) => {
                let bits = nulls.inner();
                Some(&bits.values()[bits.offset() / 8..])
            }
        };
        let values = match column.data_type() {
            DataType::Int64 => ValuesArg::Int64(downcast::<Int64Array>(column)?.values()),
            DataType::Float64 => ValuesArg::Float64(downcast::<Float64Array>(column)?.values()),
            DataType::Boolean => {
                ValuesArg::Boolean(downcast::<BooleanArray>(column)?.values().iter().collect())
            }
            DataType::Utf8 => {
                let strings = downcast::<StringArray>(column)?;
                let text = TextArg {
                    offsets: strings.value_offsets(),
                    bytes: strings.values().as_slice(),
                };
                if is_json_field(field) {
                    ValuesArg::Json(text)
                } else {
                    ValuesArg::Utf8(text)
                }
            }
            other => bail!(
                "column `{}` has type {other}, which operators cannot read",
                field.name()
            ),
        };
        columns.push(ColumnArg {
            name: field.name(),
            values,
            validity,
        });
    }
    Ok(BatchArg {
        rows: batch.num_rows() as u32,
        columns,
    })
}

fn downcast<T: 'static>(column: &ArrayRef) -> Result<&T> {
    column
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| anyhow!("column type does not match its array"))
}

/// What one call produced, in host types.
pub struct DecodedOutput {
    /// Records per output name, with the input row each came from.
    /// (`None`: the input rows themselves, unchanged).
    pub emitted: Vec<(String, Option<RecordBatch>, Vec<u32>)>,
    /// Input rows the operator refused, with its reason.
    pub rejected: Vec<(u32, String)>,
    /// New value states by key group (`None`: cleared).
    pub state_updates: Vec<(u32, Option<Vec<u8>>)>,
    /// Timers registered or deleted.
    pub timers: Vec<types::TimerRequest>,
}

/// Converts a lifted output, checking everything the guest could get wrong.
pub(crate) fn decode_output(output: types::Output, input_rows: usize) -> Result<DecodedOutput> {
    let mut emitted = Vec::with_capacity(output.emitted.len());
    for e in output.emitted {
        let batch = if e.unchanged {
            None
        } else {
            let batch =
                record_batch(e.batch).map_err(|err| anyhow!("output `{}`: {err}", e.output))?;
            ensure!(
                e.origins.len() == batch.num_rows(),
                "output `{}`: {} origins for {} rows",
                e.output,
                e.origins.len(),
                batch.num_rows()
            );
            Some(batch)
        };
        if let Some(bad) = e
            .origins
            .iter()
            .find(|&&o| (e.unchanged || o != u32::MAX) && o as usize >= input_rows)
        {
            bail!(
                "output `{}`: origin row {bad} is not in the input",
                e.output
            );
        }
        emitted.push((e.output, batch, e.origins));
    }
    Ok(DecodedOutput {
        emitted,
        rejected: output
            .rejected
            .into_iter()
            .map(|r| (r.row, r.reason))
            .collect(),
        state_updates: output
            .state_updates
            .into_iter()
            .map(|u| (u.group, u.state))
            .collect(),
        timers: output.timers,
    })
}

/// A WIT batch as an Arrow record batch, without copying the values.
pub(crate) fn record_batch(batch: types::Batch) -> Result<RecordBatch> {
    let rows = batch.rows as usize;
    let mut fields = Vec::with_capacity(batch.columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(batch.columns.len());
    for column in batch.columns {
        let name = column.name;
        let nulls = match column.validity {
            None => None,
            Some(bits) => {
                ensure!(
                    bits.len() * 8 >= rows,
                    "column `{name}`: validity has {} bytes for {rows} rows",
                    bits.len()
                );
                Some(NullBuffer::new(BooleanBuffer::new(
                    Buffer::from_vec(bits),
                    0,
                    rows,
                )))
            }
        };
        let check_len = |len: usize| {
            ensure!(
                len == rows,
                "column `{name}` has {len} values for {rows} rows"
            );
            Ok(())
        };
        let (field, array): (Field, ArrayRef) = match column.values {
            types::Values::Int64(v) => {
                check_len(v.len())?;
                (
                    Field::new(&name, DataType::Int64, true),
                    Arc::new(Int64Array::try_new(ScalarBuffer::from(v), nulls)?),
                )
            }
            types::Values::Float64(v) => {
                check_len(v.len())?;
                (
                    Field::new(&name, DataType::Float64, true),
                    Arc::new(Float64Array::try_new(ScalarBuffer::from(v), nulls)?),
                )
            }
            types::Values::Boolean(v) => {
                check_len(v.len())?;
                let values = BooleanBuffer::from_iter(v);
                (
                    Field::new(&name, DataType::Boolean, true),
                    Arc::new(BooleanArray::new(values, nulls)),
                )
            }
            types::Values::Utf8(t) => (
                Field::new(&name, DataType::Utf8, true),
                Arc::new(string_array(&name, t, rows, nulls)?),
            ),
            types::Values::Json(t) => (
                json_field(&name),
                Arc::new(string_array(&name, t, rows, nulls)?),
            ),
        };
        fields.push(field);
        arrays.push(array);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &options,
    )?)
}

fn string_array(
    name: &str,
    text: types::TextValues,
    rows: usize,
    nulls: Option<NullBuffer>,
) -> Result<StringArray> {
    let offsets = text.offsets;
    ensure!(
        offsets.len() == rows + 1,
        "column `{name}` has {} offsets for {rows} rows",
        offsets.len()
    );
    // `OffsetBuffer::new` panics on bad offsets; guest data is checked first.
    ensure!(
        offsets.first().is_some_and(|&o| o >= 0) && offsets.windows(2).all(|w| w[0] <= w[1]),
        "column `{name}` has offsets that are negative or decreasing"
    );
    let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
    StringArray::try_new(offsets, Buffer::from_vec(text.bytes), nulls)
        .map_err(|e| anyhow!("column `{name}`: {e}"))
}
