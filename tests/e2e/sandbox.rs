//! A guest that panics, loops forever, allocates without bound, recurses
//! without end, floods its output or its log, or reaches for files, sockets
//! and the environment: the run goes on, each bad record is dead-lettered
//! with the operator, version and reason, and every other record comes out
//! in order. Past its failure rate an operator goes on, pauses or stops the
//! run, as its `on_failure` says; its dead letters can be replayed into it.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{admin_address, read_jsonl, repo, run_ok, s, weir};
use weir::control::client::AdminClient;

/// A pipeline of the hostile operator over `lines`, with `top` added to the
/// pipeline's top level and `operator` to the operator's table.
fn hostile_pipeline(dir: &Path, lines: &[&str], top: &str, operator: &str) -> PathBuf {
    hostile_pipeline_with(dir, lines, top, operator, "")
}

/// [`hostile_pipeline`], with `limits` added to the operator's limits.
fn hostile_pipeline_with(
    dir: &Path,
    lines: &[&str],
    top: &str,
    operator: &str,
    limits: &str,
) -> PathBuf {
    let input = dir.join("in.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let pipeline = dir.join("hostile.toml");
    std::fs::write(
        &pipeline,
        format!(
            "{top}\n[[source]]\ntype = \"jsonl\"\npath = \"{}\"\n\n\
             [[operator]]\nid = \"hostile\"\ncrate = \"{}\"\n\
             limits = {{ call_timeout = \"300ms\", memory_mib = 64{limits} }}\n{operator}\n\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"out.jsonl\"\n\n\
             [dead_letter]\npath = \"dead.jsonl\"\n",
            s(&input),
            s(&repo().join("tests/fixtures/hostile"))
        ),
    )
    .unwrap();
    pipeline
}

/// The ids that came out of a hostile run in `dir`, and its dead letters,
/// each checked to name the operator, its version and the source.
fn hostile_results(dir: &Path) -> (Vec<i64>, Vec<Value>) {
    let out = read_jsonl(&dir.join("out.jsonl"))
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    let dead = read_jsonl(&dir.join("dead.jsonl"));
    for d in &dead {
        assert_eq!(d["operator"], "hostile");
        assert_eq!(d["version"], 1);
        assert_eq!(d["source"], "jsonl");
    }
    (out, dead)
}

/// Runs the hostile operator over `lines` (with `WEIR_LOG=info`, so the
/// guest's stdout shows) and returns the ids that came out, the dead
/// letters, and weir's stderr.
fn run_hostile(dir: &Path, lines: &[&str]) -> (Vec<i64>, Vec<Value>, String) {
    let pipeline = hostile_pipeline(dir, lines, "", "");
    let output = weir()
        .args(["run", s(&pipeline)])
        .env("WEIR_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let (out, dead) = hostile_results(dir);
    (out, dead, stderr)
}

fn lines_of(dead: &[Value]) -> Vec<u64> {
    dead.iter().map(|d| d["line"].as_u64().unwrap()).collect()
}

fn reason(dead_letter: &Value) -> &str {
    dead_letter["reason"].as_str().unwrap()
}

#[test]
fn hostile_records_are_dead_lettered_and_the_rest_flows() {
    let dir = tempfile::tempdir().unwrap();
    let (out, dead, _) = run_hostile(
        dir.path(),
        &[
            r#"{"id":1}"#,
            r#"{"id":2,"action":"panic"}"#,
            r#"{"id":3}"#,
            r#"{"id":4,"action":"loop"}"#,
            r#"{"id":5,"action":"alloc"}"#,
            r#"{"id":6}"#,
            r#"{"id":"seven"}"#,
            r#"{"id":8}"#,
        ],
    );
    assert_eq!(out, vec![1, 3, 6, 8]);
    assert_eq!(lines_of(&dead), vec![2, 4, 5, 7]);
    // The panic message from the guest's stderr, and where it failed.
    assert!(
        reason(&dead[0]).contains("asked to panic on record 2")
            && reason(&dead[0]).ends_with("(wasm backtrace: hostile::hostile)"),
        "{}",
        reason(&dead[0])
    );
    assert!(
        reason(&dead[1]).contains("call timeout"),
        "{}",
        reason(&dead[1])
    );
    // The limit the allocation ran into, not the allocator's backtrace.
    assert!(
        reason(&dead[2]).starts_with(
            "the operator exceeded its memory limit (`limits.memory_mib` = 64 MiB): it asked for "
        ),
        "{}",
        reason(&dead[2])
    );
    assert!(
        reason(&dead[3]).contains("field `id`"),
        "{}",
        reason(&dead[3])
    );
    assert_eq!(dead[0]["raw"], r#"{"id":2,"action":"panic"}"#);
}

#[test]
fn recursion_floods_and_reaching_outside_the_sandbox_are_contained() {
    let dir = tempfile::tempdir().unwrap();
    let (out, dead, stderr) = run_hostile(
        dir.path(),
        &[
            r#"{"id":1}"#,
            r#"{"id":2,"action":"recurse"}"#,
            r#"{"id":3,"action":"flood"}"#,
            r#"{"id":4,"action":"open-file"}"#,
            r#"{"id":5,"action":"connect"}"#,
            r#"{"id":6,"action":"env"}"#,
            r#"{"id":7,"action":"print"}"#,
            r#"{"id":8}"#,
        ],
    );
    assert_eq!(out, vec![1, 7, 8]);
    assert_eq!(lines_of(&dead), vec![2, 3, 4, 5, 6]);
    // The guest's own stack (in its linear memory) runs out before the
    // host's: the stack pointer leaves memory.
    let expected = [
        "trap: wasm trap: out of bounds memory access (wasm backtrace: hostile::recurse (x",
        "the call emitted 100000 records for 1 input record, over the limit of 1000 per \
         record (`max_output_per_record`)",
        "opening a file failed",
        "connecting failed",
        "reading HOME failed: environment variable not found",
    ];
    for (dead_letter, want) in dead.iter().zip(expected) {
        assert!(reason(dead_letter).contains(want), "{dead_letter}");
    }
    // The guest's output went to the log under its name, cut to the rate.
    for stream in ["stdout", "stderr"] {
        let logged = stderr
            .lines()
            .filter(|l| l.contains("hostile@v1") && l.contains(&format!("{stream}: {stream} line")))
            .count();
        // 1,000 lines in a burst: at most two one-second windows of 20.
        assert!(
            (20..=40).contains(&logged),
            "{stream}: {logged} lines\n{stderr}"
        );
    }
    assert!(
        stderr.contains("stdout: stdout line 0 of record 7"),
        "{stderr}"
    );
}

#[test]
fn an_operator_over_its_failure_rate_stops_the_pipeline_when_told_to() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = hostile_pipeline(
        dir.path(),
        &[
            r#"{"id":1}"#,
            r#"{"id":2,"action":"panic"}"#,
            r#"{"id":3,"action":"panic"}"#,
            r#"{"id":4,"action":"panic"}"#,
            r#"{"id":5}"#,
        ],
        "",
        r#"on_failure = { max_failures = 2, within = "1m", then = "stop" }"#,
    );
    let output = weir().args(["run", s(&pipeline)]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "error: operator `hostile@v1` failed 3 times within 1m, more than its \
             `on_failure.max_failures` (2), so the pipeline stops; the last failure: "
        ),
        "{stderr}"
    );
    assert!(stderr.contains("asked to panic on record 4"), "{stderr}");
    // Every failed record was dead-lettered before the stop.
    let dead = read_jsonl(&dir.path().join("dead.jsonl"));
    assert_eq!(lines_of(&dead), vec![2, 3, 4]);
}

#[test]
fn a_paused_operator_takes_nothing_until_resumed_and_then_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // One record per batch, so the pause falls between records.
    let pipeline = hostile_pipeline(
        dir.path(),
        &[
            r#"{"id":1}"#,
            r#"{"id":2,"action":"panic"}"#,
            r#"{"id":3,"action":"panic"}"#,
            r#"{"id":4}"#,
            r#"{"id":5}"#,
        ],
        "batch_size = 1",
        r#"on_failure = { max_failures = 1, then = "pause" }"#,
    );
    let mut child = weir()
        .args(["run", s(&pipeline), "--admin", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let address = admin_address(&mut child, Arc::clone(&log)).expect("the admin API starts");
    let client = AdminClient::new(address);
    let status = || client.status().unwrap().remove(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !status().paused {
        assert!(Instant::now() < deadline, "never paused: {:?}", log.lock());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The second failure paused it; the records after it wait.
    let paused = status();
    assert_eq!((paused.records_in, paused.failures), (3, 2));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status().records_in, 3, "a paused operator took input");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended while paused"
    );
    assert!(client.resume("hostile").unwrap());
    assert!(child.wait().unwrap().success(), "{:?}", log.lock());
    let (out, dead) = hostile_results(dir.path());
    assert_eq!(out, vec![1, 4, 5]);
    assert_eq!(lines_of(&dead), vec![2, 3]);
    let log = log.lock().unwrap().join("\n");
    assert!(
        log.contains("paused after 2 failures within 1m") && log.contains("weir resume hostile"),
        "{log}"
    );
}

#[test]
fn dead_letters_replayed_after_a_fix_come_out_and_nothing_else_moves() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("live.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[[source]]\ntype = \"stdin\"\n\n\
             [[operator]]\nid = \"hostile\"\ncrate = \"{}\"\n\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"out.jsonl\"\n\n\
             [dead_letter]\npath = \"dead.jsonl\"\n",
            s(&repo().join("tests/fixtures/hostile"))
        ),
    )
    .unwrap();
    let mut child = weir()
        .args(["run", s(&pipeline), "--admin", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let address = admin_address(&mut child, Arc::clone(&log)).expect("the admin API starts");
    let mut stdin = child.stdin.take().unwrap();
    writeln!(
        stdin,
        "{{\"id\":1}}\nnot json\n{{\"id\":2,\"action\":\"panic\"}}\n{{\"id\":3}}"
    )
    .unwrap();
    stdin.flush().unwrap();
    let client = AdminClient::new(address);
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.status().unwrap()[0].failures < 1 {
        assert!(Instant::now() < deadline, "no failure: {:?}", log.lock());
        std::thread::sleep(Duration::from_millis(20));
    }
    // A fixed version (it passes everything through), then the replay.
    let admin = address.to_string();
    let fixed = repo().join("tests/fixtures/passthrough-c");
    run_ok(&["deploy", "hostile", s(&fixed), "--admin", &admin]);
    let dead = dir.path().join("dead.jsonl");
    let replay = run_ok(&["dlq", "replay", "hostile", s(&dead), "--admin", &admin]);
    assert_eq!(
        String::from_utf8_lossy(&replay.stdout),
        "hostile: 1 dead letters replayed (1 of other operators or sources left alone, 0 \
         unreadable)\n"
    );
    drop(stdin);
    assert!(child.wait().unwrap().success(), "{:?}", log.lock());
    let out: Vec<Value> = read_jsonl(&dir.path().join("out.jsonl"));
    let ids: Vec<i64> = out.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![1, 3, 2]);
    assert_eq!(out[2]["action"], "panic");
    // The dead letters are as they were: the replayed record is not refused again.
    let dead = read_jsonl(&dead);
    assert_eq!(lines_of(&dead), vec![2, 3]);
    assert_eq!(dead[1]["version"], 1);
}

#[test]
fn clocks_and_random_numbers_are_the_hosts_only_when_granted() {
    let lines = [
        r#"{"id":1,"action":"clock"}"#,
        r#"{"id":2,"action":"random"}"#,
        r#"{"id":3,"action":"random"}"#,
    ];
    let ids = |limits: &str| {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = hostile_pipeline_with(dir.path(), &lines, "", "", limits);
        run_ok(&["run", s(&pipeline)]);
        hostile_results(dir.path()).0
    };
    // Not granted: the clock stands at 0, and random numbers are a fixed
    // sequence, the same in every instance and every run.
    let denied = ids("");
    assert_eq!(denied[0], 0);
    assert_eq!(ids("")[1..], denied[1..]);
    let granted = ids(r#", allow = ["clocks", "random"]"#);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - 600..=now).contains(&granted[0]), "{granted:?}");
    assert_ne!(
        granted[1], granted[2],
        "two draws of the host's random numbers"
    );
    assert_ne!(granted[1..], denied[1..]);
}
