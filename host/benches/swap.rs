//! Hot-swap benchmark: what a deploy costs a running pipeline.
//!
//! Runs the real `weir` binary and drives it through its admin API and
//! deploy folder, as an operator would:
//!
//! 1. **pause**: Nexmark q1 runs at full speed from the built-in generator
//!    while 100 new versions are deployed one after the other; for each, the
//!    longest gap between two consecutive batch completions around the swap
//!    (`pause_ms` in `weir status`), against the normal gap between batches
//!    measured in the same run;
//! 2. **deploy to first record**: a ~2 MB component (`tests/fixtures/url-enrich`)
//!    renamed into the deploy folder while records flow, until `weir status`
//!    shows the new version's first finished batch; cold (never compiled:
//!    a unique custom section changes its hash) and warm (precompiled by
//!    `weir build`);
//! 3. **migration**: 1,000,000 keys of `counter-v1` state migrated eagerly to
//!    `counter-v2`'s layout, in keys/s.
//!
//! `cargo bench -p weir --bench swap` (figures in `benches/README.md`).

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weir::control::OperatorStatus;
use weir::control::client::AdminClient;

#[path = "../../tests/shared/live.rs"]
mod shared;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

fn build(crate_dir: &str) -> Vec<u8> {
    let path = weir::builder::build_crate(&repo().join(crate_dir)).expect("the crate builds");
    std::fs::read(path).expect("the component is readable")
}

/// A running `weir run` with its admin API.
struct Live {
    child: Child,
    admin: AdminClient,
    dir: tempfile::TempDir,
}

impl Live {
    fn start(pipeline: &str, stdin: bool) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join("pipeline.toml");
        std::fs::write(&file, pipeline).expect("the pipeline is written");
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["run"])
            .arg(&file)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir starts");
        let address = shared::admin_address(&mut child, std::sync::Arc::default())
            .expect("weir prints its admin address");
        Self {
            admin: AdminClient::new(address),
            child,
            dir,
        }
    }

    fn status(&self) -> OperatorStatus {
        self.admin.status().expect("status").remove(0)
    }

    fn wait_for(&self, condition: impl Fn(&OperatorStatus) -> bool) -> OperatorStatus {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let status = self.status();
            if condition(&status) {
                return status;
            }
            assert!(Instant::now() < deadline, "timed out: {status:?}");
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn summary(name: &str, mut values: Vec<f64>) {
    values.sort_by(f64::total_cmp);
    println!(
        "{name}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        values.len(),
        percentile(&values, 0.5),
        percentile(&values, 0.99),
        values.last().copied().unwrap_or(0.0)
    );
}

fn pause_under_q1() {
    let q1 = build("examples/nexmark/operators/q1");
    let module = repo().join("target/wasm32-wasip2/release/nexmark_q1.wasm");
    let live = Live::start(
        &format!(
            r#"admin = "127.0.0.1:0"
[[source]]
type = "nexmark"
events = 4000000000
[[operator]]
id = "q1"
module = "{}"
[[sink]]
type = "blackhole"
"#,
            module.display()
        ),
        false,
    );
    live.wait_for(|s| s.records_in > 2_000_000);
    // The normal gap between batches, from the rate in the same run.
    let (from, started) = (live.status().records_in, Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let rate = (live.status().records_in - from) as f64 / started.elapsed().as_secs_f64();
    let batch_ms = 1024.0 / rate * 1e3;
    println!(
        "q1 before swapping: {:.2} M events/s, one batch of 1,024 every {batch_ms:.3} ms",
        rate / 1e6
    );
    let mut pauses = Vec::new();
    let mut deploys = Vec::new();
    for _ in 0..100 {
        let report = live
            .admin
            .deploy("q1", &q1)
            .expect("the deploy is accepted");
        let status = live.wait_for(|s| s.version == report.version && s.pause_ms.is_some());
        pauses.push(status.pause_ms.unwrap_or_default());
        deploys.push(report.deploy_ms);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (from, started) = (live.status().records_in, Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let after = (live.status().records_in - from) as f64 / started.elapsed().as_secs_f64();
    println!("q1 after 100 swaps: {:.2} M events/s", after / 1e6);
    summary("pause around a swap (q1, 100 swaps)", pauses.clone());
    summary("deploy request to every worker swapped", deploys);
    pauses.sort_by(f64::total_cmp);
    println!(
        "pause p99 / normal batch gap: {:.1}x",
        percentile(&pauses, 0.99) / batch_ms
    );
}

fn deploy_latency() {
    let enrich = build("tests/fixtures/url-enrich");
    let module = repo().join("target/wasm32-wasip2/release/url_enrich.wasm");
    let mut live = Live::start(
        &format!(
            r#"admin = "127.0.0.1:0"
deploy_dir = "deploy"
[[source]]
type = "stdin"
[[operator]]
id = "enrich"
module = "{}"
[[sink]]
type = "blackhole"
"#,
            module.display()
        ),
        true,
    );
    let mut stdin = live.child.stdin.take().expect("stdin is piped");
    std::thread::spawn(move || {
        let line = "{\"url\":\"https://example.com/a/b?utm_campaign=winter_sale\"}\n".repeat(64);
        while stdin.write_all(line.as_bytes()).is_ok() {
            std::thread::sleep(Duration::from_micros(500));
        }
    });
    live.wait_for(|s| s.records_in > 10_000);
    let deploy_dir = live.dir.path().join("deploy");
    let engine = weir::WasmEngine::new().expect("an engine");
    for warm in [false, true] {
        let mut latencies = Vec::new();
        let mut optimized = Vec::new();
        for round in 0..10 {
            let tag = format!("{}-{round}-{:?}", std::process::id(), Instant::now());
            let bytes = shared::with_custom_section(&enrich, &tag);
            if warm {
                // What `weir build` does: precompile into the cache.
                engine.prepare("enrich", 1, &bytes).expect("it compiles");
            }
            let part = deploy_dir.join("enrich.wasm.part");
            std::fs::write(&part, &bytes).expect("written");
            let version = live.status().version;
            let landed = Instant::now();
            std::fs::rename(&part, deploy_dir.join("enrich.wasm")).expect("renamed");
            live.wait_for(|s| s.version > version && s.first_batch_ms.is_some());
            latencies.push(landed.elapsed().as_secs_f64() * 1e3);
            // Let the optimizing compiler finish before the next round.
            live.wait_for(|s| s.tier == "optimized");
            optimized.push(landed.elapsed().as_secs_f64() * 1e3);
        }
        let size = enrich.len() as f64 / 1e6;
        summary(
            &format!(
                "deploy folder to first batch, {size:.2} MB component, {}",
                if warm {
                    "precompiled (warm cache)"
                } else {
                    "never compiled (cold)"
                }
            ),
            latencies,
        );
        if !warm {
            summary("  ... to running on optimized code", optimized);
        }
    }
}

fn migration(keys: usize, parallelism: usize) {
    build("examples/hot-swap/counter-v1");
    let v2 = build("examples/hot-swap/counter-v2");
    let module = repo().join("target/wasm32-wasip2/release/counter_v1.wasm");
    let mut live = Live::start(
        &format!(
            r#"admin = "127.0.0.1:0"
[[source]]
type = "stdin"
[[operator]]
id = "counter"
module = "{}"
key_by = "key"
parallelism = {parallelism}
[[sink]]
type = "blackhole"
"#,
            module.display()
        ),
        true,
    );
    let mut stdin = live.child.stdin.take().expect("stdin is piped");
    let mut text = String::with_capacity(keys * 24);
    for key in 0..keys {
        text.push_str(&format!("{{\"key\":\"k{key}\",\"seq\":1}}\n"));
    }
    stdin.write_all(text.as_bytes()).expect("fed");
    stdin.flush().expect("flushed");
    live.wait_for(|s| s.state_keys == keys as i64);
    let report = live
        .admin
        .deploy("counter", &v2)
        .expect("the migration succeeds");
    assert_eq!(report.migrated_keys, keys);
    let sample: Value = serde_json::to_value(&report).expect("a report");
    println!(
        "migration of {keys} keys, {parallelism} worker(s): {:.1} ms (slowest worker), {:.2} M \
         keys/s; whole deploy {:.1} ms; {sample}",
        report.migration_ms,
        keys as f64 / report.migration_ms * 1e3 / 1e6,
        report.deploy_ms
    );
    drop(stdin);
}

fn main() {
    // `cargo bench` passes `--bench`; a name filter picks one part.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wants = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    if wants("pause") {
        pause_under_q1();
    }
    if wants("deploy") {
        deploy_latency();
    }
    if wants("migration") {
        migration(1_000_000, 1);
        migration(1_000_000, 2);
    }
}
