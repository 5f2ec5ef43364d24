//! Event time, watermarks, timers and windows: the time examples against
//! their expected files, and on generated inputs against independent
//! implementations of their rules.

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::support::{Rng, read_jsonl, reminders_on_the_wall_clock, repo, run_ok, s};

/// Runs an example's pipeline as it is (outputs under its `out/`) and
/// compares each output file with its expected file.
fn assert_example_outputs(example: &str, files: &[(&str, &str)]) {
    let dir = repo().join("examples").join(example);
    let _ = std::fs::remove_dir_all(dir.join("out"));
    run_ok(&["run", s(&dir.join("pipeline.toml"))]);
    for (out, expected) in files {
        assert_eq!(
            std::fs::read_to_string(dir.join(out)).unwrap_or_default(),
            std::fs::read_to_string(dir.join(expected)).unwrap(),
            "{example}: {out} differs from {expected}"
        );
    }
}

/// Writes a pipeline over `input` for the example's operators, with the
/// operator sections given, and runs it.
fn run_pipeline(dir: &Path, body: &str) {
    let pipeline = dir.join("pipeline.toml");
    std::fs::write(&pipeline, body).unwrap();
    run_ok(&["run", s(&pipeline)]);
}

#[test]
fn fraud_detection_matches_its_expected_output() {
    assert_example_outputs(
        "fraud-detection",
        &[
            ("out/alerts.jsonl", "expected.jsonl"),
            ("out/dead-letter.jsonl", "expected-dead-letter.jsonl"),
        ],
    );
}

#[test]
fn top_products_matches_its_expected_output() {
    assert_example_outputs(
        "top-products",
        &[
            ("out/top-products.jsonl", "expected.jsonl"),
            ("out/late.jsonl", "expected-late.jsonl"),
            ("out/dead-letter.jsonl", "expected-dead-letter.jsonl"),
        ],
    );
}

/// The fraud rule, written independently: per account, in arrival order, a
/// transaction over 500 right after one under 1, less than a minute later.
fn expected_alerts(transactions: &[Value]) -> Vec<Value> {
    let mut last: HashMap<String, &Value> = HashMap::new();
    let mut alerts = Vec::new();
    for tx in transactions {
        let account = tx["account_id"].to_string();
        if let Some(previous) = last.get(&account) {
            let later = tx["ts"].as_i64().unwrap() - previous["ts"].as_i64().unwrap();
            if previous["amount"].as_f64().unwrap() < 1.0
                && tx["amount"].as_f64().unwrap() > 500.0
                && (0..60_000).contains(&later)
            {
                alerts.push(json!({
                    "account_id": tx["account_id"],
                    "small_tx_id": previous["tx_id"],
                    "large_tx_id": tx["tx_id"],
                }));
            }
        }
        last.insert(account, tx);
    }
    alerts
}

fn sorted(mut values: Vec<Value>) -> Vec<Value> {
    values.sort_by_key(|v| v.to_string());
    values
}

#[test]
fn fraud_detection_is_correct_on_generated_inputs() {
    let mut rng = Rng::new(5);
    let mut ts = 1_700_000_000_000i64;
    let mut transactions = Vec::new();
    for id in 0..5_000 {
        ts += rng.below(20_000) as i64;
        let amount = match rng.below(10) {
            0..=2 => rng.below(100) as f64 / 100.0,         // under 1.00
            3..=5 => 500.0 + rng.below(2_000) as f64 / 4.0, // 500.00 and more
            _ => 1.0 + rng.below(40_000) as f64 / 100.0,
        };
        transactions.push(json!({
            "tx_id": id,
            "account_id": format!("a{}", rng.below(40)),
            "amount": amount,
            "ts": ts,
        }));
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    let lines: Vec<String> = transactions.iter().map(Value::to_string).collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let expected = expected_alerts(&transactions);
    assert!(expected.len() > 20, "the input should raise alerts");
    let module = repo().join("examples/fraud-detection/operator");
    for parallelism in [1, 3] {
        run_pipeline(
            dir.path(),
            &format!(
                r#"[[source]]
type = "jsonl"
path = "input.jsonl"
event_time = {{ field = "ts" }}
[[operator]]
id = "fraud"
crate = "{}"
key_by = "account_id"
parallelism = {parallelism}
[[sink]]
type = "jsonl"
path = "alerts.jsonl"
"#,
                module.display()
            ),
        );
        let alerts = read_jsonl(&dir.path().join("alerts.jsonl"));
        assert_eq!(
            sorted(alerts),
            sorted(expected.clone()),
            "parallelism {parallelism}"
        );
    }
}

/// Days, products and units of the top-products rules, written
/// independently: per-record watermark = largest earlier event time − delay;
/// an order is late when its day ended at or before it.
fn expected_top_products(orders: &[(i64, String, i64)], delay: i64) -> (Vec<Value>, usize) {
    let mut units: BTreeMap<i64, HashMap<String, i64>> = BTreeMap::new();
    let mut max_seen: Option<i64> = None;
    let mut late = 0;
    for (ts, product, qty) in orders {
        let day = ts - ts.rem_euclid(86_400_000);
        if max_seen.is_some_and(|m| day + 86_400_000 - 1 <= m - delay) {
            late += 1;
        } else {
            *units
                .entry(day)
                .or_default()
                .entry(product.clone())
                .or_default() += qty;
        }
        max_seen = Some(max_seen.map_or(*ts, |m| m.max(*ts)));
    }
    let mut ranked = Vec::new();
    for (day, products) in units {
        let mut products: Vec<(String, i64)> = products.into_iter().collect();
        products.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let date = chrono::DateTime::from_timestamp_millis(day)
            .unwrap()
            .format("%Y-%m-%d");
        for (rank, (product, units)) in products.into_iter().take(10).enumerate() {
            ranked.push(json!({
                "day": date.to_string(), "rank": rank + 1, "product": product, "units": units,
            }));
        }
    }
    (ranked, late)
}

#[test]
fn top_products_is_correct_on_generated_inputs() {
    let mut rng = Rng::new(3);
    let start = 1_767_225_600_000i64; // 2026-01-01T00:00:00Z
    let mut orders = Vec::new();
    let mut ts = start;
    for _ in 0..6_000 {
        ts += rng.below(120_000) as i64;
        // Up to 5 minutes out of order, and now and then much later.
        let jitter = rng.below(300_000) as i64;
        let very_late = if rng.below(200) == 0 { 86_400_000 } else { 0 };
        let spread = 1 + rng.below(25);
        let product = format!("p{:02}", rng.below(spread));
        orders.push((ts - jitter - very_late, product, 1 + rng.below(9) as i64));
    }
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = orders
        .iter()
        .enumerate()
        .map(|(i, (ts, product, qty))| {
            let time = chrono::DateTime::from_timestamp_millis(*ts).unwrap();
            json!({"order_id": i, "product": product, "qty": qty,
                   "ts": time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()})
            .to_string()
        })
        .collect();
    std::fs::write(dir.path().join("input.jsonl"), lines.join("\n")).unwrap();
    let (expected, late) = expected_top_products(&orders, 300_000);
    assert!(late > 5, "the input should have late orders");
    let example = repo().join("examples/top-products");
    for (parallelism, batch_size) in [(1, 1024), (4, 37)] {
        run_pipeline(
            dir.path(),
            &format!(
                r#"batch_size = {batch_size}
[[source]]
type = "jsonl"
path = "input.jsonl"
event_time = {{ field = "ts", watermark_delay = "5m" }}
[[operator]]
id = "daily"
crate = "{}"
key_by = "product"
parallelism = {parallelism}
[[operator]]
id = "top10"
crate = "{}"
[[sink]]
type = "jsonl"
path = "top.jsonl"
[[sink]]
type = "jsonl"
path = "late.jsonl"
from = "daily.late"
"#,
                example.join("daily-units").display(),
                example.join("top10").display()
            ),
        );
        let ranked = read_jsonl(&dir.path().join("top.jsonl"));
        assert_eq!(
            ranked, expected,
            "parallelism {parallelism}, batches of {batch_size}"
        );
        let late_orders = read_jsonl(&dir.path().join("late.jsonl"));
        assert_eq!(late_orders.len(), late, "parallelism {parallelism}");
    }
}

#[test]
fn error_rate_alert_matches_its_expected_output() {
    assert_example_outputs(
        "error-rate-alert",
        &[
            ("out/alerts.jsonl", "expected.jsonl"),
            ("out/dead-letter.jsonl", "expected-dead-letter.jsonl"),
        ],
    );
}

/// The error-rate rule, written independently: one-minute windows every
/// ten seconds per service; a window ignores events that arrive after the
/// watermark (largest earlier time − delay) passed its end.
fn expected_error_alerts(events: &[(i64, String, bool)], delay: i64) -> Vec<Value> {
    let mut counts: BTreeMap<(i64, String), (i64, i64)> = BTreeMap::new();
    let mut max_seen: Option<i64> = None;
    for (ts, service, error) in events {
        let watermark = max_seen.map(|m| m - delay);
        let mut start = ts - ts.rem_euclid(10_000);
        while start > ts - 60_000 {
            let end = start + 60_000;
            if watermark.is_none_or(|w| end - 1 > w) {
                let c = counts.entry((end, service.clone())).or_default();
                c.0 += i64::from(*error);
                c.1 += 1;
            }
            start -= 10_000;
        }
        max_seen = Some(max_seen.map_or(*ts, |m| m.max(*ts)));
    }
    counts
        .into_iter()
        .filter(|(_, (errors, total))| *total >= 20 && *errors as f64 / *total as f64 > 0.05)
        .map(|((end, service), (errors, total))| {
            json!({"service": service, "window_end": end, "errors": errors, "total": total,
                   "rate": errors as f64 / total as f64})
        })
        .collect()
}

#[test]
fn error_rate_alert_is_correct_on_generated_inputs() {
    let mut rng = Rng::new(17);
    let mut ts = 1_767_225_600_000i64;
    let mut events = Vec::new();
    for _ in 0..20_000 {
        ts += rng.below(200) as i64;
        let service = format!("svc{}", rng.below(4));
        let burst = (ts / 120_000) % 5 == 0;
        let error = rng.below(100) < if burst { 15 } else { 3 };
        let skew = rng.below(15_000) as i64; // some beyond the 10 s delay
        events.push((ts - skew, service, error));
    }
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = events
        .iter()
        .map(|(ts, service, error)| {
            json!({"service": service, "level": if *error { "ERROR" } else { "info" }, "ts": ts})
                .to_string()
        })
        .collect();
    std::fs::write(dir.path().join("input.jsonl"), lines.join("\n")).unwrap();
    let expected = expected_error_alerts(&events, 10_000);
    assert!(expected.len() > 50, "the input should raise alerts");
    let module = repo().join("examples/error-rate-alert/operator");
    for (parallelism, batch_size) in [(1, 1024), (3, 50)] {
        run_pipeline(
            dir.path(),
            &format!(
                r#"batch_size = {batch_size}
[[source]]
type = "jsonl"
path = "input.jsonl"
event_time = {{ field = "ts", watermark_delay = "10s" }}
[[operator]]
id = "error-rate"
crate = "{}"
key_by = "service"
parallelism = {parallelism}
[[sink]]
type = "jsonl"
path = "alerts.jsonl"
"#,
                module.display()
            ),
        );
        let alerts = read_jsonl(&dir.path().join("alerts.jsonl"));
        assert_eq!(
            sorted(alerts),
            sorted(expected.clone()),
            "parallelism {parallelism}"
        );
    }
}

/// A source that stays open but sends nothing must not hold the watermark
/// back once it has been idle for its `idle_timeout`: the windows fed by
/// the other source fire while the pipeline still runs.
#[test]
fn an_idle_source_does_not_hold_the_watermark_back() {
    let dir = tempfile::tempdir().unwrap();
    let example = repo().join("examples/error-rate-alert");
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"[[source]]
type = "jsonl"
path = "{}"
event_time = {{ field = "ts", watermark_delay = "10s" }}
[[source]]
type = "stdin"
event_time = {{ field = "ts", idle_timeout = "200ms" }}
[[operator]]
id = "error-rate"
crate = "{}"
key_by = "service"
[[sink]]
type = "jsonl"
path = "alerts.jsonl"
"#,
            example.join("input.jsonl").display(),
            example.join("operator").display()
        ),
    )
    .unwrap();
    let expected = std::fs::read_to_string(example.join("expected.jsonl")).unwrap();
    let mut child = crate::support::weir()
        .args([
            "run",
            s(&pipeline),
            "--dead-letter",
            s(&dir.path().join("dead.jsonl")),
        ])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::read_to_string(&alerts).unwrap_or_default() != expected {
        assert!(
            std::time::Instant::now() < deadline,
            "the windows never fired"
        );
        assert!(child.try_wait().unwrap().is_none(), "weir stopped early");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Every alert is out while stdin is still open.
    assert!(child.try_wait().unwrap().is_none());
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

/// Processing-time timers fire on the wall clock while the input is open.
#[test]
fn processing_time_timers_fire_on_the_wall_clock() {
    let lines = reminders_on_the_wall_clock("crate", &repo().join("tests/fixtures/reminder"));
    // Two timers of one key at the same millisecond are one timer (as in
    // Flink), so `a` is reminded once or twice; its last reminder counts 2.
    let want_a = r#"{"key":"a","notes":2}"#;
    let want_b = r#"{"key":"b","notes":1}"#;
    let others: Vec<&String> = lines
        .iter()
        .filter(|l| ![want_a, want_b].contains(&l.as_str()))
        .collect();
    assert!(
        others.iter().all(|l| *l == r#"{"key":"a","notes":1}"#),
        "{lines:?}"
    );
}

/// Timers belong to the key's state in the host: a window whose timer was
/// registered by one version fires after a swap to the next one.
#[test]
fn timers_survive_a_hot_swap() {
    let dir = tempfile::tempdir().unwrap();
    let operator = repo().join("examples/error-rate-alert/operator");
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"admin = "127.0.0.1:0"
[[source]]
type = "stdin"
event_time = {{ field = "ts" }}
[[operator]]
id = "error-rate"
crate = "{}"
key_by = "service"
[[sink]]
type = "jsonl"
path = "alerts.jsonl"
"#,
            operator.display()
        ),
    )
    .unwrap();
    let mut child = crate::support::weir()
        .args(["run", s(&pipeline)])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let log = std::sync::Arc::default();
    let address = crate::support::admin_address(&mut child, log).expect("an admin address");
    let admin = weir::control::client::AdminClient::new(address);
    let mut stdin = child.stdin.take().unwrap();
    // 30 errors of service x in the first 3 seconds: each opens 6 windows
    // and registers their timers under version 1.
    let t0 = 1_767_225_600_000i64;
    for i in 0..30 {
        let line = json!({"service": "x", "level": "error", "ts": t0 + i * 100});
        writeln!(stdin, "{line}").unwrap();
    }
    stdin.flush().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while admin.status().unwrap()[0].records_in < 30 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let component = weir::builder::build_crate(&operator).unwrap();
    let report = admin
        .deploy("error-rate", &std::fs::read(component).unwrap())
        .unwrap();
    assert_eq!(report.version, 2);
    // Another service moves the watermark past every window of x.
    writeln!(
        stdin,
        "{}",
        json!({"service": "y", "level": "info", "ts": t0 + 300_000})
    )
    .unwrap();
    stdin.flush().unwrap();
    let out = dir.path().join("alerts.jsonl");
    loop {
        let alerts = std::fs::read_to_string(&out).unwrap_or_default();
        if alerts.lines().count() == 6 {
            assert!(
                alerts
                    .lines()
                    .all(|l| l.contains(r#""errors":30,"total":30"#)),
                "{alerts}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no alerts after the swap: {alerts}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

/// A timer function that traps for one key: that key's timer goes to the
/// dead letters with the panic message, the instance restarts, and the other
/// keys' timers still fire.
#[test]
fn a_trapping_timer_is_dead_lettered_and_the_others_fire() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"[[source]]
type = "stdin"
[[operator]]
id = "reminder"
crate = "{}"
key_by = "key"
[[sink]]
type = "jsonl"
path = "reminders.jsonl"
[dead_letter]
path = "dead.jsonl"
"#,
            repo().join("tests/fixtures/reminder").display()
        ),
    )
    .unwrap();
    let mut child = crate::support::weir()
        .args(["run", s(&pipeline)])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    use std::io::Write;
    // `boom` first: its timer is due no later than `a`'s.
    stdin
        .write_all(b"{\"key\":\"boom\"}\n{\"key\":\"a\"}\n")
        .unwrap();
    stdin.flush().unwrap();
    let out = dir.path().join("reminders.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::read_to_string(&out).unwrap_or_default() != "{\"key\":\"a\",\"notes\":1}\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "`a` was never reminded"
        );
        assert!(child.try_wait().unwrap().is_none(), "weir stopped early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    let dead = read_jsonl(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["source"], "timers");
    assert_eq!(dead[0]["operator"], "reminder");
    let raw: Value = serde_json::from_str(dead[0]["raw"].as_str().unwrap()).unwrap();
    assert_eq!(raw["key"], "boom");
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(reason.contains("the timer function failed"), "{reason}");
    assert!(
        reason.contains("the reminder of `boom` is broken"),
        "{reason}"
    );
}
