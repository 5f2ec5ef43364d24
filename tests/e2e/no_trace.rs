//! A record or a timer that ends in the dead letters leaves no effect, in
//! every language: the `ledger` fixture (`tests/fixtures/ledger`) changes its
//! key's value state and map state, registers a timer and emits to a side
//! output and the main output, and only then refuses (Rust `Err`, a Python
//! exception, a thrown JavaScript error, C `weir_reject`) or runs out of
//! memory. The keys' later records, the timers that fire, the side outputs
//! and the dead letters are checked exactly; a refused record replayed with
//! `weir dlq replay` after a fixed version is deployed counts once.
//!
//! These tests need the Python, JavaScript and C build tools (`.ci/run`
//! installs them); `weir` builds the operator folders itself.

use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir::control::client::AdminClient;

use crate::support::{admin_address, read_jsonl, repo, run_ok, s, weir};

/// The memory limit the ledger runs under, which its hog record exceeds.
const MEMORY_MIB: u64 = 160;

/// The ledger's folder in `language` (`rust`, `py`, `js` or `c`) and the
/// pipeline key naming it.
fn ledger(language: &str) -> (PathBuf, &'static str) {
    let dir = repo().join("tests/fixtures/ledger").join(language);
    let field = if language == "rust" {
        "crate"
    } else {
        "project"
    };
    (dir, field)
}

/// The fixed ledger in `language`, refusing nothing: the `rust-fixed` crate,
/// or a copy of the project in `dir` with its `REFUSES` switched off, as a
/// developer's fix would be.
fn fixed_ledger(language: &str, dir: &Path) -> PathBuf {
    if language == "rust" {
        return repo().join("tests/fixtures/ledger/rust-fixed");
    }
    let (from, file, on, off) = match language {
        "py" => ("py", "app.py", "REFUSES = True\n", "REFUSES = False\n"),
        "js" => (
            "js",
            "app.js",
            "const REFUSES = true;\n",
            "const REFUSES = false;\n",
        ),
        "c" => ("c", "app.c", "#define REFUSES 1\n", "#define REFUSES 0\n"),
        other => panic!("no ledger in {other}"),
    };
    let to = dir.join(format!("ledger-fixed-{from}"));
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(ledger(language).0).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    let source = std::fs::read_to_string(to.join(file)).unwrap();
    assert_eq!(source.matches(on).count(), 1, "{file} says once `{on}`");
    std::fs::write(to.join(file), source.replace(on, off)).unwrap();
    to
}

/// A pipeline file in `dir` running the ledger at `operator` (with `field`)
/// keyed by `key`, from `source` (a `[[source]]` table's body), writing its
/// main output, its side outputs `audit` and `fired` and its dead letters
/// into `dir`; `top` goes to the file's top level.
fn pipeline(dir: &Path, top: &str, source: &str, operator: &Path, field: &str) -> PathBuf {
    let file = dir.join("ledger.toml");
    std::fs::write(
        &file,
        format!(
            "{top}\n[[source]]\nname = \"entries\"\n{source}\n\n\
             [[operator]]\nid = \"ledger\"\n{field} = \"{}\"\nkey_by = \"key\"\n\
             limits = {{ memory_mib = {MEMORY_MIB} }}\n\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"out.jsonl\"\n\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"audit.jsonl\"\nfrom = \"ledger.audit\"\n\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"fired.jsonl\"\nfrom = \"ledger.fired\"\n\n\
             [dead_letter]\npath = \"dead.jsonl\"\n",
            s(operator)
        ),
    )
    .unwrap();
    file
}

/// What a ledger run in `dir` wrote: main output, `audit`, `fired`, dead letters.
struct Outputs {
    out: Vec<Value>,
    audit: Vec<Value>,
    fired: Vec<Value>,
    dead: Vec<Value>,
}

fn outputs(dir: &Path) -> Outputs {
    let read = |name: &str| {
        let path = dir.join(name);
        if path.exists() {
            read_jsonl(&path)
        } else {
            Vec::new()
        }
    };
    Outputs {
        out: read("out.jsonl"),
        audit: read("audit.jsonl"),
        fired: read("fired.jsonl"),
        dead: read("dead.jsonl"),
    }
}

/// Three batches of four records, keys `a` and `z`. Line 3 and line 11 are
/// refused after their effects, line 7 runs out of memory after them, and
/// every timer of key `z` is refused after its effects. Batch by batch the
/// watermark (the largest `ts`, no delay) fires the timers registered at
/// `ts + 10`: after the second batch those at 1010 to 1015, after the third
/// the one at 1030, and at the end of the input the rest.
const ENTRIES: [&str; 12] = [
    r#"{"key":"a","value":1,"ts":1000}"#,
    r#"{"key":"z","value":2,"ts":1001}"#,
    r#"{"key":"a","value":100,"ts":1002,"bad":true}"#,
    r#"{"key":"a","value":3,"ts":1003}"#,
    r#"{"key":"z","value":2,"ts":1004}"#,
    r#"{"key":"a","value":3,"ts":1005}"#,
    r#"{"key":"z","value":100,"ts":1006,"hog":true}"#,
    r#"{"key":"a","value":1,"ts":1020}"#,
    r#"{"key":"a","value":4,"ts":1040}"#,
    r#"{"key":"z","value":5,"ts":1041}"#,
    r#"{"key":"a","value":100,"ts":1042,"bad":true}"#,
    r#"{"key":"z","value":2,"ts":1043}"#,
];

fn balance(key: &str, value: i64, [sum, count, fired, distinct, total]: [i64; 5]) -> Value {
    json!({"key": key, "value": value, "sum": sum, "count": count, "fired": fired,
           "distinct": distinct, "total": total})
}

fn fired(key: &str, time: i64, [sum, count, fired, timers]: [i64; 4]) -> Value {
    json!({"key": key, "time": time, "sum": sum, "count": count, "fired": fired,
           "timers": timers})
}

fn audit(entries: &[(&str, i64)]) -> Vec<Value> {
    entries
        .iter()
        .map(|(key, value)| json!({"key": key, "value": value}))
        .collect()
}

/// Runs the ledger in `language` over [`ENTRIES`] and checks every output:
/// as if the refused and trapped records and the refused timers had never
/// been there.
fn refusals_leave_no_effect(language: &str) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("entries.jsonl");
    std::fs::write(&input, ENTRIES.join("\n") + "\n").unwrap();
    let (operator, field) = ledger(language);
    let source = format!(
        "type = \"jsonl\"\npath = \"{}\"\nevent_time = {{ field = \"ts\", watermark_delay = \"0s\" }}",
        s(&input)
    );
    let file = pipeline(dir.path(), "batch_size = 4", &source, &operator, field);
    run_ok(&["run", s(&file)]);
    let got = outputs(dir.path());

    // Each key's sum, count and map state `seen` (distinct values, entries)
    // go on from its last kept record: nothing of lines 3, 7 and 11 stayed.
    // `fired` counts the timers that fired for the key: key `z`'s were all
    // refused, so none of their state changes stayed either.
    assert_eq!(
        got.out,
        vec![
            balance("a", 1, [1, 1, 0, 1, 1]),
            balance("z", 2, [2, 1, 0, 1, 1]),
            balance("a", 3, [4, 2, 0, 2, 2]),
            balance("z", 2, [4, 2, 0, 1, 2]),
            balance("a", 3, [7, 3, 0, 2, 3]),
            balance("a", 1, [8, 4, 0, 2, 4]),
            balance("a", 4, [12, 5, 3, 3, 5]),
            balance("z", 5, [9, 3, 0, 2, 3]),
            balance("z", 2, [11, 4, 0, 2, 4]),
        ],
        "{language}: main output"
    );
    assert_eq!(
        got.audit,
        audit(&[
            ("a", 1),
            ("z", 2),
            ("a", 3),
            ("z", 2),
            ("a", 3),
            ("a", 1),
            ("a", 4),
            ("z", 5),
            ("z", 2),
        ]),
        "{language}: side output `audit`"
    );
    // Only the kept records' timers fire (none at 1012, 1016 or 1052), and
    // key `z`'s refused timers left no mark in the map state `timers` or
    // the count `fired`, nor took key `a`'s timers of the same call along.
    assert_eq!(
        got.fired,
        vec![
            fired("a", 1010, [8, 4, 1, 1]),
            fired("a", 1013, [8, 4, 2, 2]),
            fired("a", 1015, [8, 4, 3, 3]),
            fired("a", 1030, [12, 5, 4, 4]),
            fired("a", 1050, [12, 5, 5, 5]),
        ],
        "{language}: side output `fired`"
    );

    let dead = &got.dead;
    let summary: Vec<(Value, Value, Value)> = dead
        .iter()
        .map(|d| {
            (
                d["source"].clone(),
                d["line"].clone(),
                d["operator"].clone(),
            )
        })
        .collect();
    let entry = |line: u64| (json!("entries"), json!(line), json!("ledger"));
    let timer = (json!("timers"), json!(0), json!("ledger"));
    assert_eq!(
        summary,
        vec![
            entry(3),
            entry(7),
            timer.clone(),
            timer.clone(),
            entry(11),
            timer.clone(),
            timer
        ],
        "{language}: dead letters {dead:#?}"
    );
    let raw = |d: &Value| -> Value { serde_json::from_str(d["raw"].as_str().unwrap()).unwrap() };
    let reason = |d: &Value| d["reason"].as_str().unwrap().to_owned();
    for (d, line) in [(&dead[0], 3), (&dead[4], 11)] {
        assert_eq!(
            raw(d),
            serde_json::from_str::<Value>(ENTRIES[line - 1]).unwrap()
        );
        assert_eq!(reason(d), "refused value 100", "{language}");
    }
    assert_eq!(
        raw(&dead[1]),
        serde_json::from_str::<Value>(ENTRIES[6]).unwrap()
    );
    let memory = format!(
        "the operator exceeded its memory limit (`limits.memory_mib` = {MEMORY_MIB} MiB): it \
         asked for "
    );
    assert!(
        reason(&dead[1]).starts_with(&memory),
        "{language}: {}",
        reason(&dead[1])
    );
    for (d, time) in [
        (&dead[2], 1011),
        (&dead[3], 1014),
        (&dead[5], 1051),
        (&dead[6], 1053),
    ] {
        assert_eq!(raw(d), json!({"timer": time, "key": "z"}), "{language}");
        assert_eq!(
            reason(d),
            format!(
                "the timer function failed: timer at {time} for key `z`: refused a timer of key z"
            ),
            "{language}"
        );
    }
    for d in dead {
        assert_eq!(d["version"], 1, "{language}: {d}");
    }
}

#[test]
fn refused_records_and_timers_leave_no_effect_in_rust() {
    refusals_leave_no_effect("rust");
}

#[test]
fn refused_records_and_timers_leave_no_effect_in_python() {
    refusals_leave_no_effect("py");
}

#[test]
fn refused_records_and_timers_leave_no_effect_in_javascript() {
    refusals_leave_no_effect("js");
}

#[test]
fn refused_records_and_timers_leave_no_effect_in_c() {
    refusals_leave_no_effect("c");
}

/// Records of which lines 3 and 5 are refused, and one last record per key
/// that shows the key's final state. Without event time every timer fires at
/// the end of the input.
const REPLAYED: [&str; 6] = [
    r#"{"key":"a","value":1,"ts":1000}"#,
    r#"{"key":"z","value":2,"ts":1001}"#,
    r#"{"key":"a","value":100,"ts":1002,"bad":true}"#,
    r#"{"key":"a","value":3,"ts":1003}"#,
    r#"{"key":"z","value":100,"ts":1004,"bad":true}"#,
    r#"{"key":"z","value":5,"ts":1005}"#,
];
const LAST: [&str; 2] = [
    r#"{"key":"a","value":0,"ts":2000}"#,
    r#"{"key":"z","value":0,"ts":2001}"#,
];

/// Polls `condition` until it holds, for at most a minute.
fn wait_for(what: &str, log: &Mutex<Vec<String>>, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            log.lock()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The ledger in `language` refuses two records of a running pipeline; the
/// fixed version is deployed and the dead letters replayed into it. The
/// final state (each key's last record, every timer's output) is that of a
/// run of the fixed version on the same records, where nothing was refused.
fn a_replay_after_a_fix_counts_once(language: &str) {
    let dir = tempfile::tempdir().unwrap();
    let fixed = fixed_ledger(language, dir.path());

    let never_refused = dir.path().join("never-refused");
    std::fs::create_dir(&never_refused).unwrap();
    let input = never_refused.join("entries.jsonl");
    let all: Vec<&str> = REPLAYED.iter().chain(&LAST).copied().collect();
    std::fs::write(&input, all.join("\n") + "\n").unwrap();
    let source = format!("type = \"jsonl\"\npath = \"{}\"", s(&input));
    let file = pipeline(&never_refused, "", &source, &fixed, ledger(language).1);
    run_ok(&["run", s(&file)]);
    let want = outputs(&never_refused);
    assert!(want.dead.is_empty(), "{language}: {:?}", want.dead);
    assert_eq!(
        want.out[6..],
        [
            balance("a", 0, [104, 4, 0, 4, 4]),
            balance("z", 0, [107, 4, 0, 4, 4])
        ],
        "{language}: the fixed version's final state"
    );

    let live = dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    let (operator, field) = ledger(language);
    // Built beforehand, so the run starts at once.
    run_ok(&["build", s(&operator)]);
    let file = pipeline(&live, "", "type = \"stdin\"", &operator, field);
    let mut child = weir()
        .args(["run", s(&file), "--admin", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let address = admin_address(&mut child, Arc::clone(&log)).expect("the admin API starts");
    let client = AdminClient::new(address);
    let records_in = || client.status().unwrap()[0].records_in;
    let dead_letters = live.join("dead.jsonl");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all((REPLAYED.join("\n") + "\n").as_bytes())
        .unwrap();
    stdin.flush().unwrap();
    wait_for("the refusals", &log, || {
        std::fs::read_to_string(&dead_letters).is_ok_and(|t| t.lines().count() == 2)
            && records_in() >= REPLAYED.len() as u64
    });

    let admin = address.to_string();
    run_ok(&["deploy", "ledger", s(&fixed), "--admin", &admin]);
    let replay = run_ok(&[
        "dlq",
        "replay",
        "ledger",
        s(&dead_letters),
        "--admin",
        &admin,
    ]);
    assert_eq!(
        String::from_utf8_lossy(&replay.stdout),
        "ledger: 2 dead letters replayed (0 of other operators or sources left alone, 0 \
         unreadable)\n"
    );
    // The last records go in after the replayed ones.
    wait_for("the replayed records", &log, || {
        records_in() >= REPLAYED.len() as u64 + 2
    });
    stdin
        .write_all((LAST.join("\n") + "\n").as_bytes())
        .unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success(), "{:?}", log.lock());

    let got = outputs(&live);
    assert_eq!(got.out.len(), all.len(), "{language}: {:?}", got.out);
    assert_eq!(got.out[6..], want.out[6..], "{language}: the final state");
    assert_eq!(got.fired, want.fired, "{language}: the timers");
    let sorted = |mut records: Vec<Value>| {
        records.sort_by_key(|r| r.to_string());
        records
    };
    assert_eq!(sorted(got.audit), sorted(want.audit), "{language}: `audit`");
    // The refusals of version 1, once: version 2 refused nothing.
    let refused: Vec<(Value, Value, Value)> = got
        .dead
        .iter()
        .map(|d| (d["line"].clone(), d["version"].clone(), d["reason"].clone()))
        .collect();
    assert_eq!(
        refused,
        vec![
            (json!(3), json!(1), json!("refused value 100")),
            (json!(5), json!(1), json!("refused value 100")),
        ],
        "{language}"
    );
}

#[test]
fn a_refused_record_replayed_after_a_fix_counts_once_in_rust() {
    a_replay_after_a_fix_counts_once("rust");
}

#[test]
fn a_refused_record_replayed_after_a_fix_counts_once_in_python() {
    a_replay_after_a_fix_counts_once("py");
}

#[test]
fn a_refused_record_replayed_after_a_fix_counts_once_in_javascript() {
    a_replay_after_a_fix_counts_once("js");
}

#[test]
fn a_refused_record_replayed_after_a_fix_counts_once_in_c() {
    a_replay_after_a_fix_counts_once("c");
}
