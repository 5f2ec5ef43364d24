//! The NATS JetStream source and sink against the real server
//! (`WEIR_TEST_NATS`, default `nats://127.0.0.1:4222`): exact records in and
//! out, a source that resumes at its checkpointed sequence, NATS → NATS
//! killed at random moments with the output of an uninterrupted run, a
//! connection cut mid-run, and a server that is down at the start.
//!
//! Every test uses streams, subjects and consumers of its own and deletes
//! its streams at the end.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};

use crate::support::{Rng, repo, run_err, run_ok, s, weir};

/// The NATS server under test.
fn nats_url() -> String {
    std::env::var("WEIR_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A test's connection, and the streams it made (deleted on drop).
struct Nats {
    runtime: tokio::runtime::Runtime,
    context: jetstream::Context,
    /// Unique per test run: prefixes stream, subject and consumer names.
    prefix: String,
    streams: Mutex<Vec<String>>,
}

impl Nats {
    fn new(test: &str) -> Self {
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        let url = nats_url();
        let context = runtime.block_on(async {
            let client = async_nats::connect(&url)
                .await
                .unwrap_or_else(|e| panic!("NATS server at {url} (WEIR_TEST_NATS): {e}"));
            jetstream::new(client)
        });
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        Self {
            runtime,
            context,
            prefix: format!("weir_{test}_{}_{nanos:x}", std::process::id()),
            streams: Mutex::default(),
        }
    }

    /// A name unique to this test run.
    fn name(&self, what: &str) -> String {
        format!("{}_{what}", self.prefix)
    }

    /// Creates stream `<prefix>_<what>` on subject `<prefix>.<what>`;
    /// returns (stream, subject).
    fn stream(&self, what: &str) -> (String, String) {
        let (name, subject) = (self.name(what), format!("{}.{what}", self.prefix));
        self.runtime
            .block_on(self.context.create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![subject.clone()],
                duplicate_window: Duration::from_secs(600),
                ..Default::default()
            }))
            .expect("stream created");
        self.streams.lock().expect("streams").push(name.clone());
        (name, subject)
    }

    /// Publishes each payload as one message, waiting for every ack.
    fn publish(&self, subject: &str, payloads: &[Vec<u8>]) {
        self.runtime.block_on(async {
            let mut acks = Vec::new();
            for payload in payloads {
                acks.push(
                    self.context
                        .publish(subject.to_owned(), payload.clone().into())
                        .await
                        .expect("published"),
                );
                if acks.len() >= 1000 {
                    for ack in acks.drain(..) {
                        ack.await.expect("acked");
                    }
                }
            }
            for ack in acks {
                ack.await.expect("acked");
            }
        });
    }

    /// Every message of `stream`: (payload, message id).
    fn messages(&self, stream: &str) -> Vec<(String, String)> {
        self.runtime.block_on(async {
            let mut stream = self.context.get_stream(stream).await.expect("stream");
            let last = stream.info().await.expect("info").state.last_sequence;
            let mut out = Vec::new();
            for sequence in 1..=last {
                let message = stream.get_raw_message(sequence).await.expect("message");
                let id = message
                    .headers
                    .get("Nats-Msg-Id")
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                out.push((
                    String::from_utf8(message.payload.to_vec()).expect("UTF-8"),
                    id,
                ));
            }
            out
        })
    }

    /// How many messages `stream` holds.
    fn count(&self, stream: &str) -> u64 {
        self.runtime.block_on(async {
            let mut stream = self.context.get_stream(stream).await.expect("stream");
            stream.info().await.expect("info").state.messages
        })
    }

    /// The stream sequence consumer `consumer` of `stream` has acked up to.
    fn acked(&self, stream: &str, consumer: &str) -> u64 {
        self.runtime.block_on(async {
            let stream = self.context.get_stream(stream).await.expect("stream");
            let info = stream.consumer_info(consumer).await.expect("consumer");
            info.ack_floor.stream_sequence
        })
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        for name in self.streams.lock().map(|s| s.clone()).unwrap_or_default() {
            let _ = self.runtime.block_on(self.context.delete_stream(&name));
        }
    }
}

/// `count` orders as JSON, one per message.
fn orders(seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| {
            format!(
                r#"{{"id":{i},"product":"p{}","qty":{},"price_cents":{}}}"#,
                rng.below(300),
                1 + rng.below(8),
                100 + rng.below(800)
            )
            .into_bytes()
        })
        .collect()
}

fn source(url: &str, stream: &str, consumer: &str) -> String {
    format!(
        "[[source]]\ntype = \"nats\"\nname = \"orders\"\nurl = \"{url}\"\nstream = \"{stream}\"\n\
         consumer = \"{consumer}\"\nstop_at_end = true\n"
    )
}

fn sink(url: &str, stream: &str, subject: &str) -> String {
    format!(
        "[[sink]]\ntype = \"nats\"\nurl = \"{url}\"\nstream = \"{stream}\"\nsubject = \"{subject}\"\n"
    )
}

fn sales_operator() -> String {
    format!(
        "[[operator]]\nid = \"sales\"\ncrate = \"{}\"\nkey_by = \"product\"\n",
        s(&repo().join("examples/sales-by-product/operator"))
    )
}

/// A pipeline folder: `pipeline.toml` with checkpoints every 100 ms into `ck`.
fn folder(pipeline: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("pipeline.toml");
    std::fs::write(
        &file,
        format!(
            "checkpoint_interval = \"100ms\"\ncheckpoint_dir = \"ck\"\n{pipeline}\
             [dead_letter]\npath = \"dead-letter.jsonl\"\n"
        ),
    )
    .expect("pipeline written");
    (dir, file)
}

fn has_checkpoint(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("ck")).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("chk-") && !name.ends_with(".tmp")
        })
    })
}

/// Starts `weir run`, kills it once a checkpoint exists plus up to
/// `jitter_ms`; returns `false` when it had finished before the kill.
fn crash(pipeline: &Path, rng: &mut Rng, jitter_ms: u64) -> bool {
    let dir = pipeline.parent().expect("folder");
    let mut child: Child = weir()
        .args(["run", s(pipeline)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let mut stderr = child.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while !has_checkpoint(dir) && Instant::now() < deadline {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(rng.below(jitter_ms + 1)));
    let finished = child.try_wait().expect("wait").is_some();
    let _ = child.kill();
    let status = child.wait().expect("weir ends");
    let log = log.join().expect("log");
    if finished {
        assert!(status.success(), "weir failed: {log}");
    }
    !finished
}

/// Kills runs at random moments (at least two before they end), then runs
/// to the end; returns the last run's log.
fn crash_and_finish(pipeline: &Path, seed: u64, attempts: usize, jitter_ms: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut kills = 0;
    for _ in 0..attempts {
        if !crash(pipeline, &mut rng, jitter_ms) {
            break;
        }
        kills += 1;
    }
    assert!(
        kills >= 2,
        "only {kills} runs were killed before they ended"
    );
    let out = run_ok(&["run", s(pipeline)]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(log.contains("weir: resuming from checkpoint"), "{log}");
    log
}

fn sorted_payloads(messages: &[(String, String)]) -> Vec<String> {
    let mut payloads: Vec<String> = messages.iter().map(|(p, _)| p.clone()).collect();
    payloads.sort();
    payloads
}

#[test]
fn nats_records_go_in_and_out_exactly_and_bad_ones_to_the_dead_letters() {
    let nats = Nats::new("exact");
    let url = nats_url();
    let (input, in_subject) = nats.stream("in");
    let (output, out_subject) = nats.stream("out");
    let mut payloads = orders(1, 300);
    // Two records in one message, a bad line and a payload that is not UTF-8.
    payloads.push(b"{\"id\":300,\"product\":\"a\"}\n{\"id\":301,\"product\":\"b\"}\n".to_vec());
    payloads.push(b"{\"id\":302, oops".to_vec());
    payloads.push(vec![0xff, 0xfe, b'{']);
    payloads.push(b"{\"id\":303,\"product\":\"c\"}".to_vec());
    nats.publish(&in_subject, &payloads);
    let consumer = nats.name("reader");
    let (dir, pipeline) = folder(&format!(
        "{}{}",
        source(&url, &input, &consumer),
        sink(&url, &output, &out_subject)
    ));
    run_ok(&["run", s(&pipeline)]);

    let mut expected: Vec<String> = payloads[..300]
        .iter()
        .map(|p| String::from_utf8(p.clone()).expect("UTF-8"))
        .collect();
    expected.push(r#"{"id":300,"product":"a"}"#.to_owned());
    expected.push(r#"{"id":301,"product":"b"}"#.to_owned());
    expected.push(r#"{"id":303,"product":"c"}"#.to_owned());
    let messages = nats.messages(&output);
    let got: Vec<String> = messages.iter().map(|(p, _)| p.clone()).collect();
    // (The source batches records into one schema: a missing field is null.)
    let normalise = |line: &str| {
        let value: serde_json::Value = serde_json::from_str(line).expect("JSON");
        let object = value.as_object().expect("object");
        let mut fields: Vec<(String, serde_json::Value)> = object
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        fields
    };
    assert_eq!(
        got.iter().map(|l| normalise(l)).collect::<Vec<_>>(),
        expected.iter().map(|l| normalise(l)).collect::<Vec<_>>(),
        "the output stream holds every good record, in order"
    );
    let ids: std::collections::HashSet<&str> = messages.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids.len(), messages.len(), "every message has its own id");
    assert!(!ids.contains(""), "every message has an id");

    let mut dead = crate::support::read_jsonl(&dir.path().join("dead-letter.jsonl"));
    dead.sort_by_key(|d| d["line"].as_u64());
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(
        dead[0]["line"], 302,
        "the bad line is named by its sequence"
    );
    assert_eq!(dead[0]["source"], "orders");
    assert_eq!(dead[1]["line"], 303);
    assert!(
        dead[1]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("not valid UTF-8"),
        "{dead:?}"
    );
    assert_eq!(
        nats.acked(&input, &consumer),
        payloads.len() as u64,
        "a run read to its end acks every message"
    );
}

#[test]
fn a_nats_source_resumes_at_its_checkpointed_sequence() {
    let nats = Nats::new("resume");
    let url = nats_url();
    let (input, in_subject) = nats.stream("in");
    let payloads = orders(2, 40_000);
    nats.publish(&in_subject, &payloads);
    let consumer = nats.name("reader");
    // Paced to 3 s a run, so the run can be killed mid-way on any machine.
    let (dir, pipeline) = folder(&format!(
        "batch_size = 100\n{}records_per_second = 13000\n\
         [[sink]]\ntype = \"jsonl\"\npath = \"out/orders.jsonl\"\n",
        source(&url, &input, &consumer)
    ));
    let mut rng = Rng::new(3);
    assert!(
        crash(&pipeline, &mut rng, 100),
        "the run was killed before it ended"
    );
    let out = run_ok(&["run", s(&pipeline)]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("weir: resuming from checkpoint"), "{log}");
    let output = std::fs::read_to_string(dir.path().join("out/orders.jsonl")).expect("output");
    let expected: String = payloads
        .iter()
        .map(|p| String::from_utf8(p.clone()).expect("UTF-8") + "\n")
        .collect();
    assert!(
        output == expected,
        "the output file holds every message once, in order ({} lines for {})",
        output.lines().count(),
        payloads.len()
    );
    assert_eq!(nats.acked(&input, &consumer), payloads.len() as u64);
}

#[test]
fn nats_to_nats_killed_at_random_moments_holds_the_uninterrupted_runs_records() {
    let nats = Nats::new("kills");
    let url = nats_url();
    let (input, in_subject) = nats.stream("in");
    let (reference, reference_subject) = nats.stream("reference");
    let (output, out_subject) = nats.stream("out");
    nats.publish(&in_subject, &orders(4, 30_000));
    let (_reference_dir, reference_pipeline) = folder(&format!(
        "batch_size = 64\n{}{}{}",
        source(&url, &input, &nats.name("reference")),
        sales_operator(),
        sink(&url, &reference, &reference_subject)
    ));
    run_ok(&["run", s(&reference_pipeline)]);
    let expected = nats.messages(&reference);
    assert_eq!(expected.len(), 30_000, "one running total per order");

    // Paced to 3 s a run, so a run can be killed mid-way on any machine.
    let (_dir, pipeline) = folder(&format!(
        "batch_size = 64\n{}records_per_second = 10000\n{}{}",
        source(&url, &input, &nats.name("crashing")),
        sales_operator(),
        sink(&url, &output, &out_subject)
    ));
    crash_and_finish(&pipeline, 5, 4, 300);
    let got = nats.messages(&output);
    assert_eq!(
        got.len(),
        expected.len(),
        "no record lost or published twice"
    );
    assert!(
        sorted_payloads(&got) == sorted_payloads(&expected),
        "the output stream holds the uninterrupted run's records"
    );
}

/// A TCP proxy to the NATS server whose connections can be cut.
struct Proxy {
    port: u16,
    connections: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy listens");
        let port = listener.local_addr().expect("address").port();
        let upstream = nats_url()
            .trim_start_matches("nats://")
            .trim_end_matches('/')
            .to_owned();
        let connections: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let kept = Arc::clone(&connections);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let pipes = [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ];
                if let Ok(mut list) = kept.lock() {
                    list.extend(client.try_clone());
                    list.extend(server.try_clone());
                }
                for (from, to) in pipes {
                    if let (Ok(mut from), Ok(mut to)) = (from, to) {
                        std::thread::spawn(move || {
                            let mut buffer = [0u8; 1 << 16];
                            while let Ok(n) = from.read(&mut buffer) {
                                if n == 0 || to.write_all(&buffer[..n]).is_err() {
                                    break;
                                }
                            }
                            let _ = to.shutdown(std::net::Shutdown::Both);
                        });
                    }
                }
            }
        });
        Self { port, connections }
    }

    /// Drops every connection through the proxy.
    fn cut(&self) {
        for connection in self.connections.lock().expect("connections").drain(..) {
            let _ = connection.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Waits for `child` to end; kills it after `limit` and fails with its log.
fn wait_or_kill(mut child: Child, limit: Duration) -> std::process::Output {
    let mut stderr = child.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "weir did not end in {limit:?}: {}",
                log.join().expect("log")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().expect("weir ends");
    std::process::Output {
        status,
        stdout: Vec::new(),
        stderr: log.join().expect("log").into_bytes(),
    }
}

#[test]
fn nats_connections_cut_mid_run_lose_and_duplicate_nothing() {
    let nats = Nats::new("cut");
    let proxy = Proxy::start();
    let proxied = format!("nats://127.0.0.1:{}", proxy.port);
    let (input, in_subject) = nats.stream("in");
    let (output, out_subject) = nats.stream("out");
    let payloads = orders(6, 30_000);
    nats.publish(&in_subject, &payloads);
    let (_dir, pipeline) = folder(&format!(
        "batch_size = 64\n{}{}",
        source(&proxied, &input, &nats.name("reader")),
        sink(&proxied, &output, &out_subject)
    ));
    let child = weir()
        .args(["run", s(&pipeline)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    // Cut every connection twice while records flow.
    for at in [2_000, 12_000] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while nats.count(&output) < at && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        proxy.cut();
    }
    let out = wait_or_kill(child, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "weir failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = nats.messages(&output);
    let sent: Vec<String> = payloads
        .iter()
        .map(|p| String::from_utf8(p.clone()).expect("UTF-8"))
        .collect();
    assert_eq!(got.len(), sent.len(), "no record lost or published twice");
    let mut sent_sorted = sent;
    sent_sorted.sort();
    assert!(
        sorted_payloads(&got) == sent_sorted,
        "the output holds every record once"
    );
}

#[test]
fn a_nats_server_down_at_the_start_is_retried_then_named_in_the_error() {
    let nats = Nats::new("down");
    let url = nats_url();
    let (output, out_subject) = nats.stream("out");
    // Nothing listens on port 1.
    let down = "nats://127.0.0.1:1";
    let (_dir, pipeline) = folder(&format!(
        "{}connect_timeout = \"1s\"\n{}",
        source(down, "orders", "reader"),
        sink(&url, &output, &out_subject)
    ));
    let error = run_err(&["run", s(&pipeline)]);
    assert!(
        error.contains("source `orders` (nats `nats://127.0.0.1:1`)")
            && error.contains("cannot connect to NATS server `nats://127.0.0.1:1`"),
        "{error}"
    );

    let (_dir, pipeline) = folder(&format!(
        "[[source]]\ntype = \"jsonl\"\npath = \"in.jsonl\"\n{}connect_timeout = \"1s\"\n",
        sink(down, "out", "out")
    ));
    std::fs::write(pipeline.with_file_name("in.jsonl"), "{\"a\":1}\n").expect("input");
    let error = run_err(&["run", s(&pipeline)]);
    assert!(
        error.contains("sink 0 (nats `nats://127.0.0.1:1`)")
            && error.contains("cannot connect to NATS server"),
        "{error}"
    );
}
