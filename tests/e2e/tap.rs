//! `weir tap`: a key followed through two keyed operators shows every one
//! of its records going in and out of each, with the key's state before and
//! after; an edge tap shows records of that edge; and a tapped run's output
//! is byte for byte an untapped run's.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir::control::client::AdminClient;

use crate::hot_swap::build;
use crate::support::{admin_address, s, weir};

const KEYS: i64 = 8;
const ROUNDS: i64 = 400;

/// `{"key", "seq"}` records of rounds `from..to`, `KEYS` keys a round.
fn rounds(from: i64, to: i64) -> String {
    let mut text = String::new();
    for seq in from..to {
        for key in 0..KEYS {
            text.push_str(&format!("{{\"key\":\"k{key}\",\"seq\":{seq}}}\n"));
        }
    }
    text
}

/// Two counters in a row, each keyed by `key` with its own state.
fn pipeline(dir: &Path, counter: &Path) -> std::path::PathBuf {
    let pipeline = dir.join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[[source]]\nname = \"ticks\"\ntype = \"stdin\"\n\n\
             [[operator]]\nid = \"counter\"\nmodule = \"{0}\"\nkey_by = \"key\"\n\n\
             [[operator]]\nid = \"recount\"\nmodule = \"{0}\"\nkey_by = \"key\"\n\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"out.jsonl\"\n\n\
             [dead_letter]\npath = \"dead-letter.jsonl\"\n",
            s(counter)
        ),
    )
    .unwrap();
    pipeline
}

/// Starts `weir tap ARGS --json` and waits for it to say it is attached;
/// its stdout lines go to the returned buffer.
fn tap(address: &str, args: &[&str]) -> (Child, Arc<Mutex<Vec<String>>>) {
    let mut child = weir()
        .arg("tap")
        .args(args)
        .args(["--json", "--admin", address])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("weir: "), "weir tap said: {line}");
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            eprintln!("weir tap: {line}");
        }
    });
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let kept = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            kept.lock().unwrap().push(line);
        }
    });
    (child, lines)
}

fn events(lines: &Mutex<Vec<String>>) -> Vec<Value> {
    lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

#[test]
fn a_followed_key_shows_every_record_and_state_and_the_output_is_unchanged() {
    let counter = build("counter-v1");
    let input_first = rounds(1, ROUNDS / 2 + 1);
    let input_second = rounds(ROUNDS / 2 + 1, ROUNDS + 1);

    // Untapped.
    let plain = tempfile::tempdir().unwrap();
    let mut child = weir()
        .args(["run", s(&pipeline(plain.path(), &counter))])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input_first.as_bytes()).unwrap();
    stdin.write_all(input_second.as_bytes()).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let untapped = std::fs::read(plain.path().join("out.jsonl")).unwrap();
    assert_eq!(
        untapped.iter().filter(|&&b| b == b'\n').count() as i64,
        ROUNDS * KEYS
    );

    // Tapped: the first half flows through untapped, then two taps attach
    // (key k3, and the edge out of `recount`) and the second half flows.
    let tapped = tempfile::tempdir().unwrap();
    let mut child = weir()
        .args([
            "run",
            s(&pipeline(tapped.path(), &counter)),
            "--admin",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let address = admin_address(&mut child, Arc::clone(&log)).expect("the admin API starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input_first.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let client = AdminClient::new(address);
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.status().unwrap()[1].records_out < (ROUNDS / 2 * KEYS) as u64 {
        assert!(
            Instant::now() < deadline,
            "the first half never went through"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let address = address.to_string();
    let (mut key_tap, key_lines) = tap(&address, &["--key", "k3"]);
    let (mut edge_tap, edge_lines) = tap(&address, &["recount", "--rate", "100000"]);
    stdin.write_all(input_second.as_bytes()).unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success(), "{:?}", log.lock().unwrap());
    // The taps end with the pipeline.
    assert!(key_tap.wait().unwrap().success());
    assert!(edge_tap.wait().unwrap().success());
    let tapped_output = std::fs::read(tapped.path().join("out.jsonl")).unwrap();
    assert!(tapped_output == untapped, "a tap changed the output");

    // Key k3 at each operator: its records 201..=400 in and out, in order,
    // each batch's state before it the state after the one before.
    let followed = events(&key_lines);
    for operator in ["counter", "recount"] {
        let at: Vec<&Value> = followed
            .iter()
            .filter(|e| e["operator"] == operator)
            .collect();
        let seqs = |stage: &str| -> Vec<i64> {
            at.iter()
                .filter(|e| e["stage"] == stage)
                .map(|e| {
                    assert_eq!(e["record"]["key"], "k3", "{e}");
                    e["record"]["seq"].as_i64().unwrap()
                })
                .collect()
        };
        let expected: Vec<i64> = (ROUNDS / 2 + 1..=ROUNDS).collect();
        assert_eq!(seqs("in"), expected, "{operator}: records in");
        assert_eq!(seqs("out"), expected, "{operator}: records out");
        let mut state = ROUNDS / 2;
        let mut last_in = None;
        for event in &at {
            match event["stage"].as_str().unwrap() {
                "in" => {
                    // Every record of a batch shows the state before the batch.
                    assert!(
                        event["state"].as_i64().unwrap() == state,
                        "{operator}: {event}"
                    );
                    last_in = event["record"]["seq"].as_i64();
                }
                "out" => {
                    let seq = event["record"]["seq"].as_i64().unwrap();
                    assert_eq!(event["record"]["count"], seq, "{operator}: {event}");
                    assert_eq!(event["output"], "out");
                }
                "state" => {
                    // After a batch, the count of its last record.
                    assert_eq!(event["state"].as_i64(), last_in, "{operator}: {event}");
                    state = last_in.unwrap();
                }
                other => panic!("unexpected stage {other}: {event}"),
            }
            assert_eq!(event["version"], 1);
        }
        assert_eq!(state, ROUNDS, "{operator}: the last state");
    }

    // The edge tap saw records of `recount`'s output, each one in the output.
    let output_lines: std::collections::HashSet<Value> = String::from_utf8(tapped_output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let edge = events(&edge_lines);
    assert!(!edge.is_empty(), "the edge tap saw nothing");
    for event in &edge {
        assert_eq!(event["operator"], "recount", "{event}");
        assert_eq!(event["stage"], "out", "{event}");
        assert!(output_lines.contains(&event["record"]), "{event}");
    }
}

#[test]
fn a_tap_on_an_unknown_operator_is_an_error_naming_the_known_ones() {
    let counter = build("counter-v1");
    let dir = tempfile::tempdir().unwrap();
    let mut child = weir()
        .args([
            "run",
            s(&pipeline(dir.path(), &counter)),
            "--admin",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let address = admin_address(&mut child, Arc::clone(&log)).expect("the admin API starts");
    let out = weir()
        .args(["tap", "nope.late", "--admin", &address.to_string()])
        .output()
        .unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: no operator `nope` in this pipeline (known: `counter`, `recount`)"
    );
}
