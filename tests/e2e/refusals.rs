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
        "[[source]]\ntype = \"kafak\"\n\n[[sink]]\ntype = \"stdout\"\n",
    )
    .unwrap();
    let err = run_err(&["check", s(&file)]);
    assert!(err.contains("line 1") || err.contains("line 2"), "{err}");
    assert!(err.contains("kafak"), "{err}");
    assert!(err.contains("kafka"), "the known types are listed: {err}");
}

#[test]
fn a_component_of_another_version_of_the_wit_package_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let operator =
        weir::builder::build_crate(&crate::support::repo().join("tests/fixtures/hostile")).unwrap();
    // The same component, its imports and exports renamed to version 0.2.0
    // of the package (names of the same length: the binary stays valid).
    let mut bytes = std::fs::read(operator).unwrap();
    let (from, to) = (b"weir:operator/", b"@0.1.0");
    let mut renamed = 0;
    let mut at = 0;
    while let Some(offset) = bytes[at..].windows(from.len()).position(|w| w == from) {
        let start = at + offset;
        let end = start + bytes[start..].iter().position(|&b| b == b'@').unwrap();
        if bytes[end..].starts_with(to) {
            bytes[end..end + to.len()].copy_from_slice(b"@0.2.0");
            renamed += 1;
        }
        at = end;
    }
    assert!(renamed >= 3, "renamed {renamed} names");
    let module = dir.path().join("v0.2.wasm");
    std::fs::write(&module, bytes).unwrap();
    let err = run_err(&["check", s(&pipeline_with_module(dir.path(), &module))]);
    assert!(err.contains("operator `enrich`"), "{err}");
    assert!(
        err.contains("does not export `weir:operator/operator@0.1.0`"),
        "{err}"
    );
}
