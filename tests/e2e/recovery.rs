//! Checkpoints and exactly-once recovery: `weir run` killed with SIGKILL at
//! random moments and started again ends with the same output file, byte for
//! byte, as a run that never crashed.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir::control::client::AdminClient;

use crate::support::{Rng, admin_address, repo, run_ok, s, weir};

/// Orders in each test's input: the issue asks for at least 2 million.
const ORDERS: usize = 2_000_000;

/// A folder with a sales-by-product pipeline over `ORDERS` generated orders.
struct Sales {
    dir: tempfile::TempDir,
}

impl Sales {
    /// A folder with `pipeline` (checkpoints every 100 ms into `ck` are
    /// added) and the files `inputs` gives.
    fn custom(pipeline: &str, inputs: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in inputs {
            std::fs::write(dir.path().join(name), text).expect("input written");
        }
        std::fs::write(
            dir.path().join("pipeline.toml"),
            format!("checkpoint_interval = \"100ms\"\ncheckpoint_dir = \"ck\"\n{pipeline}"),
        )
        .expect("pipeline written");
        Self { dir }
    }

    /// Kills up to `attempts` runs, each at a random moment up to
    /// `jitter_ms` after a checkpoint exists (at least two must be killed
    /// before they end), then runs to the end.
    fn crash_and_finish(&self, seed: u64, attempts: usize, jitter_ms: u64) {
        let mut rng = Rng::new(seed);
        let mut kills = 0;
        for _ in 0..attempts {
            if self.crash(&mut rng, jitter_ms, has_checkpoint).is_none() {
                break;
            }
            kills += 1;
        }
        assert!(
            kills >= 2,
            "only {kills} runs were killed before they ended"
        );
        let log = self.finish();
        assert!(log.contains("weir: resuming from checkpoint"), "{log}");
    }

    /// The top-products example (two operators, event-time windows and
    /// timers, a side output) over `ORDERS` generated orders over 58 days,
    /// some out of order and some late.
    fn top_products(seed: u64) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut input = std::io::BufWriter::new(
            std::fs::File::create(dir.path().join("input.jsonl")).expect("input file"),
        );
        let mut rng = Rng::new(seed);
        let start = 1_790_000_000_000u64;
        for i in 0..ORDERS as u64 {
            // Up to 6 minutes early: some past the 5-minute watermark delay.
            let ts = start + i * 2_500 - rng.below(360_000);
            writeln!(
                input,
                r#"{{"order_id":"o{i}","product":"p{}","qty":{},"ts":{ts}}}"#,
                rng.below(300),
                1 + rng.below(5)
            )
            .expect("input written");
        }
        input.flush().expect("input written");
        let example = repo().join("examples/top-products");
        let text = std::fs::read_to_string(example.join("pipeline.toml"))
            .expect("the example's pipeline")
            .replace("crate = \"", &format!("crate = \"{}/", s(&example)));
        std::fs::write(
            dir.path().join("pipeline.toml"),
            format!("checkpoint_interval = \"100ms\"\ncheckpoint_dir = \"ck\"\n{text}"),
        )
        .expect("pipeline written");
        Self { dir }
    }

    /// `batch_size` records per batch; `admin` adds an admin API on a free port.
    fn new(seed: u64, batch_size: usize, admin: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut input = std::io::BufWriter::new(
            std::fs::File::create(dir.path().join("input.jsonl")).expect("input file"),
        );
        let mut rng = Rng::new(seed);
        for _ in 0..ORDERS {
            writeln!(
                input,
                r#"{{"product":"p{}","qty":{},"price_cents":{}}}"#,
                rng.below(5000),
                1 + rng.below(8),
                100 + rng.below(800)
            )
            .expect("input written");
        }
        input.flush().expect("input written");
        let operator = repo().join("examples/sales-by-product/operator");
        let admin = if admin {
            "admin = \"127.0.0.1:0\"\n"
        } else {
            ""
        };
        std::fs::write(
            dir.path().join("pipeline.toml"),
            format!(
                "{admin}batch_size = {batch_size}\n\
                 checkpoint_interval = \"100ms\"\ncheckpoint_dir = \"ck\"\n\
                 [[source]]\ntype = \"jsonl\"\npath = \"input.jsonl\"\n\
                 [[operator]]\nid = \"sales\"\ncrate = \"{}\"\nkey_by = \"product\"\n\
                 [[sink]]\ntype = \"jsonl\"\npath = \"out/sales.jsonl\"\n\
                 [dead_letter]\npath = \"out/dead-letter.jsonl\"\n",
                s(&operator)
            ),
        )
        .expect("pipeline written");
        Self { dir }
    }

    /// Keeps keyed state on disk from now on (`state_backend = "disk"`).
    fn use_disk_state(&self) {
        let text = std::fs::read_to_string(self.pipeline()).expect("pipeline");
        std::fs::write(self.pipeline(), format!("state_backend = \"disk\"\n{text}"))
            .expect("pipeline changed");
    }

    /// Checks that no state store is left behind.
    fn assert_no_state_store(&self) {
        let stores: Vec<_> = std::fs::read_dir(self.path(".weir/state"))
            .map(|d| {
                d.flatten()
                    .flat_map(|e| std::fs::read_dir(e.path()))
                    .flatten()
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            stores.is_empty(),
            "a finished run leaves no state store: {stores:?}"
        );
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn pipeline(&self) -> PathBuf {
        self.path("pipeline.toml")
    }

    /// The output of an uninterrupted run (which also builds the operator).
    fn reference(&self) -> Vec<u8> {
        let reference = self.path("reference.jsonl");
        run_ok(&[
            "run",
            s(&self.pipeline()),
            "--fresh",
            "--output",
            s(&reference),
        ]);
        std::fs::read(reference).expect("reference output")
    }

    /// Checks that the output file is byte for byte `reference`.
    fn assert_output(&self, reference: &[u8], why: &str) {
        let output = std::fs::read(self.path("out/sales.jsonl")).expect("output");
        assert!(output == reference, "{why}");
    }

    /// Every output file of the pipeline (dead letters aside), by name.
    fn outputs(&self) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(self.path("out"))
            .expect("output folder")
            .flatten()
            .map(|e| e.path())
            .filter(|p| !p.ends_with("dead-letter.jsonl"))
            .map(|p| {
                let name = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("")
                    .to_owned();
                (name, std::fs::read(&p).expect("output"))
            })
            .collect();
        files.sort();
        files
    }

    fn checkpoints(&self) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(self.path("ck"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                        name.starts_with("chk-") && !name.ends_with(".tmp")
                    })
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        found
    }

    fn start(&self) -> Child {
        weir()
            .args(["run", s(&self.pipeline())])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir starts")
    }

    /// Starts a run and kills it once `ready` holds, plus up to `jitter_ms`;
    /// returns its log, or `None` when it finished before the kill.
    fn crash(
        &self,
        rng: &mut Rng,
        jitter_ms: u64,
        ready: impl Fn(&Self) -> bool,
    ) -> Option<String> {
        crate::support::pace_sources(&self.pipeline(), 4);
        let mut child = self.start();
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
        let deadline = Instant::now() + Duration::from_secs(120);
        while !ready(self) && Instant::now() < deadline {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.below(jitter_ms + 1)));
        let finished = child.try_wait().expect("wait").is_some();
        let _ = child.kill();
        let status = child.wait().expect("weir ends");
        let _ = reader.join();
        let log = log.lock().expect("log").join("\n");
        if finished {
            assert!(status.success(), "weir failed: {log}");
            return None;
        }
        Some(log)
    }

    /// Runs to the end; returns its log.
    fn finish(&self) -> String {
        let out = run_ok(&["run", s(&self.pipeline())]);
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn has_checkpoint(sales: &Sales) -> bool {
    !sales.checkpoints().is_empty()
}

#[test]
fn a_run_killed_at_random_moments_resumes_to_the_output_of_an_uninterrupted_run() {
    let sales = Sales::new(13, 1024, false);
    let reference = sales.reference();
    assert_eq!(
        reference.iter().filter(|&&b| b == b'\n').count(),
        ORDERS,
        "one running total per order"
    );
    sales.crash_and_finish(5, 4, 600);
    sales.assert_output(
        &reference,
        "the output differs from the uninterrupted run's",
    );
    assert!(
        !sales.path("ck").exists(),
        "a run that read all its input leaves no checkpoints"
    );
}

#[test]
fn the_disk_state_backend_gives_the_same_output_and_survives_kills_alike() {
    let sales = Sales::new(37, 1024, false);
    let reference = sales.reference();
    sales.use_disk_state();
    sales.crash_and_finish(11, 3, 1500);
    sales.assert_output(&reference, "the output differs from the in-memory run's");
    sales.assert_no_state_store();
}

#[test]
fn a_checkpoint_started_from_as_a_savepoint_runs_the_pipelines_module_on_its_state() {
    // As after a version that keeps failing: start from its last checkpoint
    // with the pipeline's own module instead of the checkpointed version.
    let sales = Sales::new(19, 1024, false);
    let reference = sales.reference();
    assert!(
        sales.crash(&mut Rng::new(4), 300, has_checkpoint).is_some(),
        "the run ended before it was killed"
    );
    let newest = sales.checkpoints().pop().expect("a checkpoint");
    let out = run_ok(&["run", s(&sales.pipeline()), "--from-savepoint", s(&newest)]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("weir: starting from savepoint"), "{log}");
    sales.assert_output(
        &reference,
        "the output differs from the uninterrupted run's",
    );
}

#[test]
fn a_damaged_newest_checkpoint_is_skipped_for_the_one_before() {
    let sales = Sales::new(17, 1024, false);
    let reference = sales.reference();
    let log = sales.crash(&mut Rng::new(1), 0, |s| s.checkpoints().len() >= 2);
    assert!(log.is_some(), "the run ended before it was killed");
    let checkpoints = sales.checkpoints();
    let newest = checkpoints.last().expect("a checkpoint");
    let previous = &checkpoints[checkpoints.len() - 2];
    let state = newest.join("sales-0.state");
    let mut bytes = std::fs::read(&state).expect("state file");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&state, bytes).expect("state damaged");

    let log = sales.finish();
    assert!(
        log.contains(&format!(
            "weir: warning: checkpoint `{}` is damaged or incomplete and is skipped: ",
            s(newest)
        )),
        "{log}"
    );
    let previous_id: u64 = previous
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("chk-"))
        .and_then(|n| n.parse().ok())
        .expect("a checkpoint number");
    assert!(
        log.contains(&format!("weir: resuming from checkpoint {previous_id} ")),
        "{log}"
    );
    assert!(
        !log.contains("failed"),
        "the new checkpoints are numbered past the damaged one: {log}"
    );
    sales.assert_output(
        &reference,
        "the output differs from the uninterrupted run's",
    );
}

#[test]
fn a_hot_swap_between_two_crashes_survives_them_with_its_state() {
    let v2 = weir::builder::build_crate(&repo().join("tests/fixtures/sales-v2"))
        .expect("version 2 builds");
    // Small batches make the run last long enough to deploy into it.
    let sales = Sales::new(23, 64, true);
    let reference = sales.reference();
    assert!(
        sales.crash(&mut Rng::new(2), 200, has_checkpoint).is_some(),
        "the first run ended before it was killed"
    );

    // Second run: resume, deploy version 2 (new state layout, same output),
    // wait for a checkpoint taken after the swap, crash.
    let mut child = sales.start();
    let log = Arc::new(Mutex::new(Vec::new()));
    let address = admin_address(&mut child, Arc::clone(&log)).expect("the admin API starts");
    let admin = AdminClient::new(address);
    let bytes = std::fs::read(&v2).expect("version 2");
    let report = admin.deploy("sales", &bytes).expect("version 2 deploys");
    assert_eq!((report.version, report.state_version), (2, 2));
    let swapped_at = admin
        .last_checkpoint()
        .expect("checkpoint status")
        .map_or(0, |c| c.id);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = admin.last_checkpoint().ok().flatten().map_or(0, |c| c.id);
        if last > swapped_at + 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no checkpoint after the swap");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the second run ended before it was killed"
    );
    child.kill().expect("killed");
    child.wait().expect("weir ends");
    let second = log.lock().expect("log").join("\n");
    assert!(
        second.contains("weir: resuming from checkpoint"),
        "{second}"
    );

    // Third run: crash once more, then finish; version 2 and its state come
    // back from the checkpoint.
    sales.crash(&mut Rng::new(3), 300, |_| true);
    let last = sales.finish();
    assert!(
        last.contains("weir: operator `sales` resumes at version 2, as checkpointed"),
        "{last}"
    );
    sales.assert_output(
        &reference,
        "the output differs from the uninterrupted run's",
    );
}

#[test]
fn top_products_killed_at_random_moments_resumes_to_the_output_of_an_uninterrupted_run() {
    top_products_killed_at_random_moments(31, false);
}

#[test]
fn top_products_with_windows_and_timers_on_disk_survives_kills_alike() {
    top_products_killed_at_random_moments(53, true);
}

/// Top-products, killed and resumed, against an uninterrupted run in
/// memory; `disk`: the killed runs keep their state on disk.
fn top_products_killed_at_random_moments(seed: u64, disk: bool) {
    let job = Sales::top_products(seed);
    let sorted_late = |files: Vec<(String, Vec<u8>)>| {
        // The late records of two workers interleave as they arrive, in no
        // fixed order: compare them as sets. Everything else byte for byte.
        files
            .into_iter()
            .map(|(name, bytes)| {
                if name == "late.jsonl" {
                    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
                    lines.sort_unstable();
                    (name, lines.concat())
                } else {
                    (name, bytes)
                }
            })
            .collect::<Vec<_>>()
    };
    run_ok(&["run", s(&job.pipeline()), "--fresh"]);
    let reference = sorted_late(job.outputs());
    let days = reference
        .iter()
        .find(|(name, _)| name == "top-products.jsonl")
        .map_or(0, |(_, bytes)| {
            bytes.iter().filter(|&&b| b == b'\n').count()
        });
    assert!(days > 500, "57 days of top-10 lists, {days} lines");
    assert!(
        reference
            .iter()
            .any(|(name, bytes)| name == "late.jsonl" && !bytes.is_empty()),
        "some orders are late"
    );
    if disk {
        job.use_disk_state();
    }
    job.crash_and_finish(seed + 1, 4, 600);
    assert!(
        sorted_late(job.outputs()) == reference,
        "the output differs from the uninterrupted run's"
    );
    job.assert_no_state_store();
}

#[test]
fn map_states_on_disk_survive_kills_and_give_the_in_memory_output() {
    // The `visits` fixture keeps a map per user (page -> visits), reads an
    // entry, writes it, lists the map and removes an entry on every visit.
    let mut rng = Rng::new(59);
    let mut visits = String::new();
    for i in 0..VISITS {
        visits.push_str(&format!(
            "{{\"user\":\"u{}\",\"page\":\"p{}\",\"i\":{i}}}\n",
            rng.below(2000),
            rng.below(40)
        ));
    }
    let operator = repo().join("tests/fixtures/vocab/visits/rust");
    let job = Sales::custom(
        &format!(
            "[[source]]\ntype = \"jsonl\"\npath = \"visits.jsonl\"\n\
             [[operator]]\nid = \"visits\"\ncrate = \"{}\"\nkey_by = \"user\"\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"out/visits.jsonl\"\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"out/frequent.jsonl\"\nfrom = \"visits.frequent\"\n",
            s(&operator)
        ),
        &[("visits.jsonl", visits)],
    );
    run_ok(&["run", s(&job.pipeline()), "--fresh"]);
    let reference = job.outputs();
    let lines = |name: &str| {
        reference
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, b)| b.iter().filter(|&&c| c == b'\n').count())
    };
    assert_eq!(lines("visits.jsonl"), VISITS, "one count per visit");
    assert!(lines("frequent.jsonl") > 10_000, "many third visits");
    job.use_disk_state();
    job.crash_and_finish(61, 4, 600);
    assert!(
        job.outputs() == reference,
        "the output differs from the in-memory run's"
    );
    job.assert_no_state_store();
}

/// Visits in the map-state test.
const VISITS: usize = 600_000;

/// Orders as CSV (header first) or JSON Lines, `count` of them.
fn orders(seed: u64, count: usize, csv: bool) -> String {
    let mut rng = Rng::new(seed);
    let mut text = String::from(if csv { "product,qty,price_cents\n" } else { "" });
    for _ in 0..count {
        let (product, qty, price) = (rng.below(5000), 1 + rng.below(8), 100 + rng.below(800));
        text.push_str(&if csv {
            format!("p{product},{qty},{price}\n")
        } else {
            format!(r#"{{"product":"p{product}","qty":{qty},"price_cents":{price}}}"#) + "\n"
        });
    }
    text
}

fn sales_operator() -> String {
    s(&repo().join("examples/sales-by-product/operator")).to_owned()
}

#[test]
fn a_csv_source_resumes_after_its_header_and_a_generator_at_its_event() {
    // CSV: the header is read once; a restart seeks past it.
    let csv = Sales::custom(
        &format!(
            "[[source]]\ntype = \"csv\"\npath = \"orders.csv\"\n\
             [[operator]]\nid = \"sales\"\ncrate = \"{}\"\nkey_by = \"product\"\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"out/sales.jsonl\"\n",
            sales_operator()
        ),
        &[("orders.csv", orders(41, ORDERS, true))],
    );
    run_ok(&["run", s(&csv.pipeline()), "--fresh"]);
    let reference = csv.outputs();
    csv.crash_and_finish(1, 3, 400);
    assert!(csv.outputs() == reference, "CSV: the output differs");

    // Nexmark q1: the generator starts again at the event it had reached.
    let q1 = repo().join("examples/nexmark/operators/q1");
    let nexmark = Sales::custom(
        &format!(
            "[[source]]\ntype = \"nexmark\"\nevents = 3000000\nseed = 7\n\
             [[operator]]\nid = \"q1\"\ncrate = \"{}\"\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"out/q1.jsonl\"\n",
            s(&q1)
        ),
        &[],
    );
    run_ok(&["run", s(&nexmark.pipeline()), "--fresh"]);
    let reference = nexmark.outputs();
    nexmark.crash_and_finish(2, 3, 400);
    assert!(
        nexmark.outputs() == reference,
        "Nexmark: the output differs"
    );
}

/// Builds the operator folder `folder` (relative to the repository) and
/// returns its component file.
fn built_component(folder: &str) -> PathBuf {
    let out = run_ok(&["build", s(&repo().join(folder))]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let path = text
        .lines()
        .find_map(|line| Some(line.split_once(": ")?.1.split_once(" (")?.0))
        .unwrap_or_else(|| panic!("no component path in: {text}"));
    PathBuf::from(path)
}

#[test]
fn a_module_changed_under_the_same_version_resumes_as_checkpointed() {
    // The pipeline names a component file, replaced between the crash and
    // the restart by another build (as after editing the operator without
    // deploying it): the restart runs the component the checkpoint kept.
    let original = built_component("examples/sales-by-product/operator");
    let edited = built_component("tests/fixtures/sales-v2");
    let job = Sales::custom(
        "[[source]]\ntype = \"jsonl\"\npath = \"input.jsonl\"\n\
         [[operator]]\nid = \"sales\"\nmodule = \"op.wasm\"\nkey_by = \"product\"\n\
         [[sink]]\ntype = \"jsonl\"\npath = \"out/sales.jsonl\"\n",
        &[("input.jsonl", orders(67, ORDERS, false))],
    );
    std::fs::copy(&original, job.path("op.wasm")).expect("component copied");
    run_ok(&["run", s(&job.pipeline()), "--fresh"]);
    let reference = job.outputs();
    let killed = job.crash(&mut Rng::new(71), 300, has_checkpoint);
    assert!(killed.is_some(), "the run ended before it was killed");
    std::fs::copy(&edited, job.path("op.wasm")).expect("component replaced");
    let log = job.finish();
    assert!(
        log.contains("weir: operator `sales` resumes at version 1, as checkpointed"),
        "{log}"
    );
    assert!(job.outputs() == reference, "the output differs");
}

#[test]
fn two_sources_into_two_workers_align_their_barriers_and_count_every_order_once() {
    // Which source's order comes first is up to the scheduler, so running
    // totals differ from run to run; each order must still count once.
    let job = Sales::custom(
        &format!(
            "[[source]]\nname = \"a\"\ntype = \"jsonl\"\npath = \"a.jsonl\"\n\
             [[source]]\nname = \"b\"\ntype = \"jsonl\"\npath = \"b.jsonl\"\n\
             [[operator]]\nid = \"sales\"\ncrate = \"{}\"\nkey_by = \"product\"\nparallelism = 2\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"out/sales.jsonl\"\n",
            sales_operator()
        ),
        &[
            ("a.jsonl", orders(43, ORDERS / 2, false)),
            ("b.jsonl", orders(47, ORDERS / 2, false)),
        ],
    );
    run_ok(&["build", s(&job.pipeline())]);
    job.crash_and_finish(3, 3, 400);
    let output = crate::support::read_jsonl(&job.path("out/sales.jsonl"));
    assert_eq!(output.len(), ORDERS, "one running total per order");
    let mut last = std::collections::BTreeMap::new();
    for record in output {
        let product = record["product"].as_str().expect("product").to_owned();
        let units = record["units"].as_i64().expect("units");
        let revenue = record["revenue_cents"].as_i64().expect("revenue");
        // Totals only grow: a product's largest is its final one.
        let entry: &mut (i64, i64) = last.entry(product).or_default();
        *entry = (*entry).max((units, revenue));
    }
    let mut want = totals(&job.path("a.jsonl"));
    for (product, (units, revenue)) in totals(&job.path("b.jsonl")) {
        let entry = want.entry(product).or_default();
        entry.0 += units;
        entry.1 += revenue;
    }
    assert!(last == want, "final totals differ");
}

/// The final total of every product, counted from the input.
fn totals(input: &std::path::Path) -> std::collections::BTreeMap<String, (i64, i64)> {
    let mut totals = std::collections::BTreeMap::new();
    for order in crate::support::read_jsonl(input) {
        let product = order["product"].as_str().expect("product").to_owned();
        let (qty, price) = (order["qty"].as_i64(), order["price_cents"].as_i64());
        let entry: &mut (i64, i64) = totals.entry(product).or_default();
        entry.0 += qty.expect("qty");
        entry.1 += qty.expect("qty") * price.expect("price");
    }
    totals
}

#[test]
fn a_savepoint_starts_a_changed_pipeline_and_refuses_to_drop_state() {
    let sales = Sales::new(29, 64, true);
    // Build the operator once, outside the timed part.
    run_ok(&["build", s(&sales.pipeline())]);
    let mut child = sales.start();
    let log = Arc::new(Mutex::new(Vec::new()));
    let address = admin_address(&mut child, Arc::clone(&log)).expect("the admin API starts");
    let savepoint = sales.path("savepoint");
    let out = run_ok(&["savepoint", s(&savepoint), "--admin", &address.to_string()]);
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        printed.trim(),
        format!("savepoint written to {}", s(&savepoint))
    );
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the run ended before the savepoint was taken"
    );
    child.kill().expect("killed");
    child.wait().expect("weir ends");

    // The operator renamed: its state would be dropped, so it is refused.
    let text = std::fs::read_to_string(sales.pipeline()).expect("pipeline");
    std::fs::write(
        sales.pipeline(),
        text.replace("id = \"sales\"", "id = \"totals\""),
    )
    .expect("pipeline changed");
    let refused = crate::support::run_err(&[
        "run",
        s(&sales.pipeline()),
        "--from-savepoint",
        s(&savepoint),
    ]);
    assert!(
        refused.contains(&format!(
            "`{}` holds state of operator(s) `sales` that the pipeline no longer has; \
             `--allow-non-restored-state` drops it",
            s(&savepoint)
        )),
        "{refused}"
    );

    let dropped = run_ok(&[
        "run",
        s(&sales.pipeline()),
        "--from-savepoint",
        s(&savepoint),
        "--allow-non-restored-state",
    ]);
    let log = String::from_utf8_lossy(&dropped.stderr);
    assert!(
        log.contains(
            "weir: warning: the state of operator(s) sales is dropped: the pipeline no longer has them"
        ),
        "{log}"
    );

    // Twice the workers: the keys are split anew, every order still counts once.
    std::fs::write(
        sales.pipeline(),
        text.replace(
            "key_by = \"product\"",
            "key_by = \"product\"\nparallelism = 2",
        ),
    )
    .expect("pipeline changed");
    let from_savepoint = |what: &str| {
        let out = run_ok(&[
            "run",
            s(&sales.pipeline()),
            "--from-savepoint",
            s(&savepoint),
        ]);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            log.contains("weir: starting from savepoint"),
            "{what}: {log}"
        );
        let output = crate::support::read_jsonl(&sales.path("out/sales.jsonl"));
        assert_eq!(output.len(), ORDERS, "{what}: one running total per order");
        let mut last = std::collections::BTreeMap::new();
        for record in output {
            let product = record["product"].as_str().expect("product").to_owned();
            let units = record["units"].as_i64().expect("units");
            let revenue = record["revenue_cents"].as_i64().expect("revenue");
            last.insert(product, (units, revenue));
        }
        assert!(
            last == totals(&sales.path("input.jsonl")),
            "{what}: final totals differ"
        );
    };
    from_savepoint("two workers");
    // The same on disk: each worker loads its own keys of the saved file.
    sales.use_disk_state();
    from_savepoint("two workers on disk");
}
