//! Nexmark q0, q1, q2, q5 and q7 as Wasm operators, over the generator and over a
//! JSON Lines file of the same events, checked against results computed here
//! from that file.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

use crate::support::{read_jsonl, run_ok, s};

/// Writes the example's events (same seed, count and rate) as JSON Lines.
fn generate_events(dir: &Path, rate: u64) -> std::path::PathBuf {
    let pipeline = dir.join("gen.toml");
    let events = dir.join(format!("events-{rate}.jsonl"));
    std::fs::write(
        &pipeline,
        format!(
            "[[source]]\ntype = \"nexmark\"\nevents = 100000\nseed = 42\nrate = {rate}\n\n\
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
        "q5" => hot_items(events),
        "q7" => highest_bids(events),
        _ => unreachable!(),
    }
}

/// Event times of the bids that are not late: the watermark each event
/// arrives under is the largest earlier `date_time` minus 4 s, and a window
/// ending at or before it is closed.
fn on_time_bids(events: &[Value]) -> Vec<(&Value, i64, i64)> {
    let mut max_seen: Option<i64> = None;
    let mut bids = Vec::new();
    for e in events {
        let time = e["date_time"].as_i64().unwrap();
        let watermark = max_seen.map_or(i64::MIN, |m| m - 4_000);
        if e["type"] == "bid" {
            bids.push((e, time, watermark));
        }
        max_seen = Some(max_seen.map_or(time, |m| m.max(time)));
    }
    bids
}

/// q5 written independently: bids per auction per 10 s window sliding every
/// 2 s; per window, the auctions with the most bids, in auction order.
fn hot_items(events: &[Value]) -> Vec<Value> {
    let mut counts: BTreeMap<i64, BTreeMap<i64, i64>> = BTreeMap::new();
    for (bid, time, watermark) in on_time_bids(events) {
        let mut start = time - time.rem_euclid(2_000);
        while start > time - 10_000 {
            let end = start + 10_000;
            if end - 1 > watermark {
                let auction = bid["auction"].as_i64().unwrap();
                *counts.entry(end).or_default().entry(auction).or_default() += 1;
            }
            start -= 2_000;
        }
    }
    let mut out = Vec::new();
    for (end, auctions) in counts {
        let best = auctions.values().copied().max().unwrap_or(0);
        for (auction, count) in auctions.into_iter().filter(|(_, c)| *c == best) {
            out.push(json!({"window_end": end, "auction": auction, "count": count}));
        }
    }
    out
}

/// q7 written independently: per 10 s tumbling window, every bid with the
/// window's highest price, in arrival order.
fn highest_bids(events: &[Value]) -> Vec<Value> {
    let mut windows: BTreeMap<i64, (i64, Vec<&Value>)> = BTreeMap::new();
    for (bid, time, watermark) in on_time_bids(events) {
        let end = time - time.rem_euclid(10_000) + 10_000;
        if end - 1 <= watermark {
            continue;
        }
        let price = bid["price"].as_i64().unwrap();
        let (top, bids) = windows.entry(end).or_insert((i64::MIN, Vec::new()));
        if price > *top {
            *top = price;
            bids.clear();
        }
        if price == *top {
            bids.push(bid);
        }
    }
    windows
        .into_iter()
        .flat_map(|(end, (_, bids))| {
            bids.into_iter().map(move |b| {
                json!({"window_end": end, "auction": b["auction"], "bidder": b["bidder"],
                       "price": b["price"], "date_time": b["date_time"]})
            })
        })
        .collect()
}

/// Runs `query`'s example over the generator and over `events_file`, and
/// compares both outputs with `want`.
fn check_query(dir: &Path, query: &str, events_file: &Path, want: &[Value]) {
    assert!(!want.is_empty());
    let pipeline = format!("examples/nexmark/{query}.toml");
    let from_generator = dir.join(format!("{query}-gen.jsonl"));
    run_ok(&["run", &pipeline, "--output", s(&from_generator)]);
    assert_eq!(
        read_jsonl(&from_generator),
        want,
        "{query} over the generator"
    );
    let from_file = dir.join(format!("{query}-file.jsonl"));
    run_ok(&[
        "run",
        &pipeline,
        "--input",
        s(events_file),
        "--output",
        s(&from_file),
    ]);
    assert_eq!(
        read_jsonl(&from_file),
        want,
        "{query} over the JSON Lines file"
    );
}

#[test]
fn q0_q1_q2_match_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let events_file = generate_events(dir.path(), 10_000);
    let events = read_jsonl(&events_file);
    assert_eq!(events.len(), 100_000);
    assert_eq!(events.iter().filter(|e| e["type"] == "bid").count(), 92_000);
    for query in ["q0", "q1", "q2"] {
        check_query(dir.path(), query, &events_file, &expected(query, &events));
    }
}

#[test]
fn q5_q7_match_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    // The examples' rate: 1,000 events per second of event time.
    let events_file = generate_events(dir.path(), 1_000);
    let events = read_jsonl(&events_file);
    for query in ["q5", "q7"] {
        let want = expected(query, &events);
        assert!(want.len() >= 10, "{query}: {} results", want.len());
        check_query(dir.path(), query, &events_file, &want);
    }
}
