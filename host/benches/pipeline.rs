//! Nexmark q0, q1, q2, q5 and q7 end to end: the examples' pipelines with the
//! built-in generator, the query as Wasm operators, and a blackhole sink, run
//! as `weir run` runs them.
//!
//! `cargo bench -p weir --bench pipeline` (pin to one core: `taskset -c 0`).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::path::Path;

use weir::config::Pipeline;
use weir::{WasmEngine, operators, runtime};

const EVENTS: u64 = 2_000_000;

/// The allocator the `weir` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn nexmark(c: &mut Criterion) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let engine = WasmEngine::new().unwrap();
    let mut group = c.benchmark_group("nexmark end to end");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EVENTS));
    for query in ["q0", "q1", "q2", "q5", "q7"] {
        let example = repo.join("examples/nexmark");
        let text = std::fs::read_to_string(example.join(format!("{query}.toml"))).unwrap();
        // The example as it is, with more events and no output file.
        let sink = text.find("[[sink]]").unwrap();
        let text = format!("{}[[sink]]\ntype = \"blackhole\"\n", &text[..sink])
            .replace("events = 100000", &format!("events = {EVENTS}"))
            .replace(
                "crate = \"operators/",
                &format!("crate = \"{}/operators/", example.display()),
            );
        let file = dir.path().join(format!("{query}.toml"));
        std::fs::write(&file, text).unwrap();
        let pipeline = Pipeline::load(&file).unwrap();
        let prepared = operators::prepare_all(&pipeline, &engine).unwrap();
        group.bench_function(query, |b| {
            b.iter(|| {
                let summary = runtime::run(&pipeline, &engine, prepared.clone()).unwrap();
                assert_eq!(summary.records_in, EVENTS);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, nexmark);
criterion_main!(benches);
