//! `weir new`: each language's new project builds, runs its sample pipeline
//! to the expected output, and passes its own unit test.

use std::path::Path;
use std::process::Command;

use crate::support::{repo, run_err, run_ok, s, weir};

/// Creates `name` in `dir` with `weir new` and runs its pipeline, the way its
/// README says; returns the project folder.
fn new_and_run(dir: &Path, name: &str, lang: &str, env: &[(&str, &str)]) -> std::path::PathBuf {
    let project = dir.join(name);
    let out = run_ok(&["new", s(&project), "--lang", lang]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("weir run pipeline.toml"));
    let output = weir()
        .args(["run", "pipeline.toml"])
        .current_dir(&project)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{lang}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(project.join("out/result.jsonl")).unwrap(),
        std::fs::read_to_string(project.join("expected.jsonl")).unwrap(),
        "{lang}"
    );
    let dead = std::fs::read_to_string(project.join("out/dead-letter.jsonl")).unwrap();
    assert!(
        dead.contains(r#""reason":"negative clicks: -1""#),
        "{lang}: {dead}"
    );
    project
}

#[test]
fn new_python_project_runs_and_passes_its_test() {
    let dir = tempfile::tempdir().unwrap();
    let project = new_and_run(dir.path(), "clicks-py", "python", &[]);
    let test = Command::new("python3")
        .args(["-m", "unittest"])
        .current_dir(project.join("operator"))
        .env("PYTHONPATH", repo().join("guest-sdk/python"))
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "{}",
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(String::from_utf8_lossy(&test.stderr).contains("Ran 1 test"));
}

#[test]
fn new_javascript_project_runs() {
    let dir = tempfile::tempdir().unwrap();
    new_and_run(dir.path(), "clicks-js", "js", &[]);
}

#[test]
fn new_c_project_runs() {
    let dir = tempfile::tempdir().unwrap();
    new_and_run(dir.path(), "clicks-c", "c", &[]);
}

#[test]
fn new_rust_project_runs_and_passes_its_test() {
    let dir = tempfile::tempdir().unwrap();
    // The workspace's target folder, so the dependencies are not built again.
    let target = repo().join("target");
    let project = new_and_run(
        dir.path(),
        "clicks",
        "rust",
        &[("CARGO_TARGET_DIR", s(&target))],
    );
    let test = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "test",
            "--release",
            "--manifest-path",
            "operator/Cargo.toml",
        ])
        .current_dir(&project)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&test.stdout);
    assert!(
        test.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(
        stdout.contains("test tests::normalises_drops_and_rejects ... ok"),
        "{stdout}"
    );
}

#[test]
fn new_refuses_an_existing_folder_and_a_bad_name() {
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("taken");
    std::fs::create_dir(&existing).unwrap();
    let err = run_err(&["new", s(&existing), "--lang", "python"]);
    assert!(err.contains("already exists"), "{err}");
    let err = run_err(&["new", s(&dir.path().join("Bad Name")), "--lang", "js"]);
    assert!(err.contains("is not a valid operator name"), "{err}");
}
