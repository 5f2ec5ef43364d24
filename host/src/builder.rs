//! Building Rust guest crates into components, as `spin up --build` does.
//!
//! Cargo decides what is stale (the crate, the SDK, any dependency), so a
//! fresh component costs one no-op `cargo build` (a fraction of a second).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The compilation target of operator components.
pub const GUEST_TARGET: &str = "wasm32-wasip2";

/// Builds a guest crate if cargo finds it stale and returns its `.wasm` path.
///
/// # Errors
/// When the crate has no readable `Cargo.toml`, or cargo fails; the message
/// says how to install the target when that is what is missing.
pub fn build_crate(crate_dir: &Path) -> Result<PathBuf> {
    let manifest = crate_dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read `{}`", manifest.display()))?;
    let parsed: toml::Table = toml::from_str(&text)
        .with_context(|| format!("`{}` is not valid TOML", manifest.display()))?;
    let Some(name) = parsed
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
    else {
        bail!("`{}` has no `package.name`", manifest.display());
    };
    let target_dir = target_dir(&manifest)?;
    let wasm = target_dir
        .join(GUEST_TARGET)
        .join("release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    let output = Command::new(cargo())
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            GUEST_TARGET,
            "--manifest-path",
        ])
        .arg(&manifest)
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run `cargo`: is the Rust toolchain installed?")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `std`")
        {
            bail!(
                "building `{name}` needs the `{GUEST_TARGET}` Rust target; install it with \
                 `rustup target add {GUEST_TARGET}`"
            );
        }
        bail!("building `{name}` failed:\n{stderr}");
    }
    if !wasm.exists() {
        bail!(
            "cargo built `{name}` but `{}` is missing: is its `crate-type` `cdylib`?",
            wasm.display()
        );
    }
    Ok(wasm)
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The target folder cargo uses for this manifest (a workspace's, if any).
fn target_dir(manifest: &Path) -> Result<PathBuf> {
    let output = Command::new(cargo())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
            "--manifest-path",
        ])
        .arg(manifest)
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run `cargo metadata`")?;
    if !output.status.success() {
        bail!(
            "`cargo metadata` failed for `{}`: {}",
            manifest.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("`cargo metadata` printed invalid JSON")?;
    metadata
        .get("target_directory")
        .and_then(|t| t.as_str())
        .map(PathBuf::from)
        .context("`cargo metadata` gave no target directory")
}
