//! The web dashboard in a real browser: Debian's headless Chromium, driven
//! by playwright-core from npm (`dashboard.mjs`), against a live pipeline.
//! The test installs both the first time, as `weir` installs its tools.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir::control::OperatorStatus;

use crate::hot_swap::build;
use crate::support::{admin_address, repo, run_ok, s, weir};

/// The playwright-core release the test drives Chromium with.
const PLAYWRIGHT_CORE: &str = "1.65.2";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Debian's Chromium, installed with apt-get when missing.
fn chromium() {
    if Path::new(CHROMIUM).exists() {
        return;
    }
    eprintln!("dashboard test: installing Debian's chromium (apt-get install -y chromium), once");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        eprintln!("dashboard test: apt-get update, then again");
        let updated = Command::new("apt-get").arg("update").status();
        assert!(
            updated.is_ok_and(|s| s.success()) && install(),
            "cannot install chromium with apt-get; install it (`apt-get install chromium`) and run \
             the test again"
        );
    }
    assert!(Path::new(CHROMIUM).exists(), "{CHROMIUM} is still missing");
}

/// playwright-core in weir's cache folder, installed with npm when missing.
fn playwright() -> PathBuf {
    let cache = std::env::var_os("WEIR_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weir")))
        .expect("HOME or WEIR_CACHE_DIR is set");
    let dir = cache.join(format!("playwright-core-{PLAYWRIGHT_CORE}"));
    if dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return dir;
    }
    eprintln!(
        "dashboard test: installing playwright-core {PLAYWRIGHT_CORE} with npm into {}, once",
        dir.display()
    );
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix", s(&dir)])
        .arg(format!("playwright-core@{PLAYWRIGHT_CORE}"))
        // Its own browser download cannot work here, and is not needed.
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .status()
        .expect("npm runs (Node.js 18+ is needed)");
    assert!(status.success(), "npm install playwright-core failed");
    dir
}

#[test]
fn the_dashboard_shows_a_live_pipeline_and_deploys_through_its_form() {
    chromium();
    let playwright = playwright();
    let (v1, v2) = (build("counter-v1"), build("counter-v2"));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("not-a-component.wasm");
    std::fs::write(&bad, b"\0asm but not really a component").unwrap();
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            "admin = \"127.0.0.1:0\"\n\n\
             [[source]]\nname = \"ticks\"\ntype = \"stdin\"\n\n\
             [[operator]]\nid = \"counter\"\nmodule = \"{}\"\nkey_by = \"key\"\nparallelism = 2\n\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"out.jsonl\"\n\n\
             [dead_letter]\npath = \"dead-letter.jsonl\"\n",
            s(&v1)
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
    // A record without its key (a dead letter of the operator), then ticks
    // of 16 keys until the browser is done.
    let stop = Arc::new(AtomicBool::new(false));
    let mut stdin = child.stdin.take().unwrap();
    let feeder = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            stdin.write_all(b"{\"seq\":1}\n").unwrap();
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let round: String = (0..16)
                    .map(|key| format!("{{\"key\":\"k{key}\",\"seq\":{seq}}}\n"))
                    .collect();
                stdin.write_all(round.as_bytes()).unwrap();
                stdin.flush().unwrap();
                std::thread::sleep(Duration::from_millis(3));
            }
        })
    };

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&shots).unwrap();
    let browser = Command::new("node")
        .arg(repo().join("tests/e2e/dashboard.mjs"))
        .env("PLAYWRIGHT_DIR", &playwright)
        .env("DASHBOARD_URL", format!("http://{address}/"))
        .env("OPERATOR", "counter")
        .env("BAD_WASM", &bad)
        .env("GOOD_WASM", &v2)
        .env("SHOTS", &shots)
        .env("DEAD_REASON", "missing key field `key`")
        .output()
        .expect("node runs");
    // `weir status`, as a person would check it from another terminal.
    let status = run_ok(&["status", "--json", "--admin", &address.to_string()]);
    let status: Vec<OperatorStatus> = serde_json::from_slice(&status.stdout).unwrap();
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    let exit = child.wait().unwrap();
    let stderr = String::from_utf8_lossy(&browser.stderr);
    assert!(
        browser.status.success(),
        "the browser script failed:\n{stderr}\nweir: {:?}",
        log.lock().unwrap()
    );
    assert!(exit.success(), "weir run failed: {:?}", log.lock().unwrap());
    eprintln!("dashboard test: screenshots in {}", shots.display());

    let seen: serde_json::Value = serde_json::from_slice(&browser.stdout)
        .unwrap_or_else(|e| panic!("the script printed no JSON ({e}): {stderr}"));
    assert_eq!(seen["title"], "Weir dashboard", "{seen}");
    assert_eq!(seen["operators"], serde_json::json!(["counter"]), "{seen}");
    assert_eq!(
        seen["nodes"],
        serde_json::json!(["source:0", "operator:counter", "sink:0"]),
        "{seen}"
    );
    assert!(seen["rate"]["value"].as_f64().unwrap() > 0.0, "{seen}");
    assert!(
        seen["deadReasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "missing key field `key`"),
        "{seen}"
    );
    // What the page showed is what `weir status` says.
    let counter = &status[0];
    let refusal = counter
        .last_refusal
        .as_ref()
        .expect("the bad component was refused");
    assert_eq!(seen["refusal"], refusal.reason.as_str(), "{seen}");
    assert_eq!(refusal.origin, "api");
    assert_eq!(
        seen["refusedResult"],
        format!("refused: {}", refusal.reason),
        "{seen}"
    );
    assert_eq!(counter.version, 2, "{status:?}");
    assert_eq!(counter.origin, "api");
    assert_eq!(seen["version"], "v2", "{seen}");
    assert_eq!(seen["versions"], serde_json::json!(["v2", "v1"]), "{seen}");
    assert_eq!(
        seen["deployResult"].as_str().unwrap().split(" in ").next(),
        Some("version 2 replaced version 1"),
        "{seen}"
    );
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    for shot in ["dashboard-running.png", "dashboard-v2.png"] {
        assert!(shots.join(shot).metadata().unwrap().len() > 0);
    }
}
