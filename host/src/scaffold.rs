//! `weir new`: a new operator project in Rust, Python, JavaScript or C, with a
//! pipeline that runs it on a sample input and the output that run must give.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

use crate::builder::Language;

/// The sample input of every new project.
const INPUT: &str = r#"{"user":"  Ada ","clicks":3}
{"user":"grace","clicks":0}
{"user":"LINUS","clicks":12}
{"user":"ken","clicks":-1}
"#;

/// What the new operator makes of [`INPUT`].
const EXPECTED: &str = r#"{"user":"ada","clicks":3}
{"user":"linus","clicks":12}
"#;

const README: &str = "# {name}

A Weir operator in {language}: it normalises user names, drops events
without clicks and dead-letters events with negative clicks.

    weir run pipeline.toml                # builds operator/, runs it on input.jsonl
    diff expected.jsonl out/result.jsonl  # what the run must give
    {test}
";

const PIPELINE: &str = r#"# {name}: `weir run pipeline.toml`

[[source]]
name = "events"
type = "jsonl"
path = "input.jsonl"

[[operator]]
id = "{name}"
project = "operator"      # built on demand ({language})

[[sink]]
type = "jsonl"
path = "out/result.jsonl"

[dead_letter]
path = "out/dead-letter.jsonl"
"#;

const RUST_CARGO: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
weir-guest = { path = "{sdk}" }
serde = { version = "1", features = ["derive"] }

[dev-dependencies]
serde_json = "1"

# A project of its own, even when created inside another workspace.
[workspace]
"#;

const RUST_LIB: &str = r#"//! Normalises user names, drops events without clicks and dead-letters
//! events with negative clicks.

use serde::{Deserialize, Serialize};

/// An input event.
#[derive(Deserialize)]
pub struct Event {
    user: String,
    clicks: i64,
}

/// What the operator emits.
#[derive(Serialize)]
pub struct Clicks {
    user: String,
    clicks: i64,
}

/// `None` drops the event; `Err` sends it to the dead-letter output.
#[weir_guest::filter_map]
pub fn clicks(event: Event) -> Result<Option<Clicks>, String> {
    if event.clicks < 0 {
        return Err(format!("negative clicks: {}", event.clicks));
    }
    if event.clicks == 0 {
        return Ok(None);
    }
    Ok(Some(Clicks {
        user: event.user.trim().to_lowercase(),
        clicks: event.clicks,
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weir_guest::testing::Harness;

    #[test]
    fn normalises_drops_and_rejects() {
        let out = Harness::new(super::weir_operator()).run(&[
            json!({"user": " Ada ", "clicks": 3}),
            json!({"user": "grace", "clicks": 0}),
            json!({"user": "ken", "clicks": -1}),
        ]);
        assert_eq!(out.records("out"), vec![json!({"user": "ada", "clicks": 3})]);
        assert_eq!(out.rejected, vec![(2, "negative clicks: -1".to_owned())]);
    }
}
"#;

const PYTHON_APP: &str = r#""""Normalises user names, drops events without clicks and dead-letters
events with negative clicks."""

from weir_operator import Reject, filter_map


@filter_map
def clicks(event):
    if event["clicks"] < 0:
        raise Reject(f"negative clicks: {event['clicks']}")
    if event["clicks"] == 0:
        return None
    return {"user": event["user"].strip().lower(), "clicks": event["clicks"]}
"#;

const PYTHON_TEST: &str = r#""""The operator on plain CPython: `python3 -m unittest` in this folder,
with the Weir Python SDK on PYTHONPATH."""

import unittest

import app  # noqa: F401  (declares the operator)
from weir_operator.testing import Harness


class Clicks(unittest.TestCase):
    def test_normalises_drops_and_rejects(self):
        out = Harness().run([
            {"user": " Ada ", "clicks": 3},
            {"user": "grace", "clicks": 0},
            {"user": "ken", "clicks": -1},
        ])
        self.assertEqual(out.records(), [{"user": "ada", "clicks": 3}])
        self.assertEqual(out.rejected, [(2, "negative clicks: -1")])


if __name__ == "__main__":
    unittest.main()
"#;

const JS_APP: &str = r#"// Normalises user names, drops events without clicks and dead-letters
// events with negative clicks.

import { Reject, filterMap } from "weir-operator";

filterMap(function clicks(event) {
  if (event.clicks < 0) throw new Reject(`negative clicks: ${event.clicks}`);
  if (event.clicks === 0) return null;
  return { user: event.user.trim().toLowerCase(), clicks: event.clicks };
});
"#;

const C_APP: &str = r#"/* Normalises user names, drops events without clicks and dead-letters
 * events with negative clicks. */
#include <ctype.h>
#include <string.h>

#include "weir_operator.h"

static weir_value *clicks(weir_call *c, weir_value *event) {
    int64_t n;
    if (!weir_as_i64(weir_get(event, "clicks"), &n))
        return weir_reject(c, "field `clicks` must be an integer");
    if (n < 0) return weir_reject(c, "negative clicks: %lld", (long long)n);
    if (n == 0) return NULL; /* dropped */
    const char *user = weir_as_str(weir_get(event, "user"));
    if (!user) return weir_reject(c, "field `user` must be a string");
    while (isspace((unsigned char)*user)) user++;
    size_t len = strlen(user);
    while (len && isspace((unsigned char)user[len - 1])) len--;
    char *lower = (char *)weir_format(c, "%.*s", (int)len, user);
    for (char *p = lower; *p; p++) *p = (char)tolower((unsigned char)*p);
    weir_value *out = weir_object(c);
    weir_set_str(c, out, "user", lower);
    weir_set_int(c, out, "clicks", n);
    return out;
}
WEIR_FILTER_MAP(clicks);
"#;

/// The folder of a guest SDK in the Weir source tree `weir` was built from.
fn sdk_dir(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// Creates the project `dir` (which must not exist) in `language` and
/// returns the command that runs its unit test (for JavaScript: that
/// installs its build tool; its test is the pipeline run).
///
/// # Errors
/// When `dir` exists, its name is not a valid package name, or a file
/// cannot be written.
pub fn new_project(dir: &Path, language: Language) -> Result<String> {
    let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
        bail!("`{}` names no folder", dir.display());
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
    {
        bail!(
            "`{name}` is not a valid operator name: use lowercase letters, digits, `-` and `_`, \
             starting with a letter"
        );
    }
    if dir.exists() {
        bail!("`{}` already exists", dir.display());
    }
    let (language_name, test, files): (&str, String, Vec<(&str, String)>) = match language {
        Language::Rust => {
            let sdk = sdk_dir("guest-sdk");
            (
                "Rust",
                "cargo test --manifest-path operator/Cargo.toml".to_owned(),
                vec![
                    (
                        "operator/Cargo.toml",
                        RUST_CARGO
                            .replace("{name}", name)
                            .replace("{sdk}", &sdk.to_string_lossy()),
                    ),
                    ("operator/src/lib.rs", RUST_LIB.to_owned()),
                    ("operator/.gitignore", "/target\n".to_owned()),
                ],
            )
        }
        Language::Python => {
            let sdk = sdk_dir("guest-sdk/python");
            (
                "Python",
                format!(
                    "(cd operator && PYTHONPATH={} python3 -m unittest)",
                    sdk.display()
                ),
                vec![
                    ("operator/app.py", PYTHON_APP.to_owned()),
                    ("operator/test_app.py", PYTHON_TEST.to_owned()),
                ],
            )
        }
        Language::JavaScript => (
            "JavaScript",
            "weir toolchain install js   # componentize-js, ahead of the first build".to_owned(),
            vec![("operator/app.js", JS_APP.to_owned())],
        ),
        Language::C => (
            "C",
            "weir toolchain install c   # zig cc and wasi-libc, ahead of the first build"
                .to_owned(),
            vec![("operator/app.c", C_APP.to_owned())],
        ),
    };
    let common = [
        (
            "pipeline.toml",
            PIPELINE
                .replace("{name}", name)
                .replace("{language}", language_name),
        ),
        ("input.jsonl", INPUT.to_owned()),
        ("expected.jsonl", EXPECTED.to_owned()),
        (
            "README.md",
            README
                .replace("{name}", name)
                .replace("{language}", language_name)
                .replace("{test}", &test),
        ),
        (".gitignore", "out/\n.weir/\nnode_modules/\n".to_owned()),
    ];
    for (file, text) in common.into_iter().chain(files) {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        std::fs::write(&path, text)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    Ok(test)
}
