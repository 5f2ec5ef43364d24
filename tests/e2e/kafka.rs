//! Kafka sources and sinks against a real broker: `WEIR_TEST_KAFKA`
//! (`host:port`), or else one tansu broker this test binary starts on a free
//! loopback port, behind a proxy that can cut chosen clients' connections
//! (built once from crates.io into `~/.cache/weir/brokers`), and stops when
//! it ends.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::support::{Rng, read_jsonl, repo, run, s, weir};

/// The tansu release the tests run.
const TANSU_VERSION: &str = "0.6.0";

/// A tansu broker process, stopped when dropped or when the test binary
/// exits (a shell waits on a pipe from this process and kills tansu when
/// it closes).
struct Tansu {
    /// The shell that runs tansu and stops it.
    child: Child,
    /// Its standard input: closing it stops tansu.
    lifeline: Option<ChildStdin>,
    address: String,
}

impl Drop for Tansu {
    /// Closes the lifeline and waits for the shell, which kills tansu and
    /// waits for it (killing the shell instead would leave tansu running).
    fn drop(&mut self) {
        drop(self.lifeline.take());
        let _ = self.child.wait();
    }
}

/// The folder of the cached broker build.
fn tansu_root() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache/weir/brokers")
        .join(format!("tansu-{TANSU_VERSION}"))
}

/// The tansu binary: built from crates.io the first time (into a temporary
/// folder renamed into place, under a lock so parallel test binaries do not
/// build it twice).
fn tansu_binary() -> PathBuf {
    let root = tansu_root();
    let binary = root.join("bin/tansu");
    if binary.exists() {
        return binary;
    }
    let parent = root.parent().expect("cache folder").to_path_buf();
    std::fs::create_dir_all(&parent).expect("cache folder created");
    let lock = std::fs::File::create(parent.join(format!("tansu-{TANSU_VERSION}.lock")))
        .expect("lock file");
    lock.lock().expect("build lock");
    if binary.exists() {
        return binary;
    }
    let partial = parent.join(format!("tansu-{TANSU_VERSION}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    // Straight to the standard error (not captured by the test harness, as
    // `eprintln!` is), followed by cargo's own lines as it compiles.
    let _ = writeln!(
        std::io::stderr(),
        "weir tests: building the Kafka test broker tansu {TANSU_VERSION} from crates.io (once, \
         9-17 min on 2 cores) into {}; cargo's progress follows",
        root.display()
    );
    let started = Instant::now();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["install", "tansu", "--version", TANSU_VERSION, "--locked"])
        .args(["--features", "dynostore", "--root"])
        .arg(&partial)
        .arg("--target-dir")
        .arg(partial.join("target"))
        .stdout(Stdio::null())
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building the test broker tansu {TANSU_VERSION} failed (cargo's lines above say why); \
         WEIR_TEST_KAFKA=host:port runs the Kafka tests against another broker"
    );
    let _ = std::fs::remove_dir_all(partial.join("target"));
    std::fs::rename(&partial, &root).expect("broker build moved into place");
    let _ = writeln!(
        std::io::stderr(),
        "weir tests: built tansu {TANSU_VERSION} in {:.0?}",
        started.elapsed()
    );
    binary
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts tansu with memory storage listening on `port`, telling clients to
/// connect to `advertised` (a proxy's port, or its own).
fn start_tansu(port: u16, advertised: u16) -> Tansu {
    let binary = tansu_binary();
    let cluster = format!("weir-test-{}-{port}", std::process::id());
    let mut child = Command::new("sh")
        .arg("-c")
        // tansu runs in the background; the shell reads its standard input
        // (a pipe from this process) and kills tansu once it closes.
        .arg(r#""$0" "$@" </dev/null >/dev/null 2>&1 & pid=$!; cat >/dev/null; kill $pid; wait $pid"#)
        .arg(&binary)
        .arg("broker")
        .args(["--listener-url", &format!("tcp://127.0.0.1:{port}")])
        .args([
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{advertised}"),
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .args(["--kafka-cluster-id", &cluster])
        .stdin(Stdio::piped())
        .spawn()
        .expect("tansu starts");
    let lifeline = child.stdin.take().expect("stdin piped");
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "tansu did not listen on port {port} within 60 s"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "tansu exited at start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Tansu {
        child,
        lifeline: Some(lifeline),
        address: format!("127.0.0.1:{advertised}"),
    }
}

/// The broker the tests share: `WEIR_TEST_KAFKA`, or one tansu for this
/// test binary, which tells clients to connect through a [`CuttingProxy`]
/// (so the connection-cut test can cut its own clients' connections).
struct Shared {
    address: String,
    proxy: Option<CuttingProxy>,
    _tansu: Option<Mutex<Tansu>>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| match std::env::var("WEIR_TEST_KAFKA") {
        Ok(address) if !address.is_empty() => Shared {
            address,
            proxy: None,
            _tansu: None,
        },
        _ => {
            let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
            let proxy_port = listener.local_addr().expect("proxy address").port();
            let port = free_port();
            let tansu = start_tansu(port, proxy_port);
            Shared {
                address: tansu.address.clone(),
                proxy: Some(CuttingProxy::start(listener, port)),
                _tansu: Some(Mutex::new(tansu)),
            }
        }
    })
}

/// The shared broker's address.
fn broker() -> &'static str {
    &shared().address
}

/// A topic name no other test uses.
fn unique_topic(what: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "weir-{what}-{}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    )
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// Creates `topic` with `partitions` partitions on `broker`.
fn create_topic(broker: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .create()
        .expect("admin client");
    let results = block_on(admin.create_topics(
        &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
    ))
    .expect("create topics");
    for result in results {
        result.unwrap_or_else(|(t, e)| panic!("topic {t} not created: {e}"));
    }
}

/// Writes `records` (partition, key, value) to `topic`, one record per
/// batch, waiting for every acknowledgement.
///
/// One per batch because tansu 0.6's memory storage keeps whole batches and
/// answers a Fetch from an offset inside a batch with the batches that start
/// at or after it: the rest of that batch is skipped (Kafka returns the
/// batch holding the offset). A source resuming from a checkpoint fetches
/// from such offsets, so on batches of several records the broker, not the
/// source, would lose records.
fn produce(broker: &str, topic: &str, records: &[(i32, Option<String>, Vec<u8>)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("enable.idempotence", "true")
        .set("batch.num.messages", "1")
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    for (partition, key, value) in records {
        let mut record = BaseRecord::<str, [u8]>::to(topic)
            .partition(*partition)
            .payload(value);
        if let Some(key) = key {
            record = record.key(key.as_str());
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(50));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("records acknowledged");
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Record {
    partition: i32,
    offset: i64,
    key: Option<String>,
    value: String,
}

/// Every record of `topic` (read to the end it has now), by partition and
/// offset. The end is where each partition reports its end (EOF): tansu
/// 0.6 answers ListOffsets wrongly for batches of several records.
fn consume_all(broker: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", unique_topic("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut at_end: BTreeMap<i32, bool> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| (p.id(), false))
        .collect();
    let mut assignment = TopicPartitionList::new();
    for &p in at_end.keys() {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("assignment");
    }
    consumer.assign(&assignment).expect("assign");
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while at_end.values().any(|&end| !end) {
        assert!(Instant::now() < deadline, "topic {topic} not read in 60 s");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                at_end.insert(m.partition(), false);
                records.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                });
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p, true);
            }
            Some(Err(_)) | None => {}
        }
    }
    records.sort();
    records
}

/// A folder with a pipeline file.
struct Job {
    dir: tempfile::TempDir,
}

impl Job {
    fn new(pipeline: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("pipeline.toml"), pipeline).expect("pipeline written");
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn pipeline(&self) -> PathBuf {
        self.path("pipeline.toml")
    }

    /// Runs the pipeline to its end; its log. A run still going after
    /// 10 minutes is stopped and fails the test, rather than hang it (a
    /// source that never sees its partitions' ends).
    fn run(&self) -> String {
        let mut child = weir()
            .args(["run", s(&self.pipeline())])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir starts");
        let mut stderr = child.stderr.take().expect("stderr piped");
        let log = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let deadline = Instant::now() + Duration::from_secs(600);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = log.join().expect("log");
        match status {
            Some(status) => assert!(status.success(), "weir failed ({status}): {log}"),
            None => panic!("weir still running after 10 minutes, stopped: {log}"),
        }
        log
    }

    /// The number of the newest complete checkpoint (0: none yet).
    fn newest_checkpoint(&self) -> u64 {
        std::fs::read_dir(self.path("ck")).map_or(0, |entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_prefix("chk-")?
                        .parse::<u64>()
                        .ok()
                })
                .max()
                .unwrap_or(0)
        })
    }

    /// Starts a run that streams (the pipeline without `stop_at_end`, so it
    /// cannot end before the kill however fast the machine), waits until
    /// it completed a checkpoint of its own, then kills it (SIGKILL) after
    /// a random wait of up to `jitter_ms`.
    fn crash(&self, rng: &mut Rng, jitter_ms: u64) {
        let pipeline = std::fs::read_to_string(self.pipeline()).expect("pipeline");
        assert!(pipeline.contains("stop_at_end = true"), "{pipeline}");
        let streaming = self.path("streaming.toml");
        std::fs::write(
            &streaming,
            pipeline.replace("stop_at_end = true", "stop_at_end = false"),
        )
        .expect("streaming pipeline written");
        let before = self.newest_checkpoint();
        let mut child = weir()
            .args(["run", s(&streaming)])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir starts");
        let mut stderr = child.stderr.take().expect("stderr piped");
        let log = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut exited = None;
        while self.newest_checkpoint() <= before && Instant::now() < deadline {
            exited = child.try_wait().expect("wait");
            if exited.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if exited.is_none() {
            std::thread::sleep(Duration::from_millis(rng.below(jitter_ms + 1)));
            exited = child.try_wait().expect("wait");
        }
        let _ = child.kill();
        let _ = child.wait();
        let log = log.join().expect("log");
        assert!(
            exited.is_none(),
            "a streaming run ended ({exited:?}): {log}"
        );
        assert!(
            self.newest_checkpoint() > before,
            "no checkpoint completed within 120 s: {log}"
        );
    }

    /// Kills `kills` streaming runs at random moments, each after a
    /// checkpoint of its own, then runs to the end (`stop_at_end`).
    fn crash_and_finish(&self, seed: u64, kills: usize, jitter_ms: u64) {
        let mut rng = Rng::new(seed);
        for _ in 0..kills {
            self.crash(&mut rng, jitter_ms);
        }
        let log = self.run();
        assert!(log.contains("weir: resuming from checkpoint"), "{log}");
    }
}

/// A Kafka source table for `topic`, with extra lines.
fn kafka_source(broker: &str, topic: &str, extra: &str) -> String {
    format!(
        "[[source]]\nname = \"orders\"\ntype = \"kafka\"\nbootstrap_servers = \"{broker}\"\n\
         topics = [\"{topic}\"]\ngroup_id = \"{topic}-group\"\nstop_at_end = true\n{extra}\n"
    )
}

/// `count` orders as (partition, key, value), the key being the product
/// and each product always in the same of `partitions` partitions.
fn orders(seed: u64, count: usize, partitions: i32) -> Vec<(i32, Option<String>, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| {
            let product = rng.below(50);
            let (qty, price) = (1 + rng.below(8), 100 + rng.below(800));
            (
                (product % partitions as u64) as i32,
                Some(format!("p{product}")),
                format!(r#"{{"product":"p{product}","qty":{qty},"price_cents":{price}}}"#)
                    .into_bytes(),
            )
        })
        .collect()
}

#[test]
fn the_source_reads_values_keys_partitions_offsets_and_timestamps_exactly() {
    let broker = broker();
    let topic = unique_topic("source");
    create_topic(broker, &topic, 3);
    let mut records = orders(1, 300, 3);
    records.push((1, Some("bad".into()), b"{not json".to_vec()));
    records.push((2, None, vec![0xff, 0xfe]));
    produce(broker, &topic, &records);
    let sent = consume_all(broker, &topic);
    assert_eq!(sent.len(), 302);

    let job = Job::new(&format!(
        "checkpoint_interval = \"50ms\"\ncheckpoint_dir = \"ck\"\n{}\
         [[sink]]\ntype = \"jsonl\"\npath = \"out.jsonl\"\n\
         [dead_letter]\npath = \"dead.jsonl\"\n",
        kafka_source(broker, &topic, "metadata = true")
    ));
    job.run();
    let mut out: Vec<Value> = read_jsonl(&job.path("out.jsonl"));
    out.sort_by_key(|v| (v["_partition"].as_i64(), v["_offset"].as_i64()));
    let good: Vec<&Record> = sent
        .iter()
        .filter(|r| r.value.starts_with("{\"product"))
        .collect();
    assert_eq!(out.len(), good.len(), "every good record once");
    for (row, record) in out.iter().zip(&good) {
        let mut value: Value = serde_json::from_str(&record.value).expect("sent JSON");
        let object = value.as_object_mut().expect("an object");
        object.insert("_topic".into(), topic.clone().into());
        object.insert("_key".into(), record.key.clone().into());
        object.insert("_partition".into(), record.partition.into());
        object.insert("_offset".into(), record.offset.into());
        let timestamp = row["_timestamp"].as_i64().expect("a timestamp");
        assert!(timestamp > 1_700_000_000_000, "{row}");
        object.insert("_timestamp".into(), timestamp.into());
        assert_eq!(row, &value);
    }
    let dead = read_jsonl(&job.path("dead.jsonl"));
    assert_eq!(dead.len(), 2, "{dead:?}");
    let reasons: Vec<&str> = dead.iter().filter_map(|d| d["reason"].as_str()).collect();
    assert!(
        reasons.iter().any(
            |r| r.contains(&format!("topic `{topic}` partition 1 offset"))
                && r.contains("invalid JSON")
        ),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("partition 2") && r.contains("not valid UTF-8")),
        "{reasons:?}"
    );
    // The group's offsets are the ends of the partitions.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", format!("{topic}-group"))
        .create()
        .expect("consumer");
    let mut wanted = TopicPartitionList::new();
    for p in 0..3 {
        wanted.add_partition(&topic, p);
    }
    let committed = consumer
        .committed_offsets(wanted, Duration::from_secs(10))
        .expect("committed offsets");
    for p in 0..3 {
        let end = sent.iter().filter(|r| r.partition == p).count() as i64;
        assert_eq!(
            committed
                .find_partition(&topic, p)
                .map(|e| e.offset().to_raw()),
            Some(Some(end)),
            "partition {p}"
        );
    }
}

#[test]
fn the_sink_writes_json_values_keyed_by_a_field_exactly() {
    let broker = broker();
    let topic = unique_topic("sink");
    create_topic(broker, &topic, 3);
    let job = Job::new(&format!(
        "checkpoint_interval = \"50ms\"\ncheckpoint_dir = \"ck\"\n\
         [[source]]\ntype = \"jsonl\"\npath = \"in.jsonl\"\n\
         [[sink]]\ntype = \"kafka\"\nbootstrap_servers = \"{broker}\"\ntopic = \"{topic}\"\n\
         key = \"product\"\n"
    ));
    let input: Vec<Vec<u8>> = orders(2, 500, 3).into_iter().map(|r| r.2).collect();
    let mut text = input.join(&b'\n');
    text.extend_from_slice(b"\n{\"qty\":1}\n");
    std::fs::write(job.path("in.jsonl"), text).expect("input");
    job.run();
    let records = consume_all(broker, &topic);
    assert_eq!(records.len(), 501, "every record once");
    let mut partition_of: BTreeMap<Option<String>, i32> = BTreeMap::new();
    for record in &records {
        let value: Value = serde_json::from_str(&record.value).expect("JSON value");
        assert_eq!(
            record.key.as_deref(),
            value["product"].as_str(),
            "the key is the product"
        );
        let first = *partition_of
            .entry(record.key.clone())
            .or_insert(record.partition);
        assert_eq!(first, record.partition, "one key, one partition");
    }
    let mut values: Vec<String> = records.into_iter().map(|r| r.value).collect();
    values.sort();
    let mut expected: Vec<String> = input
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .chain(["{\"qty\":1}".to_owned()])
        .collect();
    expected.sort();
    assert_eq!(values, expected);
}

#[test]
fn a_cluster_down_at_start_is_retried_then_named_with_the_connector() {
    let port = free_port();
    let job = Job::new(&format!(
        "{}\nconnect_timeout = \"1s\"\n[[sink]]\ntype = \"stdout\"\n",
        kafka_source(&format!("127.0.0.1:{port}"), "orders", "")
    ));
    let output = run(&["run", s(&job.pipeline())]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("source `orders` (kafka at `127.0.0.1:{port}`)"))
            && stderr.contains("cannot reach the cluster"),
        "{stderr}"
    );
    let job = Job::new(&format!(
        "[[source]]\ntype = \"jsonl\"\npath = \"in.jsonl\"\n\
         [[sink]]\ntype = \"kafka\"\nbootstrap_servers = \"127.0.0.1:{port}\"\ntopic = \"t\"\n\
         connect_timeout = \"1s\"\n"
    ));
    std::fs::write(job.path("in.jsonl"), "{\"a\":1}\n").expect("input");
    let output = run(&["run", s(&job.pipeline())]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("sink `kafka` (topic `t` at `127.0.0.1:{port}`)"))
            && stderr.contains("cannot reach the cluster"),
        "{stderr}"
    );
}

#[test]
fn exactly_once_delivery_is_refused_with_the_reason() {
    let job = Job::new(
        "[[source]]\ntype = \"jsonl\"\npath = \"in.jsonl\"\n\
         [[sink]]\ntype = \"kafka\"\nbootstrap_servers = \"127.0.0.1:9\"\ntopic = \"t\"\n\
         delivery = \"exactly-once\"\n",
    );
    let output = run(&["run", s(&job.pipeline())]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("`delivery = \"exactly-once\"` is not offered")
            && stderr.contains("EndTxn"),
        "{stderr}"
    );
}

/// Records per SIGKILL test, read one per batch.
const KILLED_ORDERS: usize = 12_000;

/// The pace of a SIGKILL test's source: reading all its records takes 4 s
/// on any machine, so the kills land mid-way.
fn killed_pace() -> String {
    format!("records_per_second = {}", KILLED_ORDERS / 4)
}

/// The sales-by-product lines of `file`, grouped by product in their order:
/// the per-product changelog, which does not depend on how partitions
/// interleave.
fn per_product(file: &Path) -> BTreeMap<String, Vec<String>> {
    let mut products: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in std::fs::read_to_string(file).expect("output").lines() {
        let value: Value = serde_json::from_str(line).expect("JSON line");
        let product = value["product"].as_str().expect("product").to_owned();
        products.entry(product).or_default().push(line.to_owned());
    }
    products
}

#[test]
fn kafka_to_sales_by_product_killed_at_random_moments_ends_as_an_uninterrupted_run() {
    let broker = broker();
    let topic = unique_topic("sales");
    create_topic(broker, &topic, 3);
    produce(broker, &topic, &orders(3, KILLED_ORDERS, 3));
    let operator = repo().join("examples/sales-by-product/operator");
    let pipeline = |out: &str| {
        format!(
            "batch_size = 1\ncheckpoint_interval = \"50ms\"\ncheckpoint_dir = \"ck-{out}\"\n{}\
             [[operator]]\nid = \"sales\"\ncrate = \"{}\"\nkey_by = \"product\"\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"{out}.jsonl\"\n",
            kafka_source(broker, &topic, &killed_pace()),
            s(&operator)
        )
    };
    let reference = Job::new(&pipeline("reference"));
    reference.run();
    let expected = per_product(&reference.path("reference.jsonl"));
    assert_eq!(
        expected.values().map(Vec::len).sum::<usize>(),
        KILLED_ORDERS,
        "one running total per order"
    );
    let job = Job::new(&pipeline("ck").replace("ck-ck", "ck"));
    job.crash_and_finish(7, 4, 600);
    let got = per_product(&job.path("ck.jsonl"));
    for (product, lines) in &expected {
        let other = got.get(product).map(Vec::as_slice).unwrap_or_default();
        let first = lines.iter().zip(other).position(|(a, b)| a != b);
        assert!(
            lines == other,
            "{product}: {} running totals, {} expected; first difference at {first:?}: {:?}",
            other.len(),
            lines.len(),
            first.map(|i| (&lines[i], &other[i]))
        );
    }
    assert_eq!(got.len(), expected.len(), "products");
}

/// Nexmark bids as JSON values, spread over `partitions` partitions.
fn bids(seed: u64, count: usize, partitions: i32) -> Vec<(i32, Option<String>, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| {
            let kind = if i % 10 == 0 { "person" } else { "bid" };
            (
                (i % partitions as usize) as i32,
                None,
                format!(
                    r#"{{"type":"{kind}","auction":{},"bidder":{},"price":{},"date_time":{},"extra":"e{i}"}}"#,
                    rng.below(1000),
                    rng.below(5000),
                    1 + rng.below(100_000),
                    1_700_000_000_000u64 + i as u64
                )
                .into_bytes(),
            )
        })
        .collect()
}

/// Values of a topic, counted.
fn value_counts(records: &[Record]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for record in records {
        *counts.entry(record.value.clone()).or_insert(0) += 1;
    }
    counts
}

fn q1_pipeline(broker: &str, input: &str, output: &str, source_extra: &str) -> String {
    format!(
        "batch_size = 1\ncheckpoint_interval = \"50ms\"\ncheckpoint_dir = \"ck\"\n{}\
         [[operator]]\nid = \"q1\"\ncrate = \"{}\"\n\
         [[sink]]\ntype = \"kafka\"\nbootstrap_servers = \"{broker}\"\ntopic = \"{output}\"\n",
        kafka_source(broker, input, source_extra),
        s(&repo().join("examples/nexmark/operators/q1"))
    )
}

#[test]
fn kafka_to_q1_to_kafka_killed_at_random_moments_loses_no_record() {
    let broker = broker();
    let input = unique_topic("bids");
    let (reference_topic, output) = (unique_topic("q1-reference"), unique_topic("q1-out"));
    create_topic(broker, &input, 3);
    create_topic(broker, &reference_topic, 3);
    create_topic(broker, &output, 3);
    produce(broker, &input, &bids(4, KILLED_ORDERS, 3));
    Job::new(&q1_pipeline(
        broker,
        &input,
        &reference_topic,
        &killed_pace(),
    ))
    .run();
    let expected = value_counts(&consume_all(broker, &reference_topic));
    assert_eq!(
        expected.values().sum::<usize>(),
        KILLED_ORDERS / 10 * 9,
        "one euro bid per bid"
    );
    assert!(expected.values().all(|&n| n == 1), "bids are distinct");
    let job = Job::new(&q1_pipeline(broker, &input, &output, &killed_pace()));
    job.crash_and_finish(11, 4, 600);
    let got = value_counts(&consume_all(broker, &output));
    let missing: Vec<&String> = expected.keys().filter(|v| !got.contains_key(*v)).collect();
    assert!(missing.is_empty(), "{} records lost", missing.len());
    let invented: Vec<&String> = got.keys().filter(|v| !expected.contains_key(*v)).collect();
    assert!(invented.is_empty(), "records not of the run: {invented:?}");
    // At-least-once: records of the epochs a kill interrupted may be there
    // twice, never more often than the runs that sent them.
    assert!(
        got.values().all(|&n| n <= 5),
        "a record sent more than once per run"
    );
}

/// A TCP proxy in front of a broker that, once armed, cuts the open
/// connections of some clients (those whose Kafka client id contains a
/// marker) each time it has passed on so many more of their bytes. Other
/// clients' connections pass untouched, so tests sharing the broker are
/// not disturbed.
struct CuttingProxy {
    state: Arc<ProxyState>,
}

/// One proxied connection: its two sockets and the client id its first
/// request named.
struct Connection {
    client_id: Arc<OnceLock<String>>,
    streams: [TcpStream; 2],
}

struct ProxyState {
    /// Bytes of the marked clients' connections passed on.
    passed: AtomicU64,
    next_cut_at: AtomicU64,
    every: AtomicU64,
    cuts_left: AtomicU64,
    cuts_done: AtomicU64,
    marker: Mutex<Option<String>>,
    connections: Mutex<Vec<Connection>>,
}

impl CuttingProxy {
    /// Listens on `listener`, forwarding to `target`; cuts nothing yet.
    fn start(listener: TcpListener, target: u16) -> Self {
        let state = Arc::new(ProxyState {
            passed: AtomicU64::new(0),
            next_cut_at: AtomicU64::new(u64::MAX),
            every: AtomicU64::new(u64::MAX),
            cuts_left: AtomicU64::new(0),
            cuts_done: AtomicU64::new(0),
            marker: Mutex::new(None),
            connections: Mutex::new(Vec::new()),
        });
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let client_id = Arc::new(OnceLock::new());
                if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
                    shared
                        .connections
                        .lock()
                        .expect("connections")
                        .push(Connection {
                            client_id: Arc::clone(&client_id),
                            streams: [c, s],
                        });
                }
                for (from, to, names) in [(&client, &server, true), (&server, &client, false)] {
                    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    let state = Arc::clone(&shared);
                    let client_id = Arc::clone(&client_id);
                    std::thread::spawn(move || {
                        state.pump(&mut from, &mut to, &client_id, names);
                    });
                }
            }
        });
        Self { state }
    }

    /// Cuts the connections of clients whose id contains `marker` after
    /// each `every` more of their bytes, `cuts` times.
    fn arm(&self, marker: &str, every: u64, cuts: u64) {
        let state = &self.state;
        *state.marker.lock().expect("marker") = Some(marker.to_owned());
        state.every.store(every, Ordering::SeqCst);
        state.cuts_left.store(cuts, Ordering::SeqCst);
        state.next_cut_at.store(
            state.passed.load(Ordering::SeqCst) + every,
            Ordering::SeqCst,
        );
    }

    /// Cuts nothing more.
    fn disarm(&self) {
        self.state.cuts_left.store(0, Ordering::SeqCst);
        self.state.next_cut_at.store(u64::MAX, Ordering::SeqCst);
        *self.state.marker.lock().expect("marker") = None;
    }

    fn cuts_done(&self) -> u64 {
        self.state.cuts_done.load(Ordering::SeqCst)
    }
}

/// The client id of a Kafka request (header: size, api key, version,
/// correlation id, then the id as a 16-bit length and its bytes), once
/// `head` holds that much.
fn client_id_of(head: &[u8]) -> Option<String> {
    let length = i16::from_be_bytes(head.get(12..14)?.try_into().ok()?);
    let length = usize::try_from(length).unwrap_or(0);
    let id = head.get(14..14 + length)?;
    Some(String::from_utf8_lossy(id).into_owned())
}

impl ProxyState {
    /// Passes bytes on from `from` to `to`; `names` for the client's side,
    /// whose first request names the client.
    fn pump(
        &self,
        from: &mut TcpStream,
        to: &mut TcpStream,
        client_id: &OnceLock<String>,
        names: bool,
    ) {
        let mut buffer = [0u8; 16 * 1024];
        let mut head = Vec::new();
        loop {
            let n = match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if names && client_id.get().is_none() {
                head.extend_from_slice(&buffer[..n]);
                if let Some(id) = client_id_of(&head) {
                    let _ = client_id.set(id);
                }
            }
            if to.write_all(&buffer[..n]).is_err() {
                break;
            }
            if !self.marked(client_id) {
                continue;
            }
            let passed = self.passed.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
            if passed >= self.next_cut_at.load(Ordering::SeqCst) {
                self.cut(passed);
            }
        }
        let _ = from.shutdown(std::net::Shutdown::Both);
        let _ = to.shutdown(std::net::Shutdown::Both);
    }

    /// Whether the connection's client is one to cut.
    fn marked(&self, client_id: &OnceLock<String>) -> bool {
        let marker = self.marker.lock().expect("marker");
        matches!((marker.as_deref(), client_id.get()), (Some(m), Some(id)) if id.contains(m))
    }

    /// Closes every open connection of the marked clients, if a cut is
    /// left.
    fn cut(&self, passed: u64) {
        let mut connections = self.connections.lock().expect("connections");
        if passed < self.next_cut_at.load(Ordering::SeqCst) {
            return; // another pump cut first
        }
        let left = self.cuts_left.load(Ordering::SeqCst);
        if left == 0 {
            self.next_cut_at.store(u64::MAX, Ordering::SeqCst);
            return;
        }
        self.cuts_left.store(left - 1, Ordering::SeqCst);
        self.cuts_done.fetch_add(1, Ordering::SeqCst);
        let every = self.every.load(Ordering::SeqCst);
        self.next_cut_at
            .store(passed.saturating_add(every), Ordering::SeqCst);
        let (marked, kept): (Vec<Connection>, Vec<Connection>) = connections
            .drain(..)
            .partition(|c| self.marked(&c.client_id));
        *connections = kept;
        for connection in marked {
            for stream in &connection.streams {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

#[test]
fn connections_cut_mid_run_are_reopened_and_the_output_is_exact() {
    // The shared broker's proxy cuts this run's clients only (their ids
    // name the source `cut-orders` and the sink's `cut-out` topic). With
    // another broker (`WEIR_TEST_KAFKA`) a tansu of the test's own tells
    // clients to connect through a proxy of its own.
    let own;
    let (broker, proxy) = match &shared().proxy {
        Some(proxy) => (broker().to_owned(), proxy),
        None => {
            let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
            let proxy_port = listener.local_addr().expect("proxy address").port();
            let port = free_port();
            own = (
                start_tansu(port, proxy_port),
                CuttingProxy::start(listener, port),
            );
            (own.0.address.clone(), &own.1)
        }
    };
    let (input, output) = (unique_topic("cut-in"), unique_topic("cut-out"));
    create_topic(&broker, &input, 3);
    create_topic(&broker, &output, 3);
    produce(&broker, &input, &bids(5, 5_000, 3));
    let pipeline = q1_pipeline(&broker, &input, &output, "")
        .replace("name = \"orders\"", "name = \"cut-orders\"");
    let cuts_before = proxy.cuts_done();
    proxy.arm("cut-", 150_000, 4);
    let run = std::panic::catch_unwind(|| Job::new(&pipeline).run());
    proxy.disarm();
    if let Err(panic) = run {
        std::panic::resume_unwind(panic);
    }
    let cuts = proxy.cuts_done() - cuts_before;
    assert!(cuts >= 2, "the proxy cut {cuts} times");
    let got = value_counts(&consume_all(&broker, &output));
    assert_eq!(got.values().sum::<usize>(), 4_500, "every bid once");
    assert!(got.values().all(|&n| n == 1), "a bid written twice");
}

#[test]
fn the_kafka_etl_example_cleanses_a_topic_into_a_file_and_a_topic() {
    let broker = broker();
    let (raw, clean) = (unique_topic("raw-orders"), unique_topic("clean-orders"));
    create_topic(broker, &raw, 1);
    create_topic(broker, &clean, 1);
    let etl = repo().join("examples/etl-cleanse");
    let input = std::fs::read_to_string(etl.join("input.jsonl")).expect("example input");
    let records: Vec<(i32, Option<String>, Vec<u8>)> = input
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| (0, None, l.as_bytes().to_vec()))
        .collect();
    produce(broker, &raw, &records);
    let example = repo().join("examples/kafka-etl");
    let text = std::fs::read_to_string(example.join("pipeline.toml"))
        .expect("the example's pipeline")
        .replace("127.0.0.1:9092", broker)
        .replace("\"raw-orders\"", &format!("\"{raw}\""))
        .replace("\"clean-orders\"", &format!("\"{clean}\""))
        .replace("\"weir-kafka-etl\"", &format!("\"{raw}-group\""))
        .replace("../etl-cleanse/operator", s(&etl.join("operator")));
    let job = Job::new(&text);
    job.run();
    let expected = std::fs::read_to_string(etl.join("expected.jsonl")).expect("expected");
    assert_eq!(
        std::fs::read_to_string(job.path("out/cleansed.jsonl")).expect("output"),
        expected
    );
    let topic = consume_all(broker, &clean);
    let values: Vec<&str> = topic.iter().map(|r| r.value.as_str()).collect();
    assert_eq!(values, expected.lines().collect::<Vec<_>>());
    for record in &topic {
        let value: Value = serde_json::from_str(&record.value).expect("JSON");
        assert_eq!(record.key.as_deref(), value["order_id"].as_str());
    }
    let raws = |file: &Path| {
        let mut raws: Vec<String> = read_jsonl(file)
            .iter()
            .map(|d| d["raw"].as_str().unwrap_or_default().to_owned())
            .collect();
        raws.sort();
        raws
    };
    assert_eq!(
        raws(&job.path("out/dead-letter.jsonl")),
        raws(&etl.join("expected-dead-letter.jsonl"))
    );
}
