//! The examples: exact expected outputs, and generated inputs checked against
//! an independent implementation of each example's rules.

use serde_json::{Value, json};
use std::collections::BTreeMap;

use crate::support::{Rng, read_jsonl, repo, run_ok, s};

/// Runs an example's pipeline and compares its output and dead letters with
/// the example's `expected.jsonl` and `expected-dead-letter.jsonl`.
fn assert_example_matches_expected(example: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (out, dead) = (dir.path().join("out.jsonl"), dir.path().join("dead.jsonl"));
    let pipeline = format!("examples/{example}/pipeline.toml");
    run_ok(&[
        "run",
        &pipeline,
        "--output",
        s(&out),
        "--dead-letter",
        s(&dead),
    ]);
    let expected = repo().join("examples").join(example);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(expected.join("expected.jsonl")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(&dead).unwrap(),
        std::fs::read_to_string(expected.join("expected-dead-letter.jsonl")).unwrap()
    );
}

#[test]
fn etl_cleanse_matches_its_expected_output() {
    assert_example_matches_expected("etl-cleanse");
}

/// The etl-cleanse rules, written independently of the operator.
fn cleanse(line: &str) -> Result<Option<Value>, ()> {
    let Ok(Value::Object(r)) = serde_json::from_str::<Value>(line) else {
        return Err(());
    };
    match r.get("order_id") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        _ => {}
    }
    let Some(cents) = r.get("amount_cents").and_then(|v| v.as_u64()) else {
        return Ok(None);
    };
    if r.get("test") == Some(&Value::Bool(true)) {
        return Ok(None);
    }
    let text = |k: &str| r.get(k).and_then(|v| v.as_str()).ok_or(());
    let ts = chrono::DateTime::parse_from_rfc3339(text("ts")?).map_err(|_| ())?;
    Ok(Some(json!({
        "order_id": r["order_id"],
        "email": text("user_email")?.trim().to_lowercase(),
        "amount": cents as f64 / 100.0,
        "currency": text("currency")?.to_uppercase(),
        "country": text("country")?.to_uppercase(),
        "ts_ms": ts.timestamp_millis(),
    })))
}

fn random_order(rng: &mut Rng, i: u64) -> String {
    let ids = [json!(format!("O-{i}")), json!(""), Value::Null, json!(i)];
    let amounts = [
        json!(rng.below(100_000)),
        json!(-3),
        json!(12.5),
        json!("100"),
        json!(0),
        Value::Null,
    ];
    let emails = [
        json!(" Mixed.Case@Example.COM "),
        json!("plain@example.com"),
        json!(42),
    ];
    let stamps = [
        json!("2024-03-01T12:00:00Z"),
        json!("2024-03-01T12:00:00.123+02:00"),
        json!("1999-12-31T23:59:59.999-08:00"),
        json!("2024-02-30T00:00:00Z"),
        json!("not a time"),
        json!(1709290800000i64),
    ];
    let mut order = serde_json::Map::new();
    if rng.below(10) > 0 {
        order.insert("order_id".into(), rng.pick(&ids).clone());
    }
    order.insert("user_email".into(), rng.pick(&emails).clone());
    order.insert("amount_cents".into(), rng.pick(&amounts).clone());
    order.insert("currency".into(), json!(*rng.pick(&["eur", "Usd", "GBP"])));
    order.insert("country".into(), json!(*rng.pick(&["de", "Us", "FR"])));
    if rng.below(8) > 0 {
        order.insert("ts".into(), rng.pick(&stamps).clone());
    }
    match rng.below(6) {
        0 => drop(order.insert("test".into(), json!(true))),
        1 => drop(order.insert("test".into(), json!(false))),
        _ => {}
    }
    match rng.below(40) {
        0 => "{\"order_id\": \"broken".to_owned(),
        1 => "[1, 2]".to_owned(),
        _ => Value::Object(order).to_string(),
    }
}

#[test]
fn etl_cleanse_is_correct_on_generated_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(7);
    let lines: Vec<String> = (0..3000).map(|i| random_order(&mut rng, i)).collect();
    let input = dir.path().join("orders.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let (out, dead) = (dir.path().join("out.jsonl"), dir.path().join("dead.jsonl"));
    run_ok(&[
        "run",
        "examples/etl-cleanse/pipeline.toml",
        "--input",
        s(&input),
        "--output",
        s(&out),
        "--dead-letter",
        s(&dead),
    ]);
    let mut expected = Vec::new();
    let mut expected_dead = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match cleanse(line) {
            Ok(Some(record)) => expected.push(record),
            Ok(None) => {}
            Err(()) => expected_dead.push(i as u64 + 1),
        }
    }
    assert_eq!(read_jsonl(&out), expected);
    // Decode errors and operator rejections are written by different threads.
    let mut dead_lines: Vec<u64> = read_jsonl(&dead)
        .iter()
        .map(|d| d["line"].as_u64().unwrap())
        .collect();
    dead_lines.sort();
    assert_eq!(dead_lines, expected_dead);
    assert!(
        expected.len() > 100 && expected_dead.len() > 100,
        "the input exercises both paths"
    );
}

#[test]
fn sales_by_product_matches_its_expected_output() {
    assert_example_matches_expected("sales-by-product");
}

#[test]
fn sales_by_product_totals_are_exact_for_any_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(11);
    let products = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"];
    let mut lines = Vec::new();
    let mut expected: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    let mut bad = 0;
    for _ in 0..5000 {
        let product = *rng.pick(&products);
        let qty = rng.below(20) as i64 - 2;
        let price = rng.below(10_000) as i64;
        if rng.below(25) == 0 {
            bad += 1;
            lines
                .push(json!({"product": product, "qty": "many", "price_cents": price}).to_string());
            continue;
        }
        let seq = expected.entry(product.to_owned()).or_default();
        let (units, revenue) = seq.last().copied().unwrap_or((0, 0));
        seq.push((units + qty, revenue + qty * price));
        lines.push(json!({"product": product, "qty": qty, "price_cents": price}).to_string());
    }
    let input = dir.path().join("orders.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let pipeline =
        std::fs::read_to_string(repo().join("examples/sales-by-product/pipeline.toml")).unwrap();
    for parallelism in 1..=4 {
        let file = dir.path().join(format!("p{parallelism}.toml"));
        let text = pipeline
            .replace("parallelism = 1", &format!("parallelism = {parallelism}"))
            .replace(
                "crate = \"operator\"",
                &format!(
                    "crate = \"{}\"",
                    s(&repo().join("examples/sales-by-product/operator"))
                ),
            );
        std::fs::write(&file, text).unwrap();
        let (out, dead) = (dir.path().join("out.jsonl"), dir.path().join("dead.jsonl"));
        run_ok(&[
            "run",
            s(&file),
            "--input",
            s(&input),
            "--output",
            s(&out),
            "--dead-letter",
            s(&dead),
        ]);
        let mut seen: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
        for record in read_jsonl(&out) {
            seen.entry(record["product"].as_str().unwrap().to_owned())
                .or_default()
                .push((
                    record["units"].as_i64().unwrap(),
                    record["revenue_cents"].as_i64().unwrap(),
                ));
        }
        assert_eq!(seen, expected, "parallelism {parallelism}");
        assert_eq!(read_jsonl(&dead).len(), bad, "parallelism {parallelism}");
    }
}

#[test]
fn order_fanout_matches_its_expected_outputs() {
    // Run in a copy, so the example's own `out` folder is left alone.
    let example = repo().join("examples/order-fanout");
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example.join("pipeline.toml"))
        .unwrap()
        .replace(
            "crate = \"../",
            &format!("crate = \"{}/", s(&repo().join("examples"))),
        );
    std::fs::write(dir.path().join("pipeline.toml"), text).unwrap();
    std::fs::copy(example.join("input.jsonl"), dir.path().join("input.jsonl")).unwrap();
    run_ok(&["run", s(&dir.path().join("pipeline.toml"))]);
    for name in ["warehouse", "sales", "archive", "dead-letter"] {
        assert_eq!(
            std::fs::read_to_string(dir.path().join(format!("out/{name}.jsonl"))).unwrap(),
            std::fs::read_to_string(example.join(format!("expected-{name}.jsonl"))).unwrap(),
            "{name}"
        );
    }
}
