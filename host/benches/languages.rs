//! The etl-cleanse operator written in Rust, Python, JavaScript and C, run by
//! the host on the same batch of 1,024 orders: records per second, component
//! size, compile time and instantiation time (instance + `init`).
//!
//! `cargo bench -p weir --bench languages` (pin to one core: `taskset -c 0`).
//! Builds each operator with the tools `weir` installs on first use
//! (componentize-py, componentize-js, zig cc), as the conformance tests do.

use arrow::array::RecordBatch;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::path::Path;
use std::time::{Duration, Instant};

use weir::config::Limits;
use weir::runtime::MapStates;
use weir::wasm::PreparedOperator;
use weir::{OperatorInstance, WasmEngine};

const ROWS: usize = 1024;

const LANGUAGES: [(&str, &str); 4] = [
    ("rust", "examples/etl-cleanse/operator"),
    ("python", "examples/etl-cleanse-py/operator"),
    ("js", "examples/etl-cleanse-js/operator"),
    ("c", "examples/etl-cleanse-c/operator"),
];

/// Builds and compiles one language's operator, printing its size and
/// compile time.
fn prepare(language: &str, dir: &str) -> PreparedOperator {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let wasm = weir::builder::build_operator(&dir).expect("the operator builds");
    let bytes = std::fs::read(wasm).expect("the component is readable");
    let engine = WasmEngine::with_cache_dir(None).expect("engine");
    let start = Instant::now();
    let prepared = engine
        .prepare(language, 1, &bytes)
        .expect("a valid component");
    eprintln!(
        "{language}: component {} bytes, compiled in {:.1} s",
        bytes.len(),
        start.elapsed().as_secs_f64()
    );
    prepared
}

fn instance(prepared: &PreparedOperator) -> OperatorInstance {
    OperatorInstance::new(prepared, "{}", &Limits::default(), Default::default()).expect("init")
}

/// 1,024 orders like the example's: nine in ten are kept, the rest are
/// dropped or dead-lettered.
fn orders_batch() -> RecordBatch {
    let lines: Vec<String> = (0..ROWS)
        .map(|i| {
            let ts = if i % 20 == 7 {
                "yesterday".to_owned()
            } else {
                format!("2024-03-01T12:{:02}:{:02}.{:03}Z", i / 60 % 60, i % 60, i)
            };
            format!(
                r#"{{"order_id":"A-{i}","user_email":"  User{i}@Example.COM ","amount_cents":{},"currency":"eur","country":"de","ts":"{ts}","test":{}}}"#,
                if i % 20 == 3 { -1 } else { 100 + i as i64 },
                i % 20 == 5
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

fn languages(c: &mut Criterion) {
    let batch = orders_batch();
    let prepared: Vec<(&str, PreparedOperator)> = LANGUAGES
        .iter()
        .map(|(language, dir)| (*language, prepare(language, dir)))
        .collect();

    let mut group = c.benchmark_group("etl-cleanse batch of 1024");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    let mut emitted = Vec::new();
    for (language, prepared) in &prepared {
        let mut operator = instance(prepared);
        let mut maps = MapStates::default();
        let output = operator
            .process(&batch, None, &[], &mut maps)
            .expect("process");
        emitted.push((language, output.emitted.len(), output.rejected.len()));
        group.bench_function(*language, |b| {
            b.iter(|| operator.process(&batch, None, &[], &mut maps).unwrap())
        });
    }
    group.finish();
    // Every language emits and rejects the same (the conformance tests
    // compare the records themselves).
    assert!(
        emitted
            .windows(2)
            .all(|w| (w[0].1, w[0].2) == (w[1].1, w[1].2))
    );

    let mut group = c.benchmark_group("etl-cleanse instantiate + init");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for (language, prepared) in &prepared {
        group.bench_function(*language, |b| b.iter(|| instance(prepared)));
    }
    group.finish();
}

criterion_group!(benches, languages);
criterion_main!(benches);
