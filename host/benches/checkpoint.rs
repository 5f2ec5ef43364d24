//! What checkpoints cost.
//!
//! - `checkpoint interval`: Nexmark q1 (20 M generated events, blackhole sink)
//!   and sales-by-product (2 M orders from a file, to an exactly-once file
//!   sink; also with `state_backend = "disk"`), each with no checkpoints and
//!   with one every second, in one run.
//! - `worker state`: writing and reading back (checksum, decode, split by
//!   worker) one worker's state file of 1 M and 10 M keys, the part of a
//!   checkpoint and of a recovery that grows with the state.
//!
//! `cargo bench -p weir --bench checkpoint` (pin to one core: `taskset -c 0`).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use weir::checkpoint::{
    self, Checkpointing, FileEntry, Folder, WorkerState, WorkerStateRef, store,
};
use weir::config::Pipeline;
use weir::runtime::{MapStates, Timers, ValueStates};
use weir::{WasmEngine, operators, runtime};

const RECORDS: u64 = 2_000_000;
/// q1 runs at several million events a second: enough for 2 to 3 checkpoints a run.
const Q1_EVENTS: u64 = 20_000_000;

/// The allocator the `weir` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn q1_pipeline(repo: &Path, dir: &Path) -> std::path::PathBuf {
    let example = repo.join("examples/nexmark");
    let text = std::fs::read_to_string(example.join("q1.toml")).unwrap();
    let sink = text.find("[[sink]]").unwrap();
    let text = format!("{}[[sink]]\ntype = \"blackhole\"\n", &text[..sink])
        .replace("events = 100000", &format!("events = {Q1_EVENTS}"))
        .replace(
            "crate = \"operators/",
            &format!("crate = \"{}/operators/", example.display()),
        );
    let file = dir.join("q1.toml");
    std::fs::write(&file, text).unwrap();
    file
}

fn sales_pipeline(repo: &Path, dir: &Path) -> std::path::PathBuf {
    let mut input =
        std::io::BufWriter::new(std::fs::File::create(dir.join("orders.jsonl")).unwrap());
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..RECORDS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        writeln!(
            input,
            r#"{{"product":"p{}","qty":{},"price_cents":{}}}"#,
            x % 5000,
            1 + x % 8,
            100 + x % 800
        )
        .unwrap();
    }
    input.flush().unwrap();
    let file = dir.join("sales.toml");
    std::fs::write(
        &file,
        format!(
            "[[source]]\ntype = \"jsonl\"\npath = \"orders.jsonl\"\n\
             [[operator]]\nid = \"sales\"\ncrate = \"{}\"\nkey_by = \"product\"\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"out/sales.jsonl\"\n",
            repo.join("examples/sales-by-product/operator").display()
        ),
    )
    .unwrap();
    file
}

fn interval(c: &mut Criterion) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let engine = WasmEngine::new().unwrap();
    let sales = sales_pipeline(&repo, dir.path());
    let sales_on_disk = dir.path().join("sales-disk.toml");
    let text = std::fs::read_to_string(&sales).unwrap();
    std::fs::write(&sales_on_disk, format!("state_backend = \"disk\"\n{text}")).unwrap();
    let mut group = c.benchmark_group("checkpoint interval");
    group.sample_size(10);
    for (name, file, records) in [
        ("q1", q1_pipeline(&repo, dir.path()), Q1_EVENTS),
        ("sales-by-product", sales, RECORDS),
        ("sales-by-product, disk state", sales_on_disk, RECORDS),
    ] {
        group.throughput(Throughput::Elements(records));
        let pipeline = Pipeline::load(&file).unwrap();
        let prepared = operators::prepare_all(&pipeline, &engine).unwrap();
        for every in [None, Some(Duration::from_secs(1))] {
            let label = every.map_or("none".to_owned(), |d| format!("{d:?}"));
            group.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter(|| {
                    let checkpointing = every.map(|interval| Checkpointing {
                        folder: Folder::lock(&dir.path().join("checkpoints")).unwrap(),
                        interval,
                        restore: None,
                    });
                    let running =
                        runtime::start(&pipeline, &engine, prepared.clone(), checkpointing)
                            .unwrap();
                    let summary = running.wait().unwrap();
                    assert_eq!(summary.records_in, records);
                })
            });
        }
    }
    group.finish();
}

/// A worker state of `keys` keys, each with a sales-by-product total.
fn state(keys: usize) -> ValueStates {
    let mut values = weir::runtime::KeyedValues::default();
    for key in 0..keys {
        values.insert(
            format!("product-{key}"),
            format!(r#"{{"units":{},"revenue_cents":{}}}"#, key % 97, key * 13).into_bytes(),
        );
    }
    ValueStates::Memory(values)
}

fn write(dir: &Path, values: &ValueStates) -> FileEntry {
    let (maps, timers) = (MapStates::default(), Timers::default());
    let state = WorkerStateRef {
        watermark: 0,
        values,
        maps: &maps,
        event_timers: &timers,
        processing_timers: &timers,
    };
    store::write_file(&dir.join("sales-0.state"), |out| {
        postcard::to_io(&state, out)?;
        Ok(())
    })
    .unwrap()
}

fn worker_state(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("worker state");
    group.sample_size(10);
    for keys in [1_000_000usize, 10_000_000] {
        let values = state(keys);
        group.throughput(Throughput::Elements(keys as u64));
        let entry = write(dir.path(), &values);
        println!("worker state of {keys} keys: {} bytes", entry.bytes);
        group.bench_function(BenchmarkId::new("write", keys), |b| {
            b.iter(|| write(dir.path(), &values))
        });
        group.bench_function(BenchmarkId::new("read", keys), |b| {
            b.iter(|| {
                let bytes = store::read_file(dir.path(), &entry).unwrap();
                let state: WorkerState = postcard::from_bytes(&bytes).unwrap();
                let parts = checkpoint::partition(vec![(state, 1)], 1);
                assert_eq!(parts[0][0].0.values.len(), keys);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, interval, worker_state);
criterion_main!(benches);
