//! `GET /metrics`: a live run's figures, read with a Prometheus text-format
//! parser, equal what the run did, record for record.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir::control::client::AdminClient;

use crate::support::{admin_address, read_jsonl, repo, s, weir};

/// Samples of one metric by their labels (`operator="sales",worker="0"`).
fn samples(text: &str, name: &str) -> BTreeMap<String, f64> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    scrape
        .samples
        .into_iter()
        .filter(|sample| sample.metric == name)
        .map(|sample| {
            let value = match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                other => panic!("{name} is not a number: {other:?}"),
            };
            (sample.labels.to_string(), value)
        })
        .collect()
}

#[test]
fn metrics_count_every_record_of_a_live_run_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let operator = repo().join("examples/sales-by-product/operator");
    let pipeline = dir.path().join("live.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[[source]]\nname = \"orders\"\ntype = \"stdin\"\n\n\
             [[operator]]\nid = \"sales\"\ncrate = \"{}\"\nkey_by = \"product\"\nparallelism = 2\n\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"out.jsonl\"\n\n\
             [dead_letter]\npath = \"dead.jsonl\"\n",
            s(&operator)
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
    // 300 good orders over 7 products, 5 without a product (dead letters of
    // the operator), 2 that do not parse (dead letters of the source).
    let products = ["a", "b", "c", "d", "e", "f", "g"];
    let mut input = String::new();
    for i in 0..300 {
        let product = products[i % products.len()];
        input.push_str(&format!(
            "{{\"product\":\"{product}\",\"qty\":1,\"price_cents\":100}}\n"
        ));
        if i % 60 == 0 {
            input.push_str("{\"qty\":1,\"price_cents\":100}\n");
        }
        if i % 150 == 0 {
            input.push_str("{not json\n");
        }
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let client = AdminClient::new(address);
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = client.metrics().expect("/metrics answers");
        let out: f64 = samples(&text, "weir_operator_records_out_total")
            .values()
            .sum();
        if out == 300.0 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "never saw 300 records out:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let by_worker = |name| samples(&text, name);
    let records_in = by_worker("weir_operator_records_in_total");
    assert_eq!(records_in.len(), 2, "{text}");
    assert_eq!(records_in.values().sum::<f64>(), 305.0, "{text}");
    let dead = by_worker("weir_operator_dead_letters_total");
    assert_eq!(dead.values().sum::<f64>(), 5.0, "{text}");
    assert_eq!(
        samples(&text, "weir_source_records_total"),
        BTreeMap::from([("source=\"orders\"".to_owned(), 305.0)]),
        "{text}"
    );
    assert_eq!(
        samples(&text, "weir_operator_state_keys"),
        BTreeMap::from([("operator=\"sales\"".to_owned(), 7.0)]),
        "{text}"
    );
    assert_eq!(
        samples(&text, "weir_operator_version"),
        BTreeMap::from([("operator=\"sales\"".to_owned(), 1.0)]),
        "{text}"
    );
    // Backpressure is counted per sender (its value depends on timing).
    assert_eq!(
        samples(&text, "weir_source_backpressure_seconds_total").len(),
        1,
        "{text}"
    );
    assert_eq!(
        samples(&text, "weir_operator_backpressure_seconds_total").len(),
        2,
        "{text}"
    );
    // Every batch a worker took is in its latency histogram.
    let batches: f64 = samples(&text, "weir_operator_batch_seconds_count")
        .values()
        .sum();
    assert!(batches >= 2.0, "{text}");
    drop(stdin);
    assert!(child.wait().unwrap().success(), "{:?}", log.lock());
    // What /metrics said is what the run wrote.
    assert_eq!(read_jsonl(&dir.path().join("out.jsonl")).len(), 300);
    assert_eq!(read_jsonl(&dir.path().join("dead.jsonl")).len(), 7);
}

#[test]
fn json_logs_carry_the_operator_as_a_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"id\":1}\n{\"id\":2,\"action\":\"panic\"}\n{\"id\":3}\n",
    )
    .unwrap();
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[[source]]\ntype = \"jsonl\"\npath = \"in.jsonl\"\n\n\
             [[operator]]\nid = \"hostile\"\ncrate = \"{}\"\n\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"out.jsonl\"\n\n\
             [dead_letter]\npath = \"dead.jsonl\"\n",
            s(&repo().join("tests/fixtures/hostile"))
        ),
    )
    .unwrap();
    let output = weir()
        .args(["--log-format", "json", "run", s(&pipeline)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let logs: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let trap = logs
        .iter()
        .find(|l| l["message"].as_str().is_some_and(|m| m.contains("trapped")))
        .unwrap_or_else(|| panic!("no trap logged:\n{stderr}"));
    assert_eq!(trap["level"], "WARN", "{trap}");
    assert_eq!(trap["operator"], "hostile@v1", "{trap}");
}

#[test]
fn status_watch_shows_rates_until_the_pipeline_ends() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("live.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[[source]]\ntype = \"stdin\"\n\n\
             [[operator]]\nid = \"sales\"\ncrate = \"{}\"\nkey_by = \"product\"\n\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"out.jsonl\"\n",
            s(&repo().join("examples/sales-by-product/operator"))
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
    writeln!(stdin, "{{\"product\":\"a\",\"qty\":2,\"price_cents\":100}}").unwrap();
    stdin.flush().unwrap();
    let mut watch = weir()
        .args(["status", "--watch", "--admin", &address.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(watch.stdout.take().unwrap());
    let mut seen = String::new();
    // The second screen has rates.
    while !seen.contains("records/s") {
        let mut line = String::new();
        let read = std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert!(read > 0, "watch ended early:\n{seen}");
        seen.push_str(&line);
    }
    drop(stdin);
    assert!(child.wait().unwrap().success(), "{:?}", log.lock());
    let rest = std::io::read_to_string(reader).unwrap();
    assert!(watch.wait().unwrap().success());
    assert!(
        seen.contains("OPERATOR") && seen.contains("sales"),
        "{seen}"
    );
    assert!(seen.contains("sales: "), "{seen}");
    assert!(rest.contains("the pipeline stopped answering"), "{rest}");
}

#[test]
fn the_progress_line_on_a_terminal_shows_the_share_read_and_the_watermark() {
    let dir = tempfile::tempdir().unwrap();
    // Records that each run into the call timeout keep the run going for
    // seconds, long enough for the progress line.
    let input: String = (0..8)
        .map(|i| {
            format!(
                "{{\"id\":{i},\"action\":\"loop\",\"ts\":{}}}\n",
                1_700_000_000_000i64 + i
            )
        })
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            "batch_size = 1\n\
             [[source]]\ntype = \"jsonl\"\npath = \"in.jsonl\"\n\
             event_time = {{ field = \"ts\", watermark_delay = \"0s\" }}\n\n\
             [[operator]]\nid = \"hostile\"\ncrate = \"{}\"\n\
             limits = {{ call_timeout = \"300ms\" }}\n\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"out.jsonl\"\n\n\
             [dead_letter]\npath = \"dead.jsonl\"\n",
            s(&repo().join("tests/fixtures/hostile"))
        ),
    )
    .unwrap();
    // `script` gives the run a terminal.
    let command = format!("{} run {}", env!("CARGO_BIN_EXE_weir"), s(&pipeline));
    let output = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("script runs");
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{screen}");
    assert!(screen.contains("% read"), "{screen}");
    assert!(
        screen.contains("watermark 2023-11-14T22:13:20Z"),
        "{screen}"
    );
    // Without a terminal, no progress line.
    let plain = weir().args(["run", s(&pipeline)]).output().unwrap();
    assert!(!String::from_utf8_lossy(&plain.stderr).contains("% read"));
}
