//! One operator, one batch of 1,024 records: as a Wasm component through the
//! host, and the same crate compiled natively through the same SDK code.
//!
//! Both paths start from an Arrow batch and end with Arrow batches: the Wasm
//! path copies columns into guest memory and lifts the outputs, the native
//! path copies columns into the SDK's batch type and wraps the outputs, so the
//! ratio is the cost of running in the sandbox.
//!
//! `cargo bench -p weir --bench operators` (pin to one core: `taskset -c 0`).

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Schema};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use weir::config::Limits;
use weir::runtime::MapStates;
use weir::sources::nexmark::{NexmarkConfig, NexmarkGenerator};
use weir::wasm::{CpuLimit, KeyGroupArg};
use weir::{OperatorInstance, WasmEngine};
use weir_guest::abi::types as sdk;

const ROWS: usize = 1024;

fn instance(crate_dir: &str) -> OperatorInstance {
    instance_with(crate_dir, CpuLimit::Epoch)
}

fn instance_with(crate_dir: &str, cpu_limit: CpuLimit) -> OperatorInstance {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir);
    let wasm = weir::builder::build_crate(&dir).expect("the operator builds");
    let bytes = std::fs::read(wasm).expect("the component is readable");
    let engine = WasmEngine::with_cpu_limit(None, cpu_limit).expect("engine");
    let prepared = engine
        .prepare(crate_dir, 1, &bytes)
        .expect("a valid component");
    OperatorInstance::new(&prepared, "{}", &Limits::default(), Default::default()).expect("init")
}

/// The Arrow batch as the SDK's batch type (one copy per column, like the
/// canonical ABI's copy into guest memory).
fn to_sdk(batch: &RecordBatch) -> sdk::Batch {
    let columns = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(_, c)| c.data_type() != &DataType::Null)
        .map(|(field, column)| {
            let values = match column.data_type() {
                DataType::Int64 => sdk::Values::Int64(
                    column
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap()
                        .values()
                        .to_vec(),
                ),
                DataType::Float64 => sdk::Values::Float64(
                    column
                        .as_any()
                        .downcast_ref::<Float64Array>()
                        .unwrap()
                        .values()
                        .to_vec(),
                ),
                _ => {
                    let s = column.as_any().downcast_ref::<StringArray>().unwrap();
                    let text = sdk::TextValues {
                        offsets: s.value_offsets().to_vec(),
                        bytes: s.values().to_vec(),
                    };
                    if weir::codec::is_json_field(field) {
                        sdk::Values::Json(text)
                    } else {
                        sdk::Values::Utf8(text)
                    }
                }
            };
            sdk::Column {
                name: field.name().clone(),
                values,
                validity: column
                    .nulls()
                    .map(|n| n.inner().sliced().as_slice().to_vec()),
            }
        })
        .collect();
    sdk::Batch {
        rows: batch.num_rows() as u32,
        columns,
    }
}

/// An SDK output batch as Arrow arrays, without copying the values.
fn to_arrow(batch: sdk::Batch) -> RecordBatch {
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for column in batch.columns {
        let (dt, array): (DataType, ArrayRef) = match column.values {
            sdk::Values::Int64(v) => (
                DataType::Int64,
                Arc::new(Int64Array::new(ScalarBuffer::from(v), None)),
            ),
            sdk::Values::Float64(v) => (
                DataType::Float64,
                Arc::new(Float64Array::new(ScalarBuffer::from(v), None)),
            ),
            sdk::Values::Utf8(t) | sdk::Values::Json(t) => (
                DataType::Utf8,
                Arc::new(
                    StringArray::try_new(
                        OffsetBuffer::new(ScalarBuffer::from(t.offsets)),
                        Buffer::from_vec(t.bytes),
                        None,
                    )
                    .unwrap(),
                ),
            ),
            sdk::Values::Boolean(_) => unreachable!("the benchmarked operators emit no booleans"),
        };
        fields.push(Field::new(column.name, dt, true));
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
}

fn nexmark_batch() -> RecordBatch {
    let config = NexmarkConfig {
        events: ROWS as u64,
        seed: 42,
        rate: 10_000,
        start_time_ms: 1_700_000_000_000,
    };
    NexmarkGenerator::new(&config).next_batch(ROWS).unwrap()
}

fn q1(c: &mut Criterion) {
    let batch = nexmark_batch();
    let mut wasm = instance("examples/nexmark/operators/q1");
    let mut native = nexmark_q1::weir_operator();
    let mut maps = MapStates::default();
    let mut group = c.benchmark_group("q1 batch of 1024");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("wasm", |b| {
        b.iter(|| wasm.process(&batch, None, &[], &mut maps).unwrap())
    });
    group.bench_function("native", |b| {
        b.iter(|| {
            let output = native.process(&to_sdk(&batch), Vec::new()).unwrap();
            output
                .emitted
                .into_iter()
                .map(|e| to_arrow(e.batch))
                .collect::<Vec<_>>()
        })
    });
    group.finish();
}

fn orders_batch() -> RecordBatch {
    let lines: Vec<String> = (0..ROWS)
        .map(|i| {
            format!(
                r#"{{"product":"p{}","qty":{},"price_cents":{}}}"#,
                (i * 7919) % 100,
                i % 5 + 1,
                100 + i % 900
            )
        })
        .collect();
    let (batch, _, bad) = weir::codec::decode_json_lines(
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, l.as_str())),
    );
    assert!(bad.is_empty());
    batch
}

/// Rows of the batch per key, in first-seen order (what the host's worker does).
fn group_rows(batch: &RecordBatch) -> Vec<(String, Vec<u32>)> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<(String, Vec<u32>)> = Vec::new();
    for (row, key) in weir::runtime::row_keys(batch, "product")
        .into_iter()
        .enumerate()
    {
        let key = key.unwrap().into_owned();
        let g = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(row as u32);
    }
    groups
}

fn sales(c: &mut Criterion) {
    let batch = orders_batch();
    let mut wasm = instance("examples/sales-by-product/operator");
    let mut native = sales_by_product::weir_operator();
    let mut maps = MapStates::default();
    let mut group = c.benchmark_group("sales-by-product batch of 1024");
    group.throughput(Throughput::Elements(ROWS as u64));
    let mut state: HashMap<String, Vec<u8>> = HashMap::new();
    group.bench_function("wasm", |b| {
        b.iter(|| {
            let groups = group_rows(&batch);
            let args: Vec<KeyGroupArg<'_>> = groups
                .iter()
                .map(|(key, rows)| KeyGroupArg {
                    key,
                    rows,
                    state: state.get(key).map(Vec::as_slice),
                })
                .collect();
            let output = wasm.process(&batch, None, &args, &mut maps).unwrap();
            for (g, value) in output.state_updates {
                state.insert(groups[g as usize].0.clone(), value.unwrap());
            }
            output.emitted
        })
    });
    let mut state: HashMap<String, Vec<u8>> = HashMap::new();
    group.bench_function("native", |b| {
        b.iter(|| {
            let groups = group_rows(&batch);
            let args: Vec<sdk::KeyGroup> = groups
                .iter()
                .map(|(key, rows)| sdk::KeyGroup {
                    key: key.clone(),
                    rows: rows.clone(),
                    state: state.get(key).cloned(),
                })
                .collect();
            let output = native.process(&to_sdk(&batch), args).unwrap();
            for update in output.state_updates {
                state.insert(
                    groups[update.group as usize].0.clone(),
                    update.state.unwrap(),
                );
            }
            output
                .emitted
                .into_iter()
                .map(|e| to_arrow(e.batch))
                .collect::<Vec<_>>()
        })
    });
    group.finish();
}

/// What stopping long calls costs on q1: epoch interruption (what weir
/// runs), fuel metering, and no limit at all, in the same run.
fn cpu_limit(c: &mut Criterion) {
    let batch = nexmark_batch();
    let mut maps = MapStates::default();
    let mut group = c.benchmark_group("q1 cpu limit");
    group.throughput(Throughput::Elements(ROWS as u64));
    for (name, limit) in [
        ("epoch", CpuLimit::Epoch),
        ("fuel", CpuLimit::Fuel),
        ("off", CpuLimit::Off),
    ] {
        let mut wasm = instance_with("examples/nexmark/operators/q1", limit);
        group.bench_function(name, |b| {
            b.iter(|| wasm.process(&batch, None, &[], &mut maps).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, q1, sales, cpu_limit);
criterion_main!(benches);
