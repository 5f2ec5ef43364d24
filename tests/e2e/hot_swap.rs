//! Hot swap under continuous input: versions come and go while records flow,
//! and every key's count runs 1, 2, 3, … with no gap, repeat or reset.

use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir::control::OperatorStatus;
use weir::control::client::AdminClient;

use crate::support::{
    admin_address, build_wasm, read_jsonl, repo, run, run_ok, s, weir, with_custom_section,
};

pub(crate) const KEYS: i64 = 16;

/// Builds an example counter (any language) with `weir build` and returns its component.
pub(crate) fn build(name: &str) -> PathBuf {
    let dir = repo().join("examples/hot-swap").join(name);
    let output = run_ok(&["build", s(&dir)]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = stdout
        .split_once(": ")
        .and_then(|(_, rest)| rest.split(" (").next())
        .unwrap_or_else(|| panic!("unexpected `weir build` output: {stdout}"));
    PathBuf::from(path)
}

/// A `weir run` of the counter pipeline fed by a thread writing
/// `{"key", "seq"}` rounds to its stdin until told to stop.
pub(crate) struct LiveRun {
    dir: tempfile::TempDir,
    deploy_dir: PathBuf,
    child: Child,
    admin: AdminClient,
    address: std::net::SocketAddr,
    pub(crate) round: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    feeder: Option<std::thread::JoinHandle<()>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl LiveRun {
    /// The counter pipeline of `examples/hot-swap` as it is (4 workers, its
    /// own deploy folder), with the output in a temporary folder.
    fn example() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let example = repo().join("examples/hot-swap");
        let deploy_dir = example.join("deploy");
        let _ = std::fs::remove_dir_all(&deploy_dir);
        let (out, dead) = (
            dir.path().join("out.jsonl"),
            dir.path().join("dead-letter.jsonl"),
        );
        let pipeline = example.join("pipeline.toml");
        let args = [
            "run",
            s(&pipeline),
            "--output",
            s(&out),
            "--dead-letter",
            s(&dead),
            "--admin",
            "127.0.0.1:0",
        ];
        Self::start(dir, &args, deploy_dir)
    }

    /// A pipeline written for the test, with `parallelism` workers.
    pub(crate) fn with_workers(v1: &Path, parallelism: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = dir.path().join("pipeline.toml");
        std::fs::write(
            &pipeline,
            format!(
                r#"admin = "127.0.0.1:0"
deploy_dir = "deploy"

[[source]]
type = "stdin"

[[operator]]
id = "counter"
module = "{}"
key_by = "key"
parallelism = {parallelism}

[[sink]]
type = "jsonl"
path = "out.jsonl"

[dead_letter]
path = "dead-letter.jsonl"
"#,
                v1.display()
            ),
        )
        .unwrap();
        let deploy_dir = dir.path().join("deploy");
        Self::start(dir, &["run", s(&pipeline)], deploy_dir)
    }

    fn start(dir: tempfile::TempDir, args: &[&str], deploy_dir: PathBuf) -> Self {
        let mut child = weir()
            .args(args)
            .current_dir(repo())
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let address = admin_address(&mut child, Arc::clone(&stderr))
            .unwrap_or_else(|| panic!("no admin address; stderr: {:?}", stderr.lock().unwrap()));
        let round = Arc::new(AtomicI64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut stdin = child.stdin.take().unwrap();
        let feeder = {
            let (round, stop) = (Arc::clone(&round), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    round.store(seq, Ordering::SeqCst);
                    let mut text = String::new();
                    for key in 0..KEYS {
                        text.push_str(&format!("{{\"key\":\"k{key}\",\"seq\":{seq}}}\n"));
                    }
                    stdin.write_all(text.as_bytes()).unwrap();
                    stdin.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Self {
            admin: AdminClient::new(address),
            address,
            dir,
            deploy_dir,
            child,
            round,
            stop,
            feeder: Some(feeder),
            stderr,
        }
    }

    fn status(&self) -> OperatorStatus {
        self.admin.status().unwrap().remove(0)
    }

    fn wait_for(&self, what: &str, condition: impl Fn(&OperatorStatus) -> bool) -> OperatorStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.status();
            if condition(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status {status:?}; stderr {:?}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lets at least `records` more records through.
    pub(crate) fn flow(&self, records: u64) {
        let from = self.status().records_in;
        self.wait_for("records", |s| s.records_in >= from + records);
    }

    pub(crate) fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut all = args.to_vec();
        let address = self.address.to_string();
        all.extend(["--admin", &address]);
        run(&all)
    }

    fn deploy_dir(&self) -> PathBuf {
        self.deploy_dir.clone()
    }

    /// Stops the input, waits for a clean exit and returns the output records.
    pub(crate) fn finish(mut self) -> (Vec<Value>, Vec<Value>) {
        self.stop.store(true, Ordering::Relaxed);
        self.feeder.take().unwrap().join().unwrap();
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "weir run failed: {:?}",
            self.stderr.lock().unwrap()
        );
        let dead = self.dir.path().join("dead-letter.jsonl");
        let dead = if dead.exists() {
            read_jsonl(&dead)
        } else {
            Vec::new()
        };
        (read_jsonl(&self.dir.path().join("out.jsonl")), dead)
    }
}

/// Checks every key's changelog: counts 1..n with count == seq, the version
/// field changes at most once per swap and never goes back, and every record
/// fed after a swap was acknowledged comes from the new version.
pub(crate) fn check_output(records: &[Value], fed_rounds: i64, v2_from_round: i64) {
    let mut by_key: HashMap<String, Vec<&Value>> = HashMap::new();
    for r in records {
        by_key
            .entry(r["key"].as_str().unwrap().to_owned())
            .or_default()
            .push(r);
    }
    assert_eq!(by_key.len() as i64, KEYS);
    for (key, changelog) in by_key {
        assert_eq!(
            changelog.len() as i64,
            fed_rounds,
            "key {key}: records lost or duplicated"
        );
        let mut version = 1;
        for (i, r) in changelog.iter().enumerate() {
            let n = i as i64 + 1;
            assert_eq!(r["count"], n, "key {key}: record {i}: {r}");
            assert_eq!(r["seq"], n, "key {key}: count == seq: {r}");
            let v = r["version"].as_i64().unwrap();
            assert!(v >= version, "key {key}: version went back to {v}: {r}");
            version = v;
            if v == 2 {
                // Migrated from v1's count: the sum of 1..=n.
                assert_eq!(r["sum_seq"], n * (n + 1) / 2, "key {key}: {r}");
            }
            if n > v2_from_round {
                assert_eq!(v, 2, "key {key}: fed after the swap was acknowledged: {r}");
            }
        }
    }
}

fn swap_under_load(live: LiveRun) {
    let v2 = build("counter-v2");
    let broken = build("counter-broken");
    live.flow(500);

    // v1 → v2 through the CLI and the admin API: the state is migrated.
    let out = live.cli(&["deploy", "counter", s(&v2)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v2_from_round = live.round.load(Ordering::SeqCst);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("version 2 replaced version 1"), "{stdout}");
    assert!(
        stdout.contains(&format!("{KEYS} keys migrated")),
        "{stdout}"
    );
    live.flow(500);

    // Rolling back to v1 is refused: v1 cannot read v2's state.
    let out = live.cli(&["rollback", "counter"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot convert the newer state version 2"),
        "{stderr}"
    );
    assert_eq!(live.status().version, 2);

    // Files that are not operator components, through the API.
    for (bytes, expected) in [
        (b"hello".to_vec(), "not a WebAssembly file"),
        (
            b"\0asm\x01\0\0\0".to_vec(),
            "core WebAssembly module, not a component",
        ),
        (
            std::fs::read(build_wasm("not-an-operator")).unwrap(),
            "does not export `weir:operator/operator@0.1.0`",
        ),
    ] {
        let error = live
            .admin
            .deploy("counter", &bytes)
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{error}");
    }
    let error = live.admin.deploy("nope", b"x").unwrap_err().to_string();
    assert!(error.contains("no operator `nope`"), "{error}");
    assert_eq!(live.status().version, 2);
    // A version whose init traps, dropped atomically in the deploy folder:
    // refused, shown by `weir status`, nothing changes.
    let part = live.deploy_dir().join("counter.wasm.part");
    std::fs::copy(&broken, &part).unwrap();
    std::fs::rename(&part, live.deploy_dir().join("counter.wasm")).unwrap();
    let status = live.wait_for("the refusal", |s| {
        s.last_refusal
            .as_ref()
            .is_some_and(|r| r.origin == "deploy folder")
    });
    let reason = &status.last_refusal.as_ref().unwrap().reason;
    assert!(reason.contains("`init` trapped"), "{reason}");
    assert!(reason.contains("counter@v3"), "{reason}");
    assert_eq!(status.version, 2);
    let table = live.cli(&["status"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("`init` trapped"));
    live.flow(300);

    // v2 again by a plain write into the folder (a redeploy, no migration).
    // Its bytes are new to the compile cache, so it starts on baseline code
    // and moves to optimized code while records flow.
    let fresh = with_custom_section(
        &std::fs::read(&v2).unwrap(),
        &format!("{:?}", Instant::now()),
    );
    std::fs::write(live.deploy_dir().join("counter.wasm"), fresh).unwrap();
    live.wait_for("version 3", |s| s.version == 3);
    live.wait_for("optimized code", |s| {
        s.version == 3 && s.tier == "optimized"
    });
    live.flow(300);
    // Then a rollback to the previous v2, then v2 through the API.
    let out = live.cli(&["rollback", "counter"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(live.status().origin, "rollback to version 2");
    live.flow(300);
    let report = live
        .admin
        .deploy("counter", &std::fs::read(&v2).unwrap())
        .unwrap();
    assert_eq!(
        (report.version, report.replaced, report.migrated_keys),
        (5, 4, 0)
    );
    let status = live.wait_for("a batch on version 5", |s| s.first_batch_ms.is_some());
    assert_eq!(status.state_keys, KEYS);
    assert_eq!(status.previous_version, Some(4));
    live.flow(300);

    let fed_rounds_at_least = live.round.load(Ordering::SeqCst);
    let (records, dead) = live.finish();
    assert!(dead.is_empty(), "dead letters: {dead:?}");
    let fed_rounds = records.len() as i64 / KEYS;
    assert!(fed_rounds >= fed_rounds_at_least);
    check_output(&records, fed_rounds, v2_from_round);
}

#[test]
fn swaps_keep_every_count_with_one_worker() {
    swap_under_load(LiveRun::with_workers(&build("counter-v1"), 1));
}

#[test]
fn swaps_keep_every_count_in_the_example_with_four_workers() {
    swap_under_load(LiveRun::example());
}
