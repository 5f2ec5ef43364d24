//! Bad pipeline files and bad components are refused before any data flows,
//! with a message that names the file, line, field or operator.

use std::path::Path;

use crate::support::{build_wasm, run_err, s};

fn pipeline_with_module(dir: &Path, module: &Path) -> std::path::PathBuf {
    let file = dir.join("pipeline.toml");
    std::fs::write(
        &file,
        format!(
            "[[source]]\ntype = \"stdin\"\n\n[[operator]]\nid = \"enrich\"\nmodule = \"{}\"\n\n\
             [[sink]]\ntype = \"stdout\"\n",
            s(module)
        ),
    )
    .unwrap();
    file
}

#[test]
fn a_file_that_is_not_wasm_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("enrich.wasm");
    std::fs::write(&module, "definitely not wasm").unwrap();
    let err = run_err(&["check", s(&pipeline_with_module(dir.path(), &module))]);
    assert!(err.contains("operator `enrich`"), "{err}");
    assert!(err.contains("not a WebAssembly file"), "{err}");
}

#[test]
fn a_core_module_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("enrich.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let err = run_err(&["check", s(&pipeline_with_module(dir.path(), &module))]);
    assert!(err.contains("operator `enrich`"), "{err}");
    assert!(
        err.contains("core WebAssembly module, not a component"),
        "{err}"
    );
}

#[test]
fn a_component_of_another_world_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let module = build_wasm("not-an-operator");
    let err = run_err(&["check", s(&pipeline_with_module(dir.path(), &module))]);
    assert!(err.contains("operator `enrich`"), "{err}");
    assert!(
        err.contains("does not export `weir:operator/operator@0.1.0`"),
        "{err}"
    );
}

#[test]
fn a_missing_module_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = run_err(&[
        "check",
        s(&pipeline_with_module(
            dir.path(),
            &dir.path().join("gone.wasm"),
        )),
    ]);
    assert!(err.contains("operator `enrich`"), "{err}");
    assert!(err.contains("gone.wasm"), "{err}");
}

#[test]
fn pipeline_errors_name_the_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.toml");
    std::fs::write(
        &file,
        "[[source]]\ntype = \"stdin\"\n\n[[operator]]\nid = \"x\"\nmodule = \"x.wasm\"\nparalelism = 2\n\n\
         [[sink]]\ntype = \"stdout\"\n",
    )
    .unwrap();
    let err = run_err(&["check", s(&file)]);
    assert!(err.contains("typo.toml"), "{err}");
    assert!(err.contains("line 4") || err.contains("line 7"), "{err}");
    assert!(err.contains("unknown field `paralelism`"), "{err}");

    std::fs::write(
        &file,
        "[[source]]\ntype = \"kafka\"\n\n[[sink]]\ntype = \"stdout\"\n",
    )
    .unwrap();
    let err = run_err(&["check", s(&file)]);
    assert!(err.contains("line 1") || err.contains("line 2"), "{err}");
    assert!(err.contains("kafka"), "{err}");
}
