//! Bad input for every decoder: truncated lines, invalid UTF-8, a line over
//! the length limit, wrong types and missing fields. Each bad line is one
//! dead letter with a clear reason, and exactly the good records come out.

use serde_json::Value;
use std::path::Path;

use crate::support::{read_jsonl, repo, run_ok, s};

/// Runs `pipeline` (TOML, its source reading `input` in `dir`) and returns
/// the records out, the dead letters and the run's summary line.
fn run(dir: &Path, input: &[u8], pipeline: &str) -> (Vec<Value>, Vec<Value>, String) {
    std::fs::write(dir.join("input"), input).unwrap();
    let file = dir.join("pipeline.toml");
    std::fs::write(&file, pipeline).unwrap();
    let output = run_ok(&["run", s(&file)]);
    let summary = String::from_utf8_lossy(&output.stderr)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    (
        read_jsonl(&dir.join("out.jsonl")),
        read_jsonl(&dir.join("dead.jsonl")),
        summary,
    )
}

const SINKS: &str = "[[sink]]\ntype = \"jsonl\"\npath = \"out.jsonl\"\n\n\
                     [dead_letter]\npath = \"dead.jsonl\"\n";

fn reasons(dead: &[Value]) -> Vec<(u64, &str)> {
    dead.iter()
        .map(|d| (d["line"].as_u64().unwrap(), d["reason"].as_str().unwrap()))
        .collect()
}

#[test]
fn bad_json_lines_are_dead_letters_and_the_good_ones_all_come_out() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!("{{\"id\":9,\"pad\":\"{}\"}}", "x".repeat(17 << 20));
    let mut input: Vec<u8> = Vec::new();
    for line in [
        &br#"{"id":1}"#[..],
        br#"{"id":2,"action":"#,               // truncated
        b"{\"id\":3,\"action\":\"\xff\xfe\"}", // not UTF-8
        br#"{"id":"four"}"#,                   // wrong type
        br#"{"action":"none"}"#,               // missing field
        br#"[5]"#,                             // not an object
        br#"{"id":7}"#,
        long.as_bytes(), // over the line limit
        br#"{"id":9}"#,
    ] {
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    // The hostile operator passes records through; its `id` is an integer.
    let pipeline = format!(
        "[[source]]\ntype = \"jsonl\"\npath = \"input\"\n\n\
         [[operator]]\nid = \"hostile\"\ncrate = \"{}\"\n\n{SINKS}",
        s(&repo().join("tests/fixtures/hostile"))
    );
    let (out, dead, summary) = run(dir.path(), &input, &pipeline);
    let ids: Vec<i64> = out.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![1, 7, 9]);
    assert!(
        summary.starts_with("weir: 9 records in, 3 out, 6 dead-lettered in "),
        "{summary}"
    );
    let got = reasons(&dead);
    let lines: Vec<u64> = got.iter().map(|(line, _)| *line).collect();
    // Lines that are not text or too long go as they are read, lines that
    // do not parse as their batch is decoded, then the operator's.
    assert_eq!(lines, vec![3, 8, 2, 6, 4, 5], "{got:?}");
    let reason = |line: u64| got.iter().find(|(l, _)| *l == line).unwrap().1;
    assert!(
        reason(2).starts_with("invalid JSON: EOF while parsing"),
        "{}",
        reason(2)
    );
    assert_eq!(reason(3), "the line is not valid UTF-8");
    assert!(reason(6).starts_with("not a JSON object"), "{}", reason(6));
    assert_eq!(
        reason(8),
        format!(
            "the line is {} bytes long, over the limit of 16777216 (its first 1024 bytes are \
             kept here)",
            long.len() + 1
        )
    );
    assert!(reason(4).contains("field `id`"), "{}", reason(4));
    assert!(reason(5).contains("missing field `id`"), "{}", reason(5));
    // Dead letters of the source name no operator; the operator's do.
    assert!(dead[0].get("operator").is_none());
    assert_eq!(dead[4]["operator"], "hostile");
    assert_eq!(dead[1]["raw"].as_str().unwrap().len(), 1024);
}

#[test]
fn bad_csv_lines_are_dead_letters_and_the_good_ones_all_come_out() {
    let dir = tempfile::tempdir().unwrap();
    let input = b"id,name\n1,ada\n2\n3,\xff\n4,bob,extra\n\"5,unterminated\n6,grace\n";
    let pipeline = format!("[[source]]\ntype = \"csv\"\npath = \"input\"\n\n{SINKS}");
    let (out, dead, summary) = run(dir.path(), input, &pipeline);
    assert_eq!(
        out,
        vec![
            serde_json::json!({"id": 1, "name": "ada"}),
            serde_json::json!({"id": 6, "name": "grace"}),
        ]
    );
    assert!(
        summary.starts_with("weir: 6 records in, 2 out, 4 dead-lettered in "),
        "{summary}"
    );
    assert_eq!(
        reasons(&dead),
        vec![
            (4, "the line is not valid UTF-8"),
            (3, "expected 2 fields, found 1"),
            (5, "expected 2 fields, found 3"),
            (
                6,
                "unterminated quoted field (quoted fields spanning lines are not supported)"
            ),
        ]
    );
}
