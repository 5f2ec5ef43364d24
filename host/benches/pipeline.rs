//! Nexmark q0, q1 and q2 end to end: the built-in generator, the query as a
//! Wasm operator, and a blackhole sink, run as `weir run` runs them.
//!
//! `cargo bench -p weir --bench pipeline` (pin to one core: `taskset -c 0`).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::path::Path;

use weir::config::Pipeline;
use weir::{WasmEngine, operators, runtime};

const EVENTS: u64 = 2_000_000;

fn nexmark(c: &mut Criterion) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let engine = WasmEngine::new().unwrap();
    let mut group = c.benchmark_group("nexmark end to end");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EVENTS));
    for query in ["q0", "q1", "q2"] {
        let file = dir.path().join(format!("{query}.toml"));
        let crate_dir = repo.join("examples/nexmark/operators").join(query);
        std::fs::write(
            &file,
            format!(
                "[[source]]\ntype = \"nexmark\"\nevents = {EVENTS}\n\n\
                 [[operator]]\nid = \"{query}\"\ncrate = \"{}\"\n\n\
                 [[sink]]\ntype = \"blackhole\"\n",
                crate_dir.display()
            ),
        )
        .unwrap();
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
