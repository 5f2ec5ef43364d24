//! Nexmark q0, q1 and q2 as Wasm operators, over the generator and over a
//! JSON Lines file of the same events, checked against results computed here
//! from that file.

use serde_json::{Value, json};
use std::path::Path;

use crate::support::{read_jsonl, run_ok, s};

/// Writes the example's events (same seed and count) as JSON Lines.
fn generate_events(dir: &Path) -> std::path::PathBuf {
    let pipeline = dir.join("gen.toml");
    let events = dir.join("events.jsonl");
    std::fs::write(
        &pipeline,
        format!(
            "[[source]]\ntype = \"nexmark\"\nevents = 100000\nseed = 42\n\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"{}\"\n",
            s(&events)
        ),
    )
    .unwrap();
    run_ok(&["run", s(&pipeline)]);
    events
}

fn expected(query: &str, events: &[Value]) -> Vec<Value> {
    let bids = events.iter().filter(|e| e["type"] == "bid");
    match query {
        "q0" => bids.cloned().collect(),
        "q1" => bids
            .map(|b| {
                json!({
                    "auction": b["auction"], "bidder": b["bidder"],
                    "price": b["price"].as_i64().unwrap() as f64 * 0.908,
                    "date_time": b["date_time"], "extra": b["extra"],
                })
            })
            .collect(),
        "q2" => bids
            .filter(|b| b["auction"].as_i64().unwrap() % 123 == 0)
            .map(|b| json!({"auction": b["auction"], "price": b["price"]}))
            .collect(),
        _ => unreachable!(),
    }
}

#[test]
fn q0_q1_q2_match_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let events_file = generate_events(dir.path());
    let events = read_jsonl(&events_file);
    assert_eq!(events.len(), 100_000);
    assert_eq!(events.iter().filter(|e| e["type"] == "bid").count(), 92_000);
    for query in ["q0", "q1", "q2"] {
        let want = expected(query, &events);
        assert!(!want.is_empty());
        let pipeline = format!("examples/nexmark/{query}.toml");
        let from_generator = dir.path().join(format!("{query}-gen.jsonl"));
        run_ok(&["run", &pipeline, "--output", s(&from_generator)]);
        assert_eq!(
            read_jsonl(&from_generator),
            want,
            "{query} over the generator"
        );
        let from_file = dir.path().join(format!("{query}-file.jsonl"));
        run_ok(&[
            "run",
            &pipeline,
            "--input",
            s(&events_file),
            "--output",
            s(&from_file),
        ]);
        assert_eq!(
            read_jsonl(&from_file),
            want,
            "{query} over the JSON Lines file"
        );
    }
}
