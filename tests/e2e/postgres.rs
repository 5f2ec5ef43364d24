//! The PostgreSQL sink against the real server: `WEIR_TEST_POSTGRES` (a
//! connection string; default `postgresql://postgres@127.0.0.1:5432/test`,
//! with `PGPASSWORD` passed on as `password_env` when it is set). Each test
//! writes its own tables, named after the test and the process.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ::postgres::config::Host;
use ::postgres::{Client, NoTls};

use crate::support::{Rng, read_jsonl, repo, run_err, run_ok, s, weir};

fn server() -> ::postgres::Config {
    std::env::var("WEIR_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".into())
        .parse()
        .expect("WEIR_TEST_POSTGRES is a PostgreSQL connection string")
}

fn client() -> Client {
    server()
        .connect(NoTls)
        .expect("the test PostgreSQL server (WEIR_TEST_POSTGRES) is reachable")
}

fn server_address() -> (String, u16) {
    let config = server();
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".into(),
    };
    (host, config.get_ports().first().copied().unwrap_or(5432))
}

/// The connection keys of a sink, to `port` instead of the server's own
/// when given.
pub fn connection_toml(port: Option<u16>) -> String {
    let config = server();
    let (host, server_port) = server_address();
    let user = config.get_user().unwrap_or("postgres").to_owned();
    let dbname = config.get_dbname().unwrap_or(&user).to_owned();
    let password = if std::env::var_os("PGPASSWORD").is_some() {
        "password_env = \"PGPASSWORD\"\n"
    } else {
        ""
    };
    format!(
        "host = \"{host}\"\nport = {}\nuser = \"{user}\"\ndbname = \"{dbname}\"\n{password}",
        port.unwrap_or(server_port)
    )
}

/// A table name for this test and process, dropped if a run before left it.
fn fresh_table(client: &mut Client, name: &str) -> String {
    let table = format!("weir_test_{name}_{}", std::process::id());
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .expect("drop table");
    table
}

fn drop_tables(client: &mut Client, tables: &[&str]) {
    for table in tables {
        client
            .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
            .expect("drop table");
    }
}

/// Every row of `table` as JSON text, sorted.
fn rows(client: &mut Client, table: &str) -> Vec<String> {
    let mut rows: Vec<String> = client
        .query(&format!("SELECT row_to_json(t)::text FROM {table} t"), &[])
        .expect("select rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    rows.sort();
    rows
}

fn count(client: &mut Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .map_or(0, |r| r.get(0))
}

fn write_pipeline(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).expect("pipeline written");
    path
}

fn sink_toml(table: &str, mode: &str, extra: &str) -> String {
    let key = if mode == "upsert" {
        "key = [\"product\"]\n"
    } else {
        ""
    };
    format!(
        "[[sink]]\ntype = \"postgres\"\n{}table = \"{table}\"\nmode = \"{mode}\"\n{key}\
         create_table = true\n{extra}",
        connection_toml(None)
    )
}

#[test]
fn upsert_keeps_each_keys_latest_row_and_append_every_row() {
    let mut db = client();
    let upserted = fresh_table(&mut db, "upsert_rows");
    let appended = fresh_table(&mut db, "append_rows");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("orders.jsonl"),
        concat!(
            r#"{"product":"espresso","qty":2,"price":2.5,"member":true}"#,
            "\n",
            r#"{"product":"croissant","qty":1,"price":1.75,"member":false}"#,
            "\n",
            r#"{"product":"espresso","qty":1,"price":2.5,"note":"tab\there \\ \"quoted\"\nline"}"#,
            "\n",
            r#"{"qty":5,"price":1.0}"#,
            "\n",
            r#"{"product":"tea","qty":3,"price":2.25,"tags":["hot","green"]}"#,
            "\n",
        ),
    )
    .expect("input written");
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            "[[source]]\ntype = \"jsonl\"\npath = \"orders.jsonl\"\n\n{}\n{}\n\
             [dead_letter]\npath = \"dead.jsonl\"\n",
            sink_toml(&upserted, "upsert", ""),
            sink_toml(&appended, "append", ""),
        ),
    );
    run_ok(&["run", s(&pipeline)]);

    assert_eq!(
        rows(&mut db, &upserted),
        [
            r#"{"product":"croissant","qty":1,"price":1.75,"member":false,"note":null,"tags":null}"#,
            r#"{"product":"espresso","qty":1,"price":2.5,"member":null,"note":"tab\there \\ \"quoted\"\nline","tags":null}"#,
            r#"{"product":"tea","qty":3,"price":2.25,"member":null,"note":null,"tags":["hot", "green"]}"#,
        ]
    );
    assert_eq!(
        rows(&mut db, &appended),
        [
            r#"{"product":"croissant","qty":1,"price":1.75,"member":false,"note":null,"tags":null}"#,
            r#"{"product":"espresso","qty":1,"price":2.5,"member":null,"note":"tab\there \\ \"quoted\"\nline","tags":null}"#,
            r#"{"product":"espresso","qty":2,"price":2.5,"member":true,"note":null,"tags":null}"#,
            r#"{"product":"tea","qty":3,"price":2.25,"member":null,"note":null,"tags":["hot", "green"]}"#,
            r#"{"product":null,"qty":5,"price":1,"member":null,"note":null,"tags":null}"#,
        ]
    );
    let types: Vec<(String, String)> = db
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_name = $1 ORDER BY ordinal_position",
            &[&upserted],
        )
        .expect("columns")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        types,
        [
            ("product", "text"),
            ("qty", "bigint"),
            ("price", "double precision"),
            ("member", "boolean"),
            ("note", "text"),
            ("tags", "jsonb"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let dead = read_jsonl(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["raw"], r#"{"qty":5,"price":1.0}"#);
    assert_eq!(dead[0]["line"], 4);
    let reason = dead[0]["reason"].as_str().expect("a reason");
    assert!(
        reason.contains(&format!("table `{upserted}`")) && reason.contains("key field `product`"),
        "{reason}"
    );
    drop_tables(&mut db, &[&upserted, &appended]);
}

#[test]
fn standard_input_without_checkpoints_is_written_as_it_comes() {
    let mut db = client();
    let table = fresh_table(&mut db, "stdin_rows");
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            "[[source]]\ntype = \"stdin\"\n\n{}",
            sink_toml(&table, "upsert", "")
        ),
    );
    let mut child = weir()
        .args(["run", s(&pipeline)])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"{\"product\":\"a\",\"qty\":1}\n{\"product\":\"b\",\"qty\":2}\n")
        .expect("written");
    stdin.flush().expect("flushed");
    // A live input's rows show before it ends.
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&mut db, &table) < 2 {
        assert!(Instant::now() < deadline, "the rows never showed");
        std::thread::sleep(Duration::from_millis(20));
    }
    stdin
        .write_all(b"{\"product\":\"a\",\"qty\":3}\n")
        .expect("written");
    drop(stdin);
    let output = child.wait_with_output().expect("weir ends");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        rows(&mut db, &table),
        [r#"{"product":"a","qty":3}"#, r#"{"product":"b","qty":2}"#]
    );
    drop_tables(&mut db, &[&table]);
}

#[test]
fn a_table_that_does_not_fit_the_records_is_a_clear_error() {
    let mut db = client();
    let table = fresh_table(&mut db, "misfit");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("orders.jsonl"),
        "{\"product\":\"a\",\"qty\":1,\"colour\":\"red\"}\n",
    )
    .expect("input written");
    let run = |table_sql: &str, sink: &str| {
        drop_tables(&mut client(), &[&table]);
        if !table_sql.is_empty() {
            client()
                .batch_execute(&table_sql.replace("$t", &table))
                .expect("table created");
        }
        let pipeline = write_pipeline(
            dir.path(),
            &format!("[[source]]\ntype = \"jsonl\"\npath = \"orders.jsonl\"\n\n{sink}"),
        );
        run_err(&["run", s(&pipeline), "--fresh"])
    };
    let connection = connection_toml(None);
    let sink = |mode: &str, extra: &str| {
        format!(
            "[[sink]]\ntype = \"postgres\"\n{connection}table = \"{table}\"\nmode = \"{mode}\"\n\
             {extra}"
        )
    };

    let error = run(
        "CREATE TABLE $t (product text PRIMARY KEY, qty bigint)",
        &sink("upsert", "key = [\"product\"]\n"),
    );
    assert!(
        error.contains(&format!(
            "the records have a field `colour`, but table `{table}` has no such column \
             (its columns: product, qty)"
        )),
        "{error}"
    );
    assert!(error.contains("sink `postgres`"), "{error}");

    let error = run(
        "CREATE TABLE $t (product text PRIMARY KEY, qty boolean, colour text)",
        &sink("append", ""),
    );
    assert!(
        error.contains(&format!(
            "field `qty` holds numbers, which do not fit column `qty` of type boolean in \
             table `{table}`"
        )),
        "{error}"
    );

    let error = run(
        "CREATE TABLE $t (product text, qty bigint, colour text)",
        &sink("upsert", "key = [\"product\"]\n"),
    );
    assert!(
        error.contains(&format!(
            "an upsert needs a primary key or unique index on exactly (product) in table `{table}`"
        )),
        "{error}"
    );

    let error = run("", &sink("append", ""));
    assert!(
        error.contains(&format!(
            "table `{table}` does not exist; create it, or set `create_table = true`"
        )),
        "{error}"
    );
    drop_tables(&mut db, &[&table]);
}

#[test]
fn records_postgresql_refuses_go_to_the_dead_letters_and_the_rest_is_written() {
    let mut db = client();
    let table = fresh_table(&mut db, "refused");
    db.batch_execute(&format!(
        "CREATE TABLE {table} (product text PRIMARY KEY, qty integer NOT NULL CHECK (qty > 0))"
    ))
    .expect("table created");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut input = String::new();
    for i in 0..100 {
        // Out of range for `integer`, and below the check.
        let qty = match i {
            17 => 5_000_000_000i64,
            60 => -1,
            _ => i + 1,
        };
        input.push_str(&format!("{{\"product\":\"p{i}\",\"qty\":{qty}}}\n"));
    }
    std::fs::write(dir.path().join("orders.jsonl"), input).expect("input written");
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            "[[source]]\ntype = \"jsonl\"\npath = \"orders.jsonl\"\n\n[[sink]]\n\
             type = \"postgres\"\n{}table = \"{table}\"\nmode = \"append\"\n\n\
             [dead_letter]\npath = \"dead.jsonl\"\n",
            connection_toml(None)
        ),
    );
    run_ok(&["run", s(&pipeline)]);
    assert_eq!(count(&mut db, &table), 98);
    let dead = read_jsonl(&dir.path().join("dead.jsonl"));
    let lines: Vec<_> = dead.iter().map(|d| d["line"].as_u64()).collect();
    assert_eq!(lines, [Some(18), Some(61)], "{dead:?}");
    let reasons: Vec<&str> = dead.iter().filter_map(|d| d["reason"].as_str()).collect();
    assert!(
        reasons[0].contains("out of range for type integer"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("check constraint"), "{reasons:?}");
    drop_tables(&mut db, &[&table]);
}

#[test]
fn a_server_that_is_down_at_start_is_retried_then_named_in_the_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("orders.jsonl"), "{\"product\":\"a\"}\n").expect("input");
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            "[[source]]\ntype = \"jsonl\"\npath = \"orders.jsonl\"\n\n[[sink]]\n\
             type = \"postgres\"\n{}table = \"nowhere\"\nmode = \"append\"\nretry_for = \"1s\"\n",
            connection_toml(Some(port))
        ),
    );
    let error = run_err(&["run", s(&pipeline)]);
    assert!(
        error.contains(&format!(
            "sink `postgres` (table `nowhere` at 127.0.0.1:{port}): cannot connect to \
             PostgreSQL at 127.0.0.1:{port} (tried for"
        )),
        "{error}"
    );
    assert!(error.contains("retrying in"), "retried first: {error}");
}

/// Orders for the sales-by-product operator.
fn orders(seed: u64, count: usize) -> String {
    let mut rng = Rng::new(seed);
    let mut text = String::with_capacity(count * 48);
    for _ in 0..count {
        text.push_str(&format!(
            "{{\"product\":\"p{}\",\"qty\":{},\"price_cents\":{}}}\n",
            rng.below(3000),
            1 + rng.below(8),
            100 + rng.below(800)
        ));
    }
    text
}

/// A folder with orders → sales-by-product → an upserted and an appended
/// table, checkpointing every 100 ms.
struct Sales {
    dir: tempfile::TempDir,
    upserted: String,
    appended: String,
}

impl Sales {
    fn new(input: &str, name: &str, port: Option<u16>, extra_sink: &str) -> Self {
        let mut db = client();
        let upserted = fresh_table(&mut db, &format!("{name}_totals"));
        let appended = fresh_table(&mut db, &format!("{name}_changes"));
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("orders.jsonl"), input).expect("input written");
        let operator = repo().join("examples/sales-by-product/operator");
        let connection = connection_toml(port);
        write_pipeline(
            dir.path(),
            &format!(
                "checkpoint_interval = \"100ms\"\ncheckpoint_dir = \"ck\"\nbatch_size = 256\n\
                 [[source]]\ntype = \"jsonl\"\npath = \"orders.jsonl\"\n\
                 [[operator]]\nid = \"sales\"\ncrate = \"{}\"\nkey_by = \"product\"\n\
                 [[sink]]\ntype = \"postgres\"\n{connection}table = \"{upserted}\"\n\
                 mode = \"upsert\"\nkey = [\"product\"]\ncreate_table = true\n{extra_sink}\
                 [[sink]]\ntype = \"postgres\"\n{connection}table = \"{appended}\"\n\
                 mode = \"append\"\ncreate_table = true\n{extra_sink}",
                s(&operator)
            ),
        );
        Self {
            dir,
            upserted,
            appended,
        }
    }

    fn pipeline(&self) -> PathBuf {
        self.dir.path().join("pipeline.toml")
    }

    fn start(&self) -> Child {
        weir()
            .args(["run", s(&self.pipeline())])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir starts")
    }

    fn has_checkpoint(&self) -> bool {
        std::fs::read_dir(self.dir.path().join("ck"))
            .map(|entries| {
                entries.flatten().any(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with("chk-") && !name.ends_with(".tmp")
                })
            })
            .unwrap_or(false)
    }

    /// Both tables' rows.
    fn tables(&self) -> (Vec<String>, Vec<String>) {
        let mut db = client();
        (rows(&mut db, &self.upserted), rows(&mut db, &self.appended))
    }

    fn drop_tables(&self) {
        drop_tables(&mut client(), &[&self.upserted, &self.appended]);
    }
}

/// Reads a child's stderr on a thread, so it never blocks on a full pipe.
fn collect_stderr(child: &mut Child) -> std::thread::JoinHandle<String> {
    let mut stderr = child.stderr.take().expect("stderr piped");
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    })
}

#[test]
fn a_run_killed_at_random_moments_leaves_the_tables_of_an_uninterrupted_run() {
    let input = orders(3, 200_000);
    let reference = Sales::new(&input, "kill_reference", None, "");
    run_ok(&["run", s(&reference.pipeline())]);
    let (totals, changes) = reference.tables();
    assert_eq!(totals.len(), 3000, "one row per product");
    assert_eq!(changes.len(), 200_000, "one running total per order");

    let sales = Sales::new(&input, "kill", None, "");
    crate::support::pace_sources(&sales.pipeline(), 3);
    let mut rng = Rng::new(9);
    let mut kills = 0;
    for _ in 0..4 {
        let mut child = sales.start();
        let log = collect_stderr(&mut child);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !sales.has_checkpoint() && Instant::now() < deadline {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.below(800)));
        let finished = child.try_wait().expect("wait").is_some();
        let _ = child.kill();
        let status = child.wait().expect("weir ends");
        let log = log.join().expect("log");
        if finished {
            assert!(status.success(), "weir failed: {log}");
            break;
        }
        kills += 1;
    }
    assert!(
        kills >= 2,
        "only {kills} runs were killed before they ended"
    );
    let out = run_ok(&["run", s(&sales.pipeline())]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("weir: resuming from checkpoint"), "{log}");
    let (got_totals, got_changes) = sales.tables();
    assert!(got_totals == totals, "the upserted table differs");
    assert!(
        got_changes == changes,
        "the appended table differs: {} rows, {} in the uninterrupted run",
        got_changes.len(),
        changes.len()
    );
    reference.drop_tables();
    sales.drop_tables();
}

/// A TCP proxy to the server that the test can hold (stop forwarding) and
/// cut (close every connection open now).
struct Proxy {
    port: u16,
    state: Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    hold: AtomicBool,
    generation: AtomicU64,
    stop: AtomicBool,
}

impl Proxy {
    fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy listens");
        let port = listener.local_addr().expect("proxy address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let state = Arc::new(ProxyState::default());
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            while !shared.stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((inbound, _)) => {
                        let Ok(outbound) = TcpStream::connect(target) else {
                            continue;
                        };
                        let _ = inbound.set_nonblocking(false);
                        let generation = shared.generation.load(Ordering::Acquire);
                        for (from, to) in [
                            (inbound.try_clone(), outbound.try_clone()),
                            (outbound.try_clone(), inbound.try_clone()),
                        ] {
                            if let (Ok(from), Ok(to)) = (from, to) {
                                let state = Arc::clone(&shared);
                                std::thread::spawn(move || pump(from, to, generation, &state));
                            }
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { port, state }
    }

    fn hold(&self, hold: bool) {
        self.state.hold.store(hold, Ordering::Release);
    }

    fn cut(&self) {
        self.state.generation.fetch_add(1, Ordering::AcqRel);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
        self.cut();
    }
}

/// Forwards `from` to `to` until either closes or the proxy cuts them.
fn pump(mut from: TcpStream, mut to: TcpStream, generation: u64, state: &ProxyState) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(10)));
    let mut buffer = vec![0; 64 << 10];
    loop {
        if state.generation.load(Ordering::Acquire) != generation {
            break;
        }
        if state.hold.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// Holds the proxy at a moment when a connection of `application` is inside
/// an open transaction, waiting for the client's next message.
fn hold_inside_a_transaction(proxy: &Proxy, child: &mut Child, application: &str) {
    let mut db = client();
    let mut rng = Rng::new(5);
    for _ in 0..20_000 {
        proxy.hold(true);
        std::thread::sleep(Duration::from_millis(20));
        let inside: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
                 AND state = 'idle in transaction'",
                &[&application],
            )
            .expect("activity")
            .get(0);
        if inside > 0 {
            return;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the run ended before its connection was cut: give it more input"
        );
        proxy.hold(false);
        std::thread::sleep(Duration::from_millis(rng.below(15)));
    }
    panic!("never caught a transaction open");
}

#[test]
fn connections_cut_inside_a_transaction_lose_and_duplicate_nothing() {
    let input = orders(4, 100_000);
    let reference = Sales::new(&input, "cut_reference", None, "");
    run_ok(&["run", s(&reference.pipeline())]);
    let expected = reference.tables();

    let (host, port) = server_address();
    let target: SocketAddr = format!("{host}:{port}").parse().expect("server address");
    let proxy = Proxy::start(target);
    let application = format!("weir-test-cut-{}", std::process::id());
    let sales = Sales::new(
        &input,
        "cut",
        Some(proxy.port),
        &format!("application_name = \"{application}\"\n"),
    );
    // Paced, so the run is still going when its connections are cut.
    crate::support::pace_sources(&sales.pipeline(), 5);
    let mut child = sales.start();
    let log = collect_stderr(&mut child);

    // Once dropped by the network: what was in flight is lost, the commit
    // may or may not have happened.
    hold_inside_a_transaction(&proxy, &mut child, &application);
    proxy.cut();
    proxy.hold(false);

    // Once ended by the server.
    hold_inside_a_transaction(&proxy, &mut child, &application);
    let ended: i64 = client()
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1) t",
            &[&application],
        )
        .expect("terminate")
        .get(0);
    assert!(ended >= 1);
    proxy.hold(false);

    let status = child.wait().expect("weir ends");
    let log = log.join().expect("log");
    assert!(status.success(), "{log}");
    assert!(
        log.contains("lost") && log.contains("reconnecting"),
        "{log}"
    );
    assert!(
        sales.tables() == expected,
        "the tables differ from an uncut run's"
    );
    reference.drop_tables();
    sales.drop_tables();
}

#[test]
fn the_sales_report_example_upserts_each_products_totals() {
    let example = repo().join("examples/sales-report");
    let mut db = client();
    let table = fresh_table(&mut db, "sales_report");
    // The example as written, pointed at the test server and table.
    let text = std::fs::read_to_string(example.join("pipeline.toml")).expect("the example");
    let mut pipeline = String::new();
    for line in text.lines() {
        match line.split(' ').next().unwrap_or("") {
            "host" | "port" | "user" | "dbname" => continue,
            "table" => pipeline.push_str(&format!("table = \"{table}\"\n")),
            "type" if line.contains("\"postgres\"") => {
                pipeline.push_str(line);
                pipeline.push('\n');
                pipeline.push_str(&connection_toml(None));
            }
            "path" | "crate" => {
                pipeline.push_str(&line.replacen("= \"", &format!("= \"{}/", s(&example)), 1))
            }
            _ => pipeline.push_str(line),
        }
        pipeline.push('\n');
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = write_pipeline(
        dir.path(),
        &pipeline.replace(&format!("{}/out/", s(&example)), ""),
    );
    run_ok(&["run", s(&pipeline)]);

    // The totals, computed here from the orders.
    let mut totals: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    let mut refused = 0;
    for order in read_jsonl(&example.join("orders.jsonl")) {
        match (
            order["product"].as_str(),
            order["qty"].as_i64(),
            order["price_cents"].as_i64(),
        ) {
            (Some(product), Some(qty), Some(price)) => {
                let entry = totals.entry(product.to_owned()).or_default();
                entry.0 += qty;
                entry.1 += qty * price;
            }
            _ => refused += 1,
        }
    }
    let mut want: Vec<String> = totals
        .iter()
        .map(|(product, (units, revenue))| {
            format!(r#"{{"product":"{product}","units":{units},"revenue_cents":{revenue}}}"#)
        })
        .collect();
    want.sort();
    assert_eq!(want.len(), 8);
    assert_eq!(rows(&mut db, &table), want);
    assert_eq!(refused, 1);
    assert_eq!(
        read_jsonl(&dir.path().join("dead-letter.jsonl")).len(),
        refused
    );
    drop_tables(&mut db, &[&table]);
}
