//! One operator, four languages: the etl-cleanse operator, the keyed
//! sales-by-product operator and the fraud-detection operator (keyed state
//! and event-time timers) written in Rust, Python, JavaScript and C must
//! produce byte-identical output and dead letters, and the hot-swap counter's
//! version 2 in Python, JavaScript or C must take over from the Rust version 1.
//!
//! These tests need the Python, JavaScript and C build tools (`.ci/run`
//! installs them); `weir` builds the operator folders itself.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use crate::hot_swap::{KEYS, LiveRun, build, check_output};
use crate::support::{Rng, reminders_on_the_wall_clock, repo, run_ok, s, weir};

/// The etl-cleanse pipeline of every language.
const ETL: [&str; 4] = [
    "etl-cleanse",
    "etl-cleanse-py",
    "etl-cleanse-js",
    "etl-cleanse-c",
];

/// The sales-by-product pipeline of every language.
const SALES: [&str; 4] = [
    "sales-by-product",
    "sales-by-product-py",
    "sales-by-product-js",
    "sales-by-product-c",
];

/// The fraud-detection pipeline of every language.
const FRAUD: [&str; 4] = [
    "fraud-detection",
    "fraud-detection-py",
    "fraud-detection-js",
    "fraud-detection-c",
];

/// Runs `examples/{example}/pipeline.toml` on `input` (its own input when
/// `None`) and returns the output and dead-letter files' text.
fn run_example(example: &str, input: Option<&Path>) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out, dead) = (dir.path().join("out.jsonl"), dir.path().join("dead.jsonl"));
    let pipeline = format!("examples/{example}/pipeline.toml");
    let mut args = vec![
        "run",
        &pipeline,
        "--output",
        s(&out),
        "--dead-letter",
        s(&dead),
    ];
    if let Some(input) = input {
        args.extend(["--input", s(input)]);
    }
    let output = weir().args(&args).current_dir(repo()).output().unwrap();
    assert!(
        output.status.success(),
        "weir {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(&dead).unwrap_or_default(),
    )
}

fn expected(example: &str) -> (String, String) {
    let dir = repo().join("examples").join(example);
    (
        std::fs::read_to_string(dir.join("expected.jsonl")).unwrap(),
        std::fs::read_to_string(dir.join("expected-dead-letter.jsonl")).unwrap(),
    )
}

#[test]
fn etl_cleanse_in_every_language_matches_its_expected_output() {
    for example in &ETL[1..] {
        let (out, dead) = run_example(example, None);
        let (want_out, want_dead) = expected(example);
        assert_eq!(out, want_out, "{example}: output");
        assert_eq!(dead, want_dead, "{example}: dead letters");
        // The expected files are the Rust example's, byte for byte.
        assert_eq!((want_out, want_dead), expected("etl-cleanse"), "{example}");
    }
}

/// Values the operator passes through untouched (`order_id` here) keep
/// what serde_json writes: integers beyond 2^53 with every digit, and floats
/// in its shortest form with an exponent outside 1e-5 ..< 1e16 (`1e+20`).
#[test]
fn etl_cleanse_in_every_language_passes_numbers_through_as_rust_does() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("orders.jsonl");
    let rest = r#""user_email":"a@b","amount_cents":5,"currency":"eur","country":"de","ts":"2024-03-01T12:00:00Z""#;
    let ids = [
        r#"{"a":1e20,"b":1.5e-9,"c":123456789012345678,"d":0.1,"e":[2.0,1e-5,0.000015]}"#,
        "2.5e30",
        "9007199254740993",
        "-0.0",
    ];
    let lines: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"order_id":{id},{rest}}}"#))
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let rust = run_example("etl-cleanse", Some(&input));
    assert!(
        rust.0.starts_with(
            r#"{"order_id":{"a":1e+20,"b":1.5e-9,"c":123456789012345678,"d":0.1,"e":[2.0,0.00001,0.000015]},"#
        ),
        "{}",
        rust.0
    );
    for example in ["etl-cleanse-py", "etl-cleanse-js", "etl-cleanse-c"] {
        assert_eq!(run_example(example, Some(&input)), rust, "{example}");
    }
}

/// A raw order with fields drawn from values that exercise every rule of
/// the operator: ids of every type, amounts that are negative, fractional,
/// written with an exponent or as text, and timestamps valid and invalid in
/// each way chrono's RFC 3339 parser distinguishes.
fn random_order(rng: &mut Rng) -> String {
    const IDS: &[&str] = &[
        r#""A-1""#,
        r#""B-22""#,
        r#""""#,
        "null",
        "17",
        r#"{"z":1,"a":[1,2.5]}"#,
        "true",
    ];
    const EMAILS: &[&str] = &[
        r#""  Ann@Example.COM ""#,
        r#""bob@example.com""#,
        r#""\tÉMILE@Exemple.FR""#,
        "5",
        "null",
        r#""x\"q@y""#,
    ];
    const AMOUNTS: &[&str] = &[
        "1999",
        "0",
        "1",
        "-5",
        "12.5",
        "1.0",
        "1e2",
        r#""100""#,
        "123456789",
        "9007199254740993",
        "null",
    ];
    const TEXTS: &[&str] = &[
        r#""eur""#, r#""usd""#, r#""jpy""#, "1.5", "false", "null", r#""ßx""#,
    ];
    const TIMESTAMPS: &[&str] = &[
        "2024-03-01T12:00:00Z",
        "2024-03-01T12:00:01.250Z",
        "2024-03-01t12:00:00.5z",
        "2024-03-01 12:00:00+01:00",
        "2024-03-01T12:00:00.123456789123-05:30",
        "2024-06-30T23:59:60Z",
        "2024-06-30T23:59:60.999+00:00",
        "2024-02-29T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2024-04-31T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-03-01T24:00:00Z",
        "2024-03-01T12:60:00Z",
        "2024-03-01T12:00:61Z",
        "2024-03-01T12:00:00+24:00",
        "2024-03-01T12:00:00+05:60",
        "2024-03-01T12:00:00+05:99",
        "2024-03-01T12:00:00+0530",
        "2024-03-01T12:00:00+05",
        "2024-03-01T12:00:00",
        "2024-03-01T12:00:00.",
        "2024-03-01T12:00:00.Z",
        "2024-03-01T12:00:00Z ",
        "2024-03-01T12:00:00ZZ",
        "2024-03-01X12:00:00Z",
        "2024/03/01T12:00:00Z",
        "0000-01-01T00:00:00-23:59",
        "9999-12-31T23:59:59.999+23:59",
        "yesterday",
        "",
        "2024-03-01T12:00:00\u{2212}02:00",
    ];
    let mut fields = Vec::new();
    // Most fields hold their list's first (usual) values; one in twenty is
    // left out, and one in five is drawn from the whole list.
    let mut field = |name: &str, values: &[&str], rng: &mut Rng| match rng.below(20) {
        0 => {}
        1..=4 => fields.push(format!("\"{name}\":{}", rng.pick(values))),
        _ => fields.push(format!("\"{name}\":{}", rng.pick(&values[..2]))),
    };
    field("order_id", IDS, rng);
    field("user_email", EMAILS, rng);
    field("amount_cents", AMOUNTS, rng);
    field("currency", TEXTS, rng);
    field("country", TEXTS, rng);
    let ts = if rng.below(3) == 0 {
        serde_json::to_string(rng.pick(TIMESTAMPS)).unwrap()
    } else {
        serde_json::to_string(rng.pick(&TIMESTAMPS[..8])).unwrap()
    };
    field("ts", &[&ts, &ts, "42"], rng);
    if rng.below(4) == 0 {
        field("test", &["true", "false", r#""true""#], rng);
    }
    format!("{{{}}}", fields.join(","))
}

#[test]
fn generated_orders_give_identical_output_in_every_language() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("orders.jsonl");
    let mut rng = Rng::new(6);
    let lines: Vec<String> = (0..3000).map(|_| random_order(&mut rng)).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let (rust_out, rust_dead) = run_example("etl-cleanse", Some(&input));
    // The input reaches every rule: kept, dropped and dead-lettered orders.
    let kept = rust_out.lines().count();
    let dead = rust_dead.lines().count();
    assert!(kept > 500 && dead > 300, "kept {kept}, dead {dead}");
    assert!(kept + dead < lines.len(), "no order was dropped");
    assert_twins_match_rust(&ETL[1..], &input, &rust_out, &rust_dead);
}

#[test]
fn sales_by_product_in_every_language_matches_rust() {
    let (want_out, want_dead) = expected("sales-by-product");
    for example in &SALES[1..] {
        let (out, dead) = run_example(example, None);
        assert_eq!(out, want_out, "{example}: output");
        assert_eq!(dead, want_dead, "{example}: dead letters");
        assert_eq!(
            expected(example),
            (want_out.clone(), want_dead.clone()),
            "{example}"
        );
    }
}

/// An order line whose `qty` and `price_cents` reach every rule of the
/// operator: small integers mostly, then integers around 2^53 (where a
/// JavaScript number stops being exact) and 2^63 (where the totals overflow),
/// integers beyond `i64`, floats, text and nested values.
fn random_sales_order(rng: &mut Rng) -> String {
    const ODD: &[&str] = &[
        "9007199254740993",
        "-9007199254740993",
        "4611686018427387904",
        "3037000500",
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775808",
        "18446744073709551616",
        "-9223372036854775809",
        "2.5",
        "3.0",
        "1e3",
        "1e20",
        "0.0000001",
        r#""7""#,
        r#""\u00e9\"x""#,
        "true",
        "[1]",
        r#"{"n":1}"#,
        "null",
    ];
    let value = |rng: &mut Rng| match rng.below(12) {
        0 => (*rng.pick(ODD)).to_owned(),
        1 => format!("{}", rng.below(1 << 40)),
        _ => format!("{}", rng.below(30) as i64 - 5),
    };
    let product = ["tea", "cake", "scone", "jam"][rng.below(4) as usize];
    let (qty, price) = (value(rng), value(rng));
    match rng.below(30) {
        0 => format!(r#"{{"product":"{product}","price_cents":{price}}}"#),
        1 => format!(r#"{{"price_cents":{price},"qty":{qty},"product":"{product}"}}"#),
        _ => format!(r#"{{"product":"{product}","qty":{qty},"price_cents":{price}}}"#),
    }
}

#[test]
fn generated_sales_give_identical_totals_and_refusals_in_every_language() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("orders.jsonl");
    let mut rng = Rng::new(12);
    let lines: Vec<String> = (0..3000).map(|_| random_sales_order(&mut rng)).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let (rust_out, rust_dead) = run_example("sales-by-product", Some(&input));
    // Totals beyond 2^53 are emitted, and some orders overflow.
    assert!(rust_out.lines().count() > 1500, "{rust_out}");
    let inexact_in_f64 = |line: &str| {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        ["units", "revenue_cents"].iter().any(|field| {
            record[field]
                .as_i64()
                .is_some_and(|n| n.unsigned_abs() > 1 << 53 && n % 2 != 0)
        })
    };
    assert!(
        rust_out.lines().any(inexact_in_f64),
        "a total no float holds exactly"
    );
    assert!(rust_dead.contains("the totals overflow a 64-bit integer"));
    assert_twins_match_rust(&SALES[1..], &input, &rust_out, &rust_dead);
}

/// Each twin's output and dead letters on `input` are Rust's, byte for byte.
fn assert_twins_match_rust(twins: &[&str], input: &Path, rust_out: &str, rust_dead: &str) {
    for example in twins {
        let (out, dead) = run_example(example, Some(input));
        assert_eq!(out, rust_out, "{example}: output differs from Rust's");
        assert_eq!(
            dead, rust_dead,
            "{example}: dead letters differ from Rust's"
        );
    }
}

#[test]
fn python_counter_v2_hot_swaps_in_for_rust_v1() {
    hot_swap_rust_v1_for(&build("counter-v2-py"));
}

#[test]
fn javascript_counter_v2_hot_swaps_in_for_rust_v1() {
    // Built with the toolchain CI installed for etl-cleanse-js.
    let dir = repo().join("examples/hot-swap/counter-v2-js");
    let output = weir().args(["build", s(&dir)]).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    hot_swap_rust_v1_for(&dir.join(".weir/operator.wasm"));
}

#[test]
fn c_counter_v2_hot_swaps_in_for_rust_v1() {
    hot_swap_rust_v1_for(&build("counter-v2-c"));
}

/// Runs the Rust counter-v1 under load, deploys `v2` (a version 2 in another
/// language) and checks that every count carries over.
fn hot_swap_rust_v1_for(v2: &Path) {
    let v1 = build("counter-v1");
    let live = LiveRun::with_workers(&v1, 2);
    live.flow(500);
    let out = live.cli(&["deploy", "counter", s(v2)]);
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
    let fed_rounds_at_least = live.round.load(Ordering::SeqCst);
    let (records, dead) = live.finish();
    assert!(dead.is_empty(), "dead letters: {dead:?}");
    let fed_rounds = records.len() as i64 / KEYS;
    assert!(fed_rounds >= fed_rounds_at_least);
    check_output(&records, fed_rounds, v2_from_round);
}

/// A copy of `examples/{example}/operator` in a new folder, so the
/// example's own build is not reused.
fn operator_copy(example: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = repo().join("examples").join(example).join("operator");
    for entry in std::fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

#[test]
fn a_build_tool_override_that_does_not_run_is_one_error_naming_it() {
    for (example, var) in [
        ("etl-cleanse-py", "WEIR_COMPONENTIZE_PY"),
        ("etl-cleanse-js", "WEIR_COMPONENTIZE_JS"),
        ("etl-cleanse-c", "WEIR_CLANG"),
    ] {
        let dir = operator_copy(example);
        let output = weir()
            .args(["build", s(dir.path())])
            .env(var, "/nonexistent/build-tool")
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "`${var}` names `/nonexistent/build-tool`, which does not work here; unset it \
                 to use the one weir installs"
            )),
            "{example}: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{example}: {stderr}");
    }
}

#[test]
fn a_build_tool_that_cannot_be_installed_is_one_error_naming_what_is_missing() {
    // A new cache folder, so the tools must be installed, and a PATH
    // without python3 or npm to install them with.
    let cache = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let no_python = "`python3` is not on the PATH; it is needed to make a private virtual \
                     environment (Python 3 with `venv`; Debian: python3-venv)";
    for (example, missing) in [
        (
            "etl-cleanse-py",
            format!("error: cannot install componentize-py 0.25.1: {no_python}"),
        ),
        (
            "etl-cleanse-js",
            "error: cannot install componentize-js 0.23.0: `npm` is not on the PATH; it is \
             needed to install it (Node.js 18 or later)"
                .to_owned(),
        ),
        (
            "etl-cleanse-c",
            format!("error: cannot install zig 0.15.2 (clang and wasi-libc): {no_python}"),
        ),
    ] {
        let dir = operator_copy(example);
        let output = weir()
            .args(["build", s(dir.path())])
            .env("WEIR_CACHE_DIR", cache.path())
            .env("PATH", empty.path())
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&missing), "{example}: {stderr}");
        assert!(
            stderr.contains("weir: installing"),
            "{example}: the progress line is missing: {stderr}"
        );
        // Nothing counts as installed after a failed install.
        let installed: Vec<_> = walk(cache.path())
            .into_iter()
            .filter(|p| p.ends_with(".installed"))
            .collect();
        assert!(installed.is_empty(), "{example}: {installed:?}");
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn fraud_detection_in_every_language_matches_rust() {
    let (want_out, want_dead) = expected("fraud-detection");
    for example in &FRAUD[1..] {
        let (out, dead) = run_example(example, None);
        assert_eq!(out, want_out, "{example}: output");
        assert_eq!(dead, want_dead, "{example}: dead letters");
        assert_eq!(
            expected(example),
            (want_out.clone(), want_dead.clone()),
            "{example}"
        );
    }
    // On generated transactions (timers firing as the watermark moves) the
    // Python, JavaScript and C operators raise exactly the Rust one's alerts.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("transactions.jsonl");
    let mut rng = Rng::new(9);
    let mut ts = 1_700_000_000_000u64;
    let lines: Vec<String> = (0..4000)
        .map(|id| {
            ts += rng.below(20_000);
            let amount = match rng.below(10) {
                0..=2 => format!("0.{:02}", rng.below(100)),
                3..=5 => format!("{}", 500 + rng.below(600)),
                _ => format!("{}.5", 1 + rng.below(400)),
            };
            format!(
                r#"{{"tx_id":{id},"account_id":"a{}","amount":{amount},"ts":{ts}}}"#,
                rng.below(30)
            )
        })
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let (rust_out, _) = run_example("fraud-detection", Some(&input));
    assert!(
        rust_out.lines().count() > 20,
        "the input should raise alerts"
    );
    for example in &FRAUD[1..] {
        let (out, _) = run_example(example, Some(&input));
        assert_eq!(out, rust_out, "{example}: alerts differ from Rust's");
    }
}

/// Transactions the Rust operator refuses, field by field, as serde words
/// it: the operator in every other language dead-letters the same ones with
/// the same reasons, and keeps tracking the others.
#[test]
fn fraud_detection_in_every_language_refuses_what_rust_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("transactions.jsonl");
    let lines = [
        r#"{"tx_id":"a","account_id":"x1","amount":0.5,"ts":1000}"#,
        r#"{"account_id":"x1","amount":600,"ts":2000}"#,
        r#"{"tx_id":"b","account_id":"x2","amount":"0.5","ts":3000}"#,
        r#"{"tx_id":"c","account_id":"x2","amount":true,"ts":3001}"#,
        r#"{"tx_id":"d","account_id":"x2","ts":3002}"#,
        r#"{"tx_id":"e","account_id":"x3","amount":0,"ts":4000}"#,
        r#"{"tx_id":{"z":1,"a":2},"account_id":"x3","amount":501,"ts":4001}"#,
        r#"{"account_id":"x4","amount":[2],"ts":5000}"#,
        r#"{"tx_id":9007199254740993,"account_id":"x4","amount":0.2,"ts":5001}"#,
        r#"{"tx_id":"f","account_id":"x4","amount":1e3,"ts":5002}"#,
        r#"{"tx_id":"g","account_id":"x5","amount":0.2,"ts":6000.5}"#,
    ];
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let rust = run_example("fraud-detection", Some(&input));
    assert_eq!(
        rust.0,
        "{\"account_id\":\"x3\",\"small_tx_id\":\"e\",\"large_tx_id\":{\"a\":2,\"z\":1}}\n\
         {\"account_id\":\"x4\",\"small_tx_id\":9007199254740993,\"large_tx_id\":\"f\"}\n"
    );
    assert_eq!(rust.1.lines().count(), 6, "{}", rust.1);
    for example in &FRAUD[1..] {
        assert_eq!(run_example(example, Some(&input)), rust, "{example}");
    }
}

#[test]
fn the_c_sdk_writes_json_values_as_serde_json_does() {
    // One batch of mixed types, so `v` crosses as a JSON column both ways.
    let values = [
        r#""text""#,
        r#"{"b":[1,2.0,{"z":null,"a":true}],"a":"x","":{}}"#,
        r#""a\"b\\c\n\t\u0001é\u2028""#,
        "0.1",
        "1.5",
        "-0.0",
        "1e-7",
        "1.0e-5",
        "1e-6",
        "2.5e-8",
        "1e15",
        "1e16",
        "1e17",
        "123456789.125",
        "12345.678e10",
        "1.7976931348623157e308",
        "5e-324",
        "123456789012345678",
        "-9223372036854775808",
        "18446744073709551615",
        "18446744073709551616",
        "[[],[1.25e-3,-7],{\"k\":[null]}]",
        "true",
    ];
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = values.iter().map(|v| format!(r#"{{"v":{v}}}"#)).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let pipeline = dir.path().join("echo.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[[source]]\ntype = \"jsonl\"\npath = \"{}\"\n\n\
             [[operator]]\nid = \"echo\"\nproject = \"{}\"\n\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"out.jsonl\"\n",
            s(&input),
            s(&repo().join("tests/fixtures/c-json-echo"))
        ),
    )
    .unwrap();
    run_ok(&["run", s(&pipeline)]);
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    let want: Vec<String> = values
        .iter()
        .map(|v| {
            let value: serde_json::Value = serde_json::from_str(v).unwrap();
            serde_json::json!({ "v": value }).to_string()
        })
        .collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
}

/// The languages of the vocabulary fixtures (`tests/fixtures/vocab/<operator>/<language>`).
const VOCAB: [&str; 4] = ["rust", "py", "js", "c"];

/// What the two vocabulary pipelines wrote: the `keep` (filter) then `tags`
/// (flat-map) pipeline's output and dead letters, and the keyed `visits`
/// pipeline's main output, `frequent` side output and dead letters.
#[derive(Debug, PartialEq)]
struct VocabRun {
    tags: String,
    tags_dead: String,
    visits: String,
    frequent: String,
    visits_dead: String,
}

/// The `[[operator]]` table of fixture `operator` in `language`.
fn vocab_operator(operator: &str, language: &str) -> String {
    let dir = repo()
        .join("tests/fixtures/vocab")
        .join(operator)
        .join(language);
    let field = if language == "rust" {
        "crate"
    } else {
        "project"
    };
    format!(
        "[[operator]]\nid = \"{operator}\"\n{field} = \"{}\"\n",
        s(&dir)
    )
}

/// Runs the pipeline file `pipeline` and returns the text of each of
/// `files` (empty when the pipeline wrote none).
fn run_pipeline(pipeline: &Path, files: &[&Path]) -> Vec<String> {
    let output = weir()
        .args(["run", s(pipeline)])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "weir run {} failed:\n{}",
        pipeline.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    files
        .iter()
        .map(|file| std::fs::read_to_string(file).unwrap_or_default())
        .collect()
}

/// Runs the `language` fixtures over `posts` and `visits`, with `visits` on
/// `parallelism` workers; with more than one, batches are of 7 records, so
/// the records are also batched otherwise than in the single-worker run.
fn run_vocab(language: &str, posts: &Path, visits: &Path, parallelism: u32) -> VocabRun {
    let batch = if parallelism > 1 {
        "batch_size = 7\n"
    } else {
        ""
    };
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);
    let tags_pipeline = file("tags.toml");
    std::fs::write(
        &tags_pipeline,
        format!(
            "{batch}[[source]]\nname = \"posts\"\ntype = \"jsonl\"\npath = \"{}\"\n\n{}\n{}\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"{}\"\n\n[dead_letter]\npath = \"{}\"\n",
            s(posts),
            vocab_operator("keep", language),
            vocab_operator("tags", language),
            s(&file("tags.jsonl")),
            s(&file("tags-dead.jsonl")),
        ),
    )
    .unwrap();
    let visits_pipeline = file("visits.toml");
    std::fs::write(
        &visits_pipeline,
        format!(
            "{batch}[[source]]\nname = \"visits\"\ntype = \"jsonl\"\npath = \"{}\"\n\n{}\
             key_by = \"user\"\nparallelism = {parallelism}\n\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"{}\"\n\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"{}\"\nfrom = \"visits.frequent\"\n\n\
             [dead_letter]\npath = \"{}\"\n",
            s(visits),
            vocab_operator("visits", language),
            s(&file("visits.jsonl")),
            s(&file("frequent.jsonl")),
            s(&file("visits-dead.jsonl")),
        ),
    )
    .unwrap();
    let [tags, tags_dead] = <[String; 2]>::try_from(run_pipeline(
        &tags_pipeline,
        &[&file("tags.jsonl"), &file("tags-dead.jsonl")],
    ))
    .unwrap();
    let [visits, frequent, visits_dead] = <[String; 3]>::try_from(run_pipeline(
        &visits_pipeline,
        &[
            &file("visits.jsonl"),
            &file("frequent.jsonl"),
            &file("visits-dead.jsonl"),
        ],
    ))
    .unwrap();
    VocabRun {
        tags,
        tags_dead,
        visits,
        frequent,
        visits_dead,
    }
}

/// The lines of a `visits` output grouped by user, in order within a user:
/// what parallel workers keep (per-key order) whatever their interleaving.
fn per_user(text: &str) -> std::collections::BTreeMap<String, Vec<&str>> {
    let mut users = std::collections::BTreeMap::<String, Vec<&str>>::new();
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        users
            .entry(record["user"].to_string())
            .or_default()
            .push(line);
    }
    users
}

/// Dead letters as values ordered by input line and operator, with `raw`
/// read as JSON. The host writes the `raw` of a record that a later operator
/// of a chain refuses (`tags`, after `keep`) from the batch it came in, so
/// its fields come in the order of that batch's columns, which depends on
/// how the records were batched: the test compares the record, not the
/// order of its fields, and not the order in which the host interleaves
/// dead letters of two operators, or its own (a missing key field) with an
/// operator's.
fn dead_letters(text: &str) -> Vec<serde_json::Value> {
    let mut dead: Vec<serde_json::Value> = text
        .lines()
        .map(|line| {
            let mut d: serde_json::Value = serde_json::from_str(line).unwrap();
            let raw: serde_json::Value = serde_json::from_str(d["raw"].as_str().unwrap()).unwrap();
            d["raw"] = raw;
            d
        })
        .collect();
    dead.sort_by_key(|d| (d["line"].as_i64(), d["operator"].to_string()));
    dead
}

/// Asserts `got == want`, naming the first line that differs rather than
/// printing thousands of them.
fn assert_same<T: PartialEq + std::fmt::Debug>(got: &[T], want: &[T], what: &str) {
    if let Some(at) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
        panic!("{what}: line {at} is {:?}, not {:?}", got[at], want[at]);
    }
    assert_eq!(got.len(), want.len(), "{what}: number of lines");
}

/// Asserts that `run` holds what the single-worker Rust `want` holds:
/// output lines byte for byte in the same order (with `visits` on several
/// workers, each user's in the same order), and the same dead letters (see
/// [`dead_letters`]).
fn assert_same_as(run: &VocabRun, want: &VocabRun, parallel: bool, what: &str) {
    let lines = |text: &str| text.lines().map(str::to_owned).collect::<Vec<_>>();
    assert_same(
        &lines(&run.tags),
        &lines(&want.tags),
        &format!("{what}: tags"),
    );
    for (got, want, name) in [
        (&run.visits, &want.visits, "visits"),
        (&run.frequent, &want.frequent, "frequent"),
    ] {
        if parallel {
            let (got, want) = (per_user(got), per_user(want));
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                want.keys().collect::<Vec<_>>(),
                "{what}: {name}: users"
            );
            for (user, lines) in &want {
                assert_same(&got[user], lines, &format!("{what}: {name} of {user}"));
            }
        } else {
            assert_same(&lines(got), &lines(want), &format!("{what}: {name}"));
        }
    }
    for (got, want, name) in [
        (&run.tags_dead, &want.tags_dead, "tags dead letters"),
        (&run.visits_dead, &want.visits_dead, "visits dead letters"),
    ] {
        assert_same(
            &dead_letters(got),
            &dead_letters(want),
            &format!("{what}: {name}"),
        );
    }
}

/// A post for `keep` then `tags`: ids of every type, tags in and out of
/// ASCII (only ASCII letters are lower-cased), empty ones, and posts that
/// are drafts, have a `draft` of the wrong type or no list of text tags.
fn random_post(rng: &mut Rng) -> String {
    const IDS: &[&str] = &[
        "1",
        r#""p-7""#,
        "null",
        r#"{"z":[1,2.5],"a":"x"}"#,
        "9007199254740993",
        "2.5",
        "true",
    ];
    const TAGS: &[&str] = &[
        r#""Rust""#,
        r#""wasm""#,
        r#""""#,
        r#""ÉtÉ Σ İ""#,
        r#""MiXeD-Case_9""#,
        r#""\u0000A\"B\\""#,
        r#""ZED""#,
        r#""ß""#,
    ];
    const ODD_TAGS: &[&str] = &["7", "null", r#"["x"]"#, "true", r#"{"t":"A"}"#];
    const DRAFTS: &[&str] = &["true", "false", "null", r#""yes""#, "1"];
    let mut fields = Vec::new();
    if rng.below(10) != 0 {
        fields.push(format!(r#""id":{}"#, rng.pick(IDS)));
    }
    match rng.below(20) {
        0 => {}
        1 => fields.push(r#""tags":"Rust""#.to_owned()),
        2 => fields.push(r#""tags":null"#.to_owned()),
        3 => fields.push(r#""tags":{"a":"B"}"#.to_owned()),
        n => {
            let mut tags: Vec<&str> = (0..rng.below(5)).map(|_| *rng.pick(TAGS)).collect();
            if n == 4 && !tags.is_empty() {
                let at = rng.below(tags.len() as u64) as usize;
                tags[at] = *rng.pick(ODD_TAGS);
            }
            fields.push(format!(r#""tags":[{}]"#, tags.join(",")));
        }
    }
    if rng.below(4) == 0 {
        fields.push(format!(r#""draft":{}"#, rng.pick(DRAFTS)));
    }
    if rng.below(5) == 0 {
        fields.push(r#""extra":{"k":[1,"two"]}"#.to_owned());
    }
    // Field order varies too.
    if rng.below(2) == 0 {
        fields.reverse();
    }
    format!("{{{}}}", fields.join(","))
}

/// A page visit for `visits`: a few users (one of them a number, so keys
/// are not all text) over a few pages, so pages reach their third visit
/// often; some visits have no page or one that is not text.
fn random_visit(rng: &mut Rng) -> String {
    const USERS: &[&str] = &[r#""ann""#, r#""bob""#, r#""cy""#, r#""dee""#, "7"];
    const PAGES: &[&str] = &[
        r#""/""#,
        r#""/a""#,
        r#""/b""#,
        r#""/c""#,
        r#""/é\"q""#,
        r#""""#,
    ];
    const ODD_PAGES: &[&str] = &["5", "null", r#"["/a"]"#, "false"];
    let user = rng.pick(USERS);
    match rng.below(40) {
        0 => format!(r#"{{"user":{user}}}"#),
        1 => format!(r#"{{"user":{user},"page":{}}}"#, rng.pick(ODD_PAGES)),
        2 => format!(r#"{{"page":{}}}"#, rng.pick(PAGES)),
        _ => format!(r#"{{"user":{user},"page":{}}}"#, rng.pick(PAGES)),
    }
}

/// Filter, flat-map, map state (get, set, remove, entries) and a named side
/// output, through a real component of each SDK: the Python, JavaScript and
/// C operators write byte for byte the output and dead letters of the Rust
/// ones, on a small input whose Rust result is spelled out here and on
/// generated ones, with `visits` on one worker and on two (and batches of 7).
#[test]
fn filter_flat_map_map_state_and_side_outputs_match_rust_in_every_language() {
    let dir = tempfile::tempdir().unwrap();
    let (posts, visits) = (
        dir.path().join("posts.jsonl"),
        dir.path().join("visits.jsonl"),
    );
    std::fs::write(
        &posts,
        r#"{"id":1,"tags":["Rust","WASM",""]}
{"id":"b","tags":[],"draft":false}
{"id":3,"tags":["x"],"draft":true}
{"id":4,"tags":"rust"}
{"id":5}
{"id":6,"tags":["Ok",7]}
{"id":7,"tags":["A"],"draft":"no"}
{"id":8,"tags":["ÉtÉ","MiXed"],"draft":false,"extra":{"k":1}}
{"id":null,"tags":["Zed"]}
"#,
    )
    .unwrap();
    std::fs::write(
        &visits,
        r#"{"user":"ann","page":"/a"}
{"user":"bob","page":"/a"}
{"user":"ann","page":"/b"}
{"user":"ann","page":"/a"}
{"user":"ann","page":"/a"}
{"user":"ann","page":7}
{"user":"ann","page":"/a"}
{"user":"bob"}
{"page":"/a"}
"#,
    )
    .unwrap();
    let rust = run_vocab("rust", &posts, &visits, 1);
    assert_eq!(
        rust.tags,
        "{\"id\":1,\"tag\":\"rust\"}\n\
         {\"id\":1,\"tag\":\"wasm\"}\n\
         {\"id\":8,\"tag\":\"ÉtÉ\"}\n\
         {\"id\":8,\"tag\":\"mixed\"}\n\
         {\"tag\":\"zed\"}\n"
    );
    // Sorted by input line: the host may interleave two operators' dead letters.
    let reasons = |dead: &str| -> Vec<(i64, String, String)> {
        let mut reasons: Vec<_> = dead
            .lines()
            .map(|line| {
                let d: serde_json::Value = serde_json::from_str(line).unwrap();
                (
                    d["line"].as_i64().unwrap(),
                    d["operator"].as_str().unwrap().to_owned(),
                    d["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        reasons.sort();
        reasons
    };
    let not_a_list = "`tags` must be a list of strings";
    assert_eq!(
        reasons(&rust.tags_dead),
        [
            (4, "tags", not_a_list),
            (5, "tags", not_a_list),
            (6, "tags", not_a_list),
            (7, "keep", "`draft` must be true or false"),
        ]
        .map(|(line, op, reason)| (line, op.to_owned(), reason.to_owned()))
    );
    assert_eq!(
        rust.visits,
        "{\"user\":\"ann\",\"page\":\"/a\",\"visits\":1,\"distinct\":1,\"total\":1}\n\
         {\"user\":\"bob\",\"page\":\"/a\",\"visits\":1,\"distinct\":1,\"total\":1}\n\
         {\"user\":\"ann\",\"page\":\"/b\",\"visits\":1,\"distinct\":2,\"total\":2}\n\
         {\"user\":\"ann\",\"page\":\"/a\",\"visits\":2,\"distinct\":2,\"total\":3}\n\
         {\"user\":\"ann\",\"page\":\"/a\",\"visits\":3,\"distinct\":2,\"total\":4}\n\
         {\"user\":\"ann\",\"page\":\"/a\",\"visits\":1,\"distinct\":2,\"total\":2}\n"
    );
    assert_eq!(rust.frequent, "{\"user\":\"ann\",\"page\":\"/a\"}\n");
    assert_eq!(
        reasons(&rust.visits_dead),
        [
            (6, "visits", "`page` must be a string"),
            (8, "visits", "`page` must be a string"),
            (9, "visits", "missing key field `user`"),
        ]
        .map(|(line, op, reason)| (line, op.to_owned(), reason.to_owned()))
    );
    for language in &VOCAB[1..] {
        let run = run_vocab(language, &posts, &visits, 1);
        assert_same_as(&run, &rust, false, &format!("{language}, small input"));
    }

    let mut rng = Rng::new(21);
    let lines: Vec<String> = (0..3000).map(|_| random_post(&mut rng)).collect();
    std::fs::write(&posts, lines.join("\n") + "\n").unwrap();
    let lines: Vec<String> = (0..3000).map(|_| random_visit(&mut rng)).collect();
    std::fs::write(&visits, lines.join("\n") + "\n").unwrap();
    let rust = run_vocab("rust", &posts, &visits, 1);
    // The generated input reaches every rule of the operators.
    let dead_by =
        |dead: &str, reason: &str| reasons(dead).iter().filter(|(_, _, r)| r == reason).count();
    assert!(rust.tags.lines().count() > 2000, "{}", rust.tags);
    assert!(dead_by(&rust.tags_dead, "`draft` must be true or false") > 50);
    assert!(dead_by(&rust.tags_dead, not_a_list) > 200);
    assert!(rust.tags.contains(r#""tag":"\u0000a\"b\\""#));
    assert!(rust.frequent.lines().count() > 300, "{}", rust.frequent);
    assert!(rust.visits.contains(r#""user":7,"#));
    assert!(dead_by(&rust.visits_dead, "`page` must be a string") > 50);
    let parallel = run_vocab("rust", &posts, &visits, 2);
    assert_same_as(&parallel, &rust, true, "rust, 2 workers");
    for language in &VOCAB[1..] {
        let run = run_vocab(language, &posts, &visits, 1);
        assert_same_as(&run, &rust, false, language);
        let parallel = run_vocab(language, &posts, &visits, 2);
        assert_same_as(&parallel, &rust, true, &format!("{language}, 2 workers"));
    }
}

/// Processing-time timers of the C SDK (`weir_register_processing_timer`,
/// `weir_processing_time`, `on_timer` with `WEIR_PROCESSING_TIME`) fire on
/// the wall clock as the Rust SDK's do. When a timer fires depends on the
/// clock, so the reminders are checked, not compared byte for byte: both
/// remind `b` of 1 record, and `a` of 2 (once or twice: two timers of a key
/// at the same millisecond are one), and nothing else.
#[test]
fn c_processing_time_timers_fire_as_rust_ones_do() {
    for (field, operator) in [
        ("crate", repo().join("tests/fixtures/reminder")),
        ("project", repo().join("tests/fixtures/reminder-c")),
    ] {
        let lines = reminders_on_the_wall_clock(field, &operator);
        let allowed = [
            r#"{"key":"a","notes":1}"#,
            r#"{"key":"a","notes":2}"#,
            r#"{"key":"b","notes":1}"#,
        ];
        assert!(
            lines.iter().all(|l| allowed.contains(&l.as_str())),
            "{}: {lines:?}",
            operator.display()
        );
        assert_eq!(
            lines.iter().filter(|l| l.contains(r#""b""#)).count(),
            1,
            "{}: {lines:?}",
            operator.display()
        );
    }
}

#[test]
fn the_python_sdk_and_operators_pass_their_unit_tests_in_cpython() {
    let sdk = repo().join("guest-sdk/python");
    let mut runs = vec![(
        sdk.clone(),
        vec!["-m", "unittest", "discover", "-s", "tests", "-t", "."],
    )];
    for dir in [
        "examples/etl-cleanse-py/operator",
        "examples/sales-by-product-py/operator",
        "examples/hot-swap/counter-v2-py",
    ] {
        runs.push((repo().join(dir), vec!["-m", "unittest"]));
    }
    for (dir, args) in runs {
        let output = std::process::Command::new("python3")
            .args(&args)
            .current_dir(&dir)
            .env("PYTHONPATH", &sdk)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{}: {stderr}", dir.display());
        // unittest passes with no tests found, so each run must have some.
        assert!(
            stderr.contains("\nOK") && !stderr.contains("Ran 0 tests"),
            "{}: {stderr}",
            dir.display()
        );
    }
}
