//! What one poison record costs: a batch of 1,024 records through a worker
//! of the hostile operator (`tests/fixtures/hostile`), clean, and with one
//! record that makes the guest panic. The worker finds that record by
//! splitting the batch, replacing the instance after each trap, so the 1,023
//! others are processed once and the bad one is dead-lettered.
//!
//! Both cases include making the worker (one instantiation), so their
//! difference is the recovery. `cargo bench -p weir --bench poison` (pin to
//! one core: `taskset -c 0`).

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use weir::config::{FailurePolicy, Limits};
use weir::runtime::{
    DeadLetters, Envelope, Failures, Message, OperatorMetrics, Restored, VersionStats, Worker,
    WorkerSetup,
};
use weir::{PreparedOperator, WasmEngine};

const ROWS: usize = 1024;

fn hostile() -> PreparedOperator {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hostile");
    let wasm = weir::builder::build_crate(&dir).expect("the operator builds");
    let bytes = std::fs::read(wasm).expect("the component is readable");
    let engine = WasmEngine::with_cache_dir(None).expect("engine");
    engine
        .prepare("hostile", 1, &bytes)
        .expect("a valid component")
}

/// `{"id": i, "action": ""}` for every row, but `poison` (if any) panics.
fn batch(poison: Option<usize>) -> Message {
    let actions: Vec<&str> = (0..ROWS)
        .map(|i| if Some(i) == poison { "panic" } else { "" })
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(0..ROWS as i64)),
        Arc::new(StringArray::from(actions)),
    ];
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("action", DataType::Utf8, true),
    ]);
    Message {
        batch: RecordBatch::try_new(Arc::new(schema), columns).unwrap(),
        source: Arc::from("bench"),
        lines: (1..=ROWS as u64).collect(),
        times: None,
    }
}

/// Runs `message` through a new worker; returns the dead letters written.
fn run(prepared: &PreparedOperator, dead_letters: &Arc<DeadLetters>, message: &Message) -> u64 {
    let before = dead_letters.count();
    let worker = Worker::new(WorkerSetup {
        prepared: prepared.clone(),
        config_json: "{}".to_owned(),
        limits: Limits::default(),
        key_by: None,
        metrics: Arc::new(OperatorMetrics::default()),
        dead_letters: Arc::clone(dead_letters),
        outputs: HashMap::new(),
        stats: Arc::new(VersionStats::default()),
        inputs: 1,
        index: 0,
        failures: Arc::new(Failures::new(FailurePolicy::default())),
        operator: 0,
        checkpoints: None,
        restore: Restored::Decoded(Vec::new()),
        state_file: None,
    })
    .expect("the worker starts");
    let (input, receiver) = tokio::sync::mpsc::channel(1);
    input
        .try_send(Envelope::Batch {
            input: 0,
            message: message.clone(),
        })
        .expect("room for one batch");
    drop(input);
    worker.run(receiver).expect("the worker runs");
    dead_letters.count() - before
}

fn poison(c: &mut Criterion) {
    let prepared = hostile();
    let dir = tempfile::tempdir().unwrap();
    let dead_letters = Arc::new(DeadLetters::open(&dir.path().join("dead.jsonl")).unwrap());
    let clean = batch(None);
    let poisoned = batch(Some(ROWS / 2 + 1));
    assert_eq!(run(&prepared, &dead_letters, &clean), 0);
    assert_eq!(run(&prepared, &dead_letters, &poisoned), 1);
    let mut group = c.benchmark_group("hostile batch of 1024");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("clean", |b| {
        b.iter(|| run(&prepared, &dead_letters, &clean))
    });
    group.bench_function("one poison record", |b| {
        b.iter(|| run(&prepared, &dead_letters, &poisoned))
    });
    group.finish();
}

criterion_group!(benches, poison);
criterion_main!(benches);
