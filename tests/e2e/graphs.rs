//! Dataflow graphs: `from` on operators and sinks gives fan-out, unions,
//! diamonds and side outputs read by operators, each checked against
//! outputs worked out here; bad graphs are refused with the file and line;
//! a diamond killed with SIGKILL resumes to the output of a run that was not.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir::control::client::AdminClient;

use crate::support::{
    Rng, admin_address, read_jsonl, repo, run, run_err, run_ok, s, weir, with_custom_section,
};

fn keep() -> String {
    s(&repo().join("tests/fixtures/vocab/keep/rust")).to_owned()
}

fn tags() -> String {
    s(&repo().join("tests/fixtures/vocab/tags/rust")).to_owned()
}

fn visits() -> String {
    s(&repo().join("tests/fixtures/vocab/visits/rust")).to_owned()
}

fn sales() -> String {
    s(&repo().join("examples/sales-by-product/operator")).to_owned()
}

fn daily_units() -> String {
    s(&repo().join("examples/top-products/daily-units")).to_owned()
}

/// A folder with a pipeline file and its inputs.
struct Job {
    dir: tempfile::TempDir,
}

impl Job {
    fn new(pipeline: &str, inputs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in inputs {
            std::fs::write(dir.path().join(name), text).expect("input written");
        }
        std::fs::write(dir.path().join("pipeline.toml"), pipeline).expect("pipeline written");
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn pipeline(&self) -> PathBuf {
        self.path("pipeline.toml")
    }

    fn run(&self) {
        run_ok(&["run", s(&self.pipeline())]);
    }

    fn output(&self, name: &str) -> Vec<Value> {
        read_jsonl(&self.path(name))
    }
}

/// Posts `{id, tags, draft}`, every fifth a draft.
fn posts(count: u64) -> (String, Vec<Value>) {
    let mut rng = Rng::new(7);
    let posts: Vec<Value> = (0..count)
        .map(|id| {
            let tags: Vec<String> = (0..rng.below(4))
                .map(|_| format!("T{}", rng.below(6)))
                .collect();
            json!({"id": id, "tags": tags, "draft": id % 5 == 0})
        })
        .collect();
    let text = posts.iter().map(|p| format!("{p}\n")).collect();
    (text, posts)
}

/// What `keep` then `tags` make of `posts`.
fn kept_and_tagged(posts: &[Value]) -> (Vec<Value>, Vec<Value>) {
    let kept: Vec<Value> = posts
        .iter()
        .filter(|p| p["draft"] == json!(false))
        .cloned()
        .collect();
    let tagged = kept
        .iter()
        .flat_map(|p| {
            p["tags"]
                .as_array()
                .expect("tags")
                .iter()
                .map(|t| json!({"id": p["id"], "tag": t.as_str().expect("tag").to_lowercase()}))
                .collect::<Vec<_>>()
        })
        .collect();
    (kept, tagged)
}

#[test]
fn one_stream_fans_out_to_two_sinks_and_an_operator() {
    let (text, posts) = posts(3000);
    let job = Job::new(
        &format!(
            r#"
[[source]]
name = "posts"
type = "jsonl"
path = "posts.jsonl"

[[operator]]
id = "keep"
crate = "{keep}"

[[operator]]
id = "tags"
crate = "{tags}"
from = "keep"

[[sink]]
type = "jsonl"
path = "all.jsonl"
from = "posts"

[[sink]]
type = "jsonl"
path = "kept.jsonl"
from = "keep"

[[sink]]
type = "jsonl"
path = "kept-too.jsonl"
from = ["keep"]

[[sink]]
type = "jsonl"
path = "tags.jsonl"
"#,
            keep = keep(),
            tags = tags()
        ),
        &[("posts.jsonl", &text)],
    );
    job.run();
    let (kept, tagged) = kept_and_tagged(&posts);
    assert_eq!(job.output("all.jsonl"), posts);
    assert_eq!(job.output("kept.jsonl"), kept);
    assert_eq!(job.output("kept-too.jsonl"), kept);
    assert_eq!(job.output("tags.jsonl"), tagged);
    assert!(kept.len() > 2000 && tagged.len() > 2000);
}

/// Orders `{product, qty, price_cents}` of `products` products.
fn orders(seed: u64, count: usize, products: u64) -> Vec<Value> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| {
            json!({
                "product": format!("p{}", rng.below(products)),
                "qty": 1 + rng.below(5),
                "price_cents": 100 + rng.below(900),
            })
        })
        .collect()
}

fn lines(records: &[Value]) -> String {
    records.iter().map(|r| format!("{r}\n")).collect()
}

#[test]
fn a_keyed_operator_reads_the_union_of_two_sources() {
    let (east, west) = (orders(1, 4000, 40), orders(2, 3000, 40));
    let job = Job::new(
        &format!(
            r#"
[[source]]
name = "east"
type = "jsonl"
path = "east.jsonl"

[[source]]
name = "west"
type = "jsonl"
path = "west.jsonl"

[[operator]]
id = "sales"
crate = "{}"
from = ["east", "west"]
key_by = "product"
parallelism = 2

[[sink]]
type = "jsonl"
path = "sales.jsonl"
"#,
            sales()
        ),
        &[("east.jsonl", &lines(&east)), ("west.jsonl", &lines(&west))],
    );
    job.run();
    // The sources interleave as they come, so each product's running totals
    // go up by its orders in some order: the steps are its orders.
    let mut wanted: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for order in east.iter().chain(&west) {
        let qty = order["qty"].as_i64().unwrap();
        wanted
            .entry(order["product"].as_str().unwrap().to_owned())
            .or_default()
            .push((qty, qty * order["price_cents"].as_i64().unwrap()));
    }
    let mut steps: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    let mut last: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for total in job.output("sales.jsonl") {
        let product = total["product"].as_str().unwrap().to_owned();
        let now = (
            total["units"].as_i64().unwrap(),
            total["revenue_cents"].as_i64().unwrap(),
        );
        let before = last.insert(product.clone(), now).unwrap_or((0, 0));
        steps
            .entry(product)
            .or_default()
            .push((now.0 - before.0, now.1 - before.1));
    }
    for list in wanted.values_mut().chain(steps.values_mut()) {
        list.sort();
    }
    assert_eq!(steps, wanted);
}

/// Orders with an event time (`ts`, epoch ms, over `days` days, some a
/// little out of order) and some drafts.
fn timed_orders(seed: u64, count: u64, days: u64, disorder_ms: u64) -> Vec<Value> {
    let mut rng = Rng::new(seed);
    let start = 1_790_000_000_000u64 - 1_790_000_000_000 % 86_400_000;
    let step = days * 86_400_000 / count;
    (0..count)
        .map(|i| {
            json!({
                "product": format!("p{}", rng.below(30)),
                "qty": 1 + rng.below(5),
                "ts": start + i * step - rng.below(disorder_ms + 1).min(i * step),
                "draft": rng.below(7) == 0,
            })
        })
        .collect()
}

/// `source -> left, right -> daily`: the two branches both keep the orders
/// that are not drafts, so `daily` counts each of them twice.
fn diamond(extra: &str, delay: &str) -> String {
    format!(
        r#"{extra}
[[source]]
name = "orders"
type = "jsonl"
path = "orders.jsonl"
event_time = {{ field = "ts", watermark_delay = "{delay}" }}

[[operator]]
id = "left"
crate = "{keep}"
from = "orders"

[[operator]]
id = "right"
crate = "{keep}"
from = "orders"
parallelism = 2

[[operator]]
id = "daily"
crate = "{daily}"
from = ["left", "right"]
key_by = "product"

[[sink]]
type = "jsonl"
path = "out/daily.jsonl"

[[sink]]
type = "jsonl"
path = "out/late.jsonl"
from = "daily.late"

[dead_letter]
path = "out/dead-letter.jsonl"
"#,
        keep = keep(),
        daily = daily_units()
    )
}

/// `YYYY-MM-DD` of epoch ms.
fn day(ms: u64) -> String {
    let days = (ms / 86_400_000) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{:04}-{m:02}-{d:02}", yoe + era * 400 + i64::from(m <= 2))
}

#[test]
fn a_diamond_joins_its_two_branches_in_one_window_operator() {
    let orders = timed_orders(3, 6000, 5, 600_000);
    let job = Job::new(&diamond("", "15m"), &[("orders.jsonl", &lines(&orders))]);
    job.run();
    // Windows close in time order, and a day's products in key order.
    let mut units: BTreeMap<(String, String), i64> = BTreeMap::new();
    for order in orders.iter().filter(|o| o["draft"] == json!(false)) {
        *units
            .entry((
                day(order["ts"].as_u64().unwrap()),
                order["product"].as_str().unwrap().to_owned(),
            ))
            .or_default() += 2 * order["qty"].as_i64().unwrap();
    }
    let wanted: Vec<Value> = units
        .into_iter()
        .map(|((day, product), units)| json!({"day": day, "product": product, "units": units}))
        .collect();
    assert_eq!(job.output("out/daily.jsonl"), wanted);
    assert_eq!(
        std::fs::read_to_string(job.path("out/late.jsonl")).unwrap(),
        "",
        "the watermark delay covers the disorder"
    );
}

#[test]
fn a_side_output_feeds_an_operator_and_a_sink() {
    let mut rng = Rng::new(11);
    let visits_in: Vec<Value> = (0..5000)
        .map(|_| json!({"user": format!("u{}", rng.below(50)), "page": format!("/p{}", rng.below(8))}))
        .collect();
    let job = Job::new(
        &format!(
            r#"
[[source]]
name = "visits"
type = "jsonl"
path = "visits.jsonl"

[[operator]]
id = "counts"
crate = "{visits}"
key_by = "user"
parallelism = 2

[[operator]]
id = "frequent"
crate = "{keep}"
from = "counts.frequent"

[[sink]]
type = "jsonl"
path = "counts.jsonl"
from = "counts"

[[sink]]
type = "jsonl"
path = "frequent.jsonl"

[[sink]]
type = "jsonl"
path = "frequent-raw.jsonl"
from = "counts.frequent"
"#,
            visits = visits(),
            keep = keep()
        ),
        &[("visits.jsonl", &lines(&visits_in))],
    );
    job.run();
    // A user's page goes to `frequent` at every third visit.
    let mut seen: BTreeMap<(String, String), u32> = BTreeMap::new();
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for visit in &visits_in {
        let (user, page) = (
            visit["user"].as_str().unwrap().to_owned(),
            visit["page"].as_str().unwrap().to_owned(),
        );
        let count = seen.entry((user.clone(), page.clone())).or_default();
        *count += 1;
        if *count == 3 {
            *count = 0;
            wanted.entry(user).or_default().push(page);
        }
    }
    let by_user = |records: Vec<Value>| {
        let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in records {
            got.entry(r["user"].as_str().unwrap().to_owned())
                .or_default()
                .push(r["page"].as_str().unwrap().to_owned());
        }
        got
    };
    assert_eq!(by_user(job.output("frequent.jsonl")), wanted);
    assert_eq!(by_user(job.output("frequent-raw.jsonl")), wanted);
    assert_eq!(job.output("counts.jsonl").len(), visits_in.len());
}

/// `weir check` of `text` fails naming the file, `line` and `name`.
fn refused(text: &str, line: usize, name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("graph.toml");
    std::fs::write(&file, text).unwrap();
    let err = run_err(&["check", s(&file)]);
    let at = format!("{}: line {line}: ", s(&file));
    assert!(err.contains(&at), "wanted `{at}` in: {err}");
    assert!(
        err.contains(&format!("`{name}`")),
        "wanted `{name}` in: {err}"
    );
    err
}

/// The 1-based line of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn a_cycle_is_refused_with_its_line() {
    let text = "[[source]]\nname = \"in\"\ntype = \"stdin\"\n\n\
                [[operator]]\nid = \"a\"\nmodule = \"a.wasm\"\nfrom = [\"in\", \"c\"]\n\n\
                [[operator]]\nid = \"b\"\nmodule = \"b.wasm\"\nfrom = \"a\"\n\n\
                [[operator]]\nid = \"c\"\nmodule = \"c.wasm\"\nfrom = \"b.side\"\n\n\
                [[sink]]\ntype = \"stdout\"\nfrom = \"b\"\n";
    let err = refused(text, line_of(text, "from = \"a\""), "b");
    assert!(err.contains("`a -> b -> c -> a` is a cycle"), "{err}");

    let text = "[[source]]\ntype = \"stdin\"\n\n\
                [[operator]]\nid = \"self\"\nmodule = \"a.wasm\"\nfrom = \"self.loop\"\n\n\
                [[sink]]\ntype = \"stdout\"\n";
    let err = refused(text, line_of(text, "from = \"self.loop\""), "self");
    assert!(err.contains("`self -> self` is a cycle"), "{err}");
}

#[test]
fn an_unknown_name_is_refused_with_its_line() {
    let text = "[[source]]\nname = \"orders\"\ntype = \"stdin\"\n\n\
                [[operator]]\nid = \"a\"\nmodule = \"a.wasm\"\nfrom = [\n  \"orders\",\n  \"ordres\",\n]\n\n\
                [[sink]]\ntype = \"stdout\"\n";
    let err = refused(text, line_of(text, "\"ordres\""), "ordres");
    assert!(err.contains("names no source or operator"), "{err}");
    assert!(err.contains("known: `orders`, `a`"), "{err}");

    let text = "[[source]]\ntype = \"stdin\"\n\n\
                [[operator]]\nid = \"a\"\nmodule = \"a.wasm\"\n\n\
                [[sink]]\ntype = \"stdout\"\nfrom = \"b.late\"\n";
    refused(text, line_of(text, "b.late"), "b.late");
}

#[test]
fn a_stream_nothing_reads_is_refused_with_its_line() {
    // A source no operator or sink names.
    let text = "[[source]]\nname = \"orders\"\ntype = \"stdin\"\n\n\
                [[source]]\nname = \"returns\"\ntype = \"jsonl\"\npath = \"r.jsonl\"\n\n\
                [[operator]]\nid = \"a\"\nmodule = \"a.wasm\"\nfrom = \"orders\"\n\n\
                [[sink]]\ntype = \"stdout\"\n";
    let err = refused(text, line_of(text, "\"returns\""), "returns");
    assert!(err.contains("read by no operator or sink"), "{err}");

    // An operator's output: `b` reads `a`'s side output, not its main one.
    let text = "[[source]]\ntype = \"stdin\"\n\n\
                [[operator]]\nid = \"a\"\nmodule = \"a.wasm\"\n\n\
                [[operator]]\nid = \"b\"\nmodule = \"b.wasm\"\nfrom = \"a.late\"\n\n\
                [[sink]]\ntype = \"stdout\"\n";
    let err = refused(text, line_of(text, "id = \"a\""), "a");
    assert!(err.contains("read by no operator or sink"), "{err}");

    // The same stream twice in one `from`.
    let text = "[[source]]\nname = \"in\"\ntype = \"stdin\"\n\n\
                [[sink]]\ntype = \"stdout\"\nfrom = [\"in\", \"in\"]\n";
    let err = refused(text, line_of(text, "from = [\"in\", \"in\"]"), "in");
    assert!(err.contains("named twice"), "{err}");
}

/// A diamond killed with SIGKILL right after a checkpoint, and run to the
/// end, writes what an uninterrupted run writes. A run may end before it
/// is killed on a fast machine: then it is tried again in a fresh folder.
#[test]
fn a_diamond_killed_after_a_checkpoint_resumes_to_the_uninterrupted_output() {
    let orders = timed_orders(5, 200_000, 40, 1_800_000);
    let text = lines(&orders);
    let pipeline = diamond(
        "batch_size = 256\ncheckpoint_interval = \"50ms\"\ncheckpoint_dir = \"ck\"\n",
        "20m",
    );
    let reference = Job::new(&pipeline, &[("orders.jsonl", &text)]);
    run_ok(&["run", s(&reference.pipeline()), "--fresh"]);
    let daily = std::fs::read(reference.path("out/daily.jsonl")).unwrap();
    let late = sorted_lines(&reference.path("out/late.jsonl"));
    assert!(daily.len() > 1000, "{} bytes", daily.len());
    assert!(!late.is_empty(), "some orders are later than the delay");

    for attempt in 0..5 {
        let job = Job::new(&pipeline, &[("orders.jsonl", &text)]);
        crate::support::pace_sources(&job.pipeline(), 3);
        let Some(log) = kill_after_a_checkpoint(&job) else {
            eprintln!("attempt {attempt}: the run ended before the kill; again");
            continue;
        };
        let out = run_ok(&["run", s(&job.pipeline())]);
        let resumed = String::from_utf8_lossy(&out.stderr);
        assert!(
            resumed.contains("weir: resuming from checkpoint"),
            "first run:\n{log}\nsecond run:\n{resumed}"
        );
        assert!(
            std::fs::read(job.path("out/daily.jsonl")).unwrap() == daily,
            "the windows differ from the uninterrupted run's"
        );
        assert_eq!(sorted_lines(&job.path("out/late.jsonl")), late);
        return;
    }
    panic!("every run ended before it could be killed after a checkpoint");
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// Starts `job`, waits for a completed checkpoint and kills it; its log,
/// or `None` when the run ended first.
fn kill_after_a_checkpoint(job: &Job) -> Option<String> {
    let mut child = weir()
        .args(["run", s(&job.pipeline())])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let log = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().expect("stderr piped");
    let reader = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                log.lock().expect("log").push(line);
            }
        })
    };
    let completed = || {
        std::fs::read_dir(job.path("ck")).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("chk-") && !name.ends_with(".tmp")
            })
        })
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut ended = false;
    while !completed() {
        if child.try_wait().expect("wait").is_some() || Instant::now() > deadline {
            ended = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let status = child.wait().expect("weir ends");
    let _ = reader.join();
    let log = log.lock().expect("log").join("\n");
    // Killed (no exit code), not ended on its own.
    if ended || status.code().is_some() {
        assert!(status.success(), "weir failed: {log}");
        return None;
    }
    Some(log)
}

/// `weir status` shows what each operator reads, and swapping the operator
/// in the middle of a graph leaves the rest running: every record still
/// reaches every output once.
#[test]
fn status_shows_the_graph_and_a_swap_in_the_middle_keeps_it_running() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"admin = "127.0.0.1:0"

[[source]]
name = "posts"
type = "stdin"

[[operator]]
id = "keep"
crate = "{keep}"

[[operator]]
id = "tags"
crate = "{tags}"

[[sink]]
type = "jsonl"
path = "all.jsonl"
from = "posts"

[[sink]]
type = "jsonl"
path = "tags.jsonl"
"#,
            keep = keep(),
            tags = tags()
        ),
    )
    .unwrap();
    let mut child = weir()
        .args(["run", s(&pipeline)])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let address = admin_address(&mut child, Arc::clone(&log)).expect("the admin API starts");
    let admin = AdminClient::new(address);
    let mut stdin = child.stdin.take().unwrap();
    let (text, posts) = posts(400);
    let (first, second) = text.split_at(text.match_indices('\n').nth(199).unwrap().0 + 1);
    let (_, tagged) = kept_and_tagged(&posts);
    let (_, tagged_first) = kept_and_tagged(&posts[..200]);

    // The first half reaches both outputs.
    stdin.write_all(first.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while count_lines(&dir.path().join("tags.jsonl")) < tagged_first.len()
        || count_lines(&dir.path().join("all.jsonl")) < 200
    {
        assert!(Instant::now() < deadline, "the first half did not arrive");
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = admin.status().expect("status");
    let inputs: Vec<(&str, Vec<String>)> = status
        .iter()
        .map(|op| (op.id.as_str(), op.inputs.clone()))
        .collect();
    assert_eq!(
        inputs,
        vec![
            ("keep", vec!["posts".to_owned()]),
            ("tags", vec!["keep".to_owned()])
        ]
    );
    let table = run(&["status", "--admin", &address.to_string()]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("FROM"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("tags") && l.contains(" keep ")),
        "{table}"
    );

    // A new version of `keep` (the same code, another hash) takes over.
    let component = weir::builder::build_crate(&repo().join("tests/fixtures/vocab/keep/rust"))
        .expect("keep builds");
    let v2 = with_custom_section(&std::fs::read(component).unwrap(), "v2");
    let report = admin.deploy("keep", &v2).expect("version 2 deploys");
    assert_eq!(report.version, 2);
    stdin.write_all(second.as_bytes()).unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    let log = log.lock().unwrap().join("\n");
    assert!(status.success(), "{log}");
    assert_eq!(read_jsonl(&dir.path().join("all.jsonl")), posts);
    assert_eq!(read_jsonl(&dir.path().join("tags.jsonl")), tagged);
}

fn count_lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}
