//! Helpers shared by the end-to-end tests.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// The `weir` binary under test.
pub fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

/// Runs `weir` with `args` and returns its output, whatever the exit status.
pub fn run(args: &[&str]) -> Output {
    weir()
        .args(args)
        .current_dir(repo())
        .output()
        .expect("weir runs")
}

/// Runs `weir` with `args` and fails the test, showing stderr, unless it succeeds.
pub fn run_ok(args: &[&str]) -> Output {
    let output = run(args);
    assert!(
        output.status.success(),
        "weir {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `weir` with `args`, expects it to fail, and returns its stderr.
pub fn run_err(args: &[&str]) -> String {
    let output = run(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "weir {args:?} should fail; stderr:\n{stderr}"
    );
    stderr
}

/// The JSON values of a JSON Lines file.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Holds every file or generator source of `pipeline` to a pace at which
/// reading all of its input takes `seconds`, so a kill test's runs last
/// long enough to be killed mid-way on however fast a machine. A file
/// source's records are its lines (relative to the pipeline's folder); a
/// generator's, its `events`. A source already paced is left as it is.
pub fn pace_sources(pipeline: &Path, seconds: u64) {
    let text = std::fs::read_to_string(pipeline).expect("pipeline file");
    let folder = pipeline.parent().expect("the pipeline's folder");
    let mut paced = String::new();
    for (i, block) in text.split("[[source]]\n").enumerate() {
        if i > 0 {
            paced.push_str("[[source]]\n");
        }
        if i > 0 && !block.contains("records_per_second") {
            let value = |key: &str| {
                block
                    .lines()
                    .take_while(|l| !l.starts_with("[["))
                    .find_map(|l| l.strip_prefix(key)?.trim().strip_prefix('=')?.trim().into())
                    .map(|v: &str| v.trim_matches('"').to_owned())
            };
            let records = match (value("path"), value("events")) {
                (Some(path), _) => std::fs::read_to_string(folder.join(&path))
                    .unwrap_or_else(|e| panic!("source file {path}: {e}"))
                    .lines()
                    .count() as u64,
                (None, Some(events)) => events.parse().expect("events"),
                (None, None) => panic!("no file or generator source in {block}"),
            };
            paced.push_str(&format!(
                "records_per_second = {}\n",
                (records / seconds).max(1)
            ));
        }
        paced.push_str(block);
    }
    std::fs::write(pipeline, paced).expect("pipeline written");
}

/// A path as `&str` for command lines.
pub fn s(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// A small deterministic random generator (xorshift), so generated inputs are
/// the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Builds workspace crate `package` for the guest target and returns its
/// component (cargo's file name keeps the package's dashes).
pub fn build_wasm(package: &str) -> PathBuf {
    weir::toolchain::rust_target(&repo()).expect("the guest target is there or can be added");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            "wasm32-wasip2",
            "-p",
            package,
        ])
        .current_dir(repo())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {package} failed");
    repo().join(format!("target/wasm32-wasip2/release/{package}.wasm"))
}

pub use crate::shared::{admin_address, with_custom_section};

/// Runs the reminder operator at `operator` (`crate` or `project` is
/// `field`) over stdin, writes records of keys `a`, `b`, `a` and waits for
/// the reminders its processing-time timers emit while stdin is still open;
/// returns them once `a` has been reminded of 2 records and `b` of 1.
pub fn reminders_on_the_wall_clock(field: &str, operator: &Path) -> Vec<String> {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let (pipeline, out) = (
        dir.path().join("pipeline.toml"),
        dir.path().join("out.jsonl"),
    );
    std::fs::write(
        &pipeline,
        format!(
            "[[source]]\ntype = \"stdin\"\n\n[[operator]]\nid = \"reminder\"\n\
             {field} = \"{}\"\nkey_by = \"key\"\n\n[[sink]]\ntype = \"jsonl\"\npath = \"{}\"\n",
            s(operator),
            s(&out)
        ),
    )
    .unwrap();
    let mut child = weir()
        .args(["run", s(&pipeline)])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"{\"key\":\"a\"}\n{\"key\":\"b\"}\n{\"key\":\"a\"}\n")
        .unwrap();
    stdin.flush().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let (want_a, want_b) = (r#"{"key":"a","notes":2}"#, r#"{"key":"b","notes":1}"#);
    let lines = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.iter().any(|l| l == want_a) && lines.iter().any(|l| l == want_b) {
            break lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}: no reminders: {text:?}",
            operator.display()
        );
        assert!(child.try_wait().unwrap().is_none(), "weir stopped early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    drop(stdin);
    assert!(child.wait().unwrap().success());
    lines
}
