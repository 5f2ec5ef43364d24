//! The build tools of operator languages, installed by `weir` itself on first
//! use into its cache folder, so a fresh machine needs only Rust, Python 3
//! and Node.js: cargo-component adds its Rust target the same way.
//!
//! - Rust: the `wasm32-wasip2` target, added with `rustup target add`.
//! - Python: componentize-py, in a private virtual environment, with pip.
//! - JavaScript: componentize-js, with npm, from a lock file `weir` carries.
//! - C: clang and wasi-libc as Zig ships them in the `ziglang` package on
//!   PyPI (`zig cc`), in a private virtual environment: no root, no apt.
//!
//! Each tool lives in `toolchains/NAME-VERSION` under the cache folder and
//! counts as installed once its `.installed` marker is written. A file lock
//! makes parallel `weir` processes (tests, CI) install it once; an install
//! cut short is started over. `$WEIR_COMPONENTIZE_PY`, `$WEIR_COMPONENTIZE_JS`
//! and `$WEIR_CLANG` name a tool of the user's own instead.

use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The compilation target of Rust operator components.
pub const RUST_TARGET: &str = "wasm32-wasip2";

/// The componentize-py release Python operators are built with (from PyPI).
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// The componentize-js release JavaScript operators are built with (from
/// npm); `componentize-js/package-lock.json` pins the rest of its tree.
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// The `ziglang` release from PyPI whose `zig cc` builds C operators.
pub const ZIG_VERSION: &str = "0.15.2";

/// What `weir` installs componentize-js from: a package with the exact tree
/// the operator builds were tested with.
const COMPONENTIZE_JS_PACKAGE: [(&str, &str); 2] = [
    ("package.json", include_str!("componentize-js/package.json")),
    (
        "package-lock.json",
        include_str!("componentize-js/package-lock.json"),
    ),
];

/// The languages whose tools `weir toolchain install` sets up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toolchain {
    /// The `wasm32-wasip2` target of the Rust toolchain in use.
    Rust,
    /// componentize-py.
    Python,
    /// componentize-js.
    JavaScript,
    /// `zig cc` with wasi-libc.
    C,
}

impl Toolchain {
    /// Every toolchain, in the order `weir toolchain install` sets them up.
    pub const ALL: [Toolchain; 4] = [
        Toolchain::Rust,
        Toolchain::Python,
        Toolchain::JavaScript,
        Toolchain::C,
    ];

    /// Installs this toolchain unless it is there already, and says where it is.
    ///
    /// # Errors
    /// When the installer (rustup, python3 with venv and pip, npm) is missing
    /// or fails; the message names what is missing.
    pub fn install(self) -> Result<String> {
        match self {
            Toolchain::Rust => {
                let cwd = std::env::current_dir().context("no current folder")?;
                rust_target(&cwd)?;
                Ok(format!(
                    "Rust: the `{RUST_TARGET}` target of {}",
                    rust_sysroot(&cwd)?.display()
                ))
            }
            Toolchain::Python => Ok(format!("Python: {}", componentize_py()?.describe())),
            Toolchain::JavaScript => Ok(format!("JavaScript: {}", componentize_js()?.describe())),
            Toolchain::C => Ok(format!("C: {}", c_compiler()?.describe())),
        }
    }
}

/// A build tool: a program, the arguments that come before the build's own,
/// and its environment.
pub struct Tool {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(&'static str, OsString)>,
    /// The environment variable that chose the program, if one did.
    chosen_by: Option<&'static str>,
}

impl Tool {
    /// A command running the tool, ready for the build's own arguments.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// The error for a tool that could not be started at all.
    pub fn not_runnable(&self, what: &str) -> anyhow::Error {
        match self.chosen_by {
            Some(var) => anyhow::anyhow!(
                "{what}: `${var}` names `{}`, which does not work here; unset it to use the one \
                 weir installs",
                self.program.to_string_lossy()
            ),
            None => anyhow::anyhow!(
                "{what}: `{}` cannot be run; remove `{}` and run `weir toolchain install` again",
                self.program.to_string_lossy(),
                toolchains_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default()
            ),
        }
    }

    /// What a build fingerprint records of the tool: `pinned` (the release
    /// `weir` installs), or the program a variable chose instead.
    pub fn pin(&self, pinned: &str) -> String {
        match self.chosen_by {
            Some(var) => format!("${var}={}", self.program.to_string_lossy()),
            None => pinned.to_owned(),
        }
    }

    fn describe(&self) -> String {
        let mut text = self.program.to_string_lossy().into_owned();
        for arg in &self.args {
            text.push(' ');
            text.push_str(&arg.to_string_lossy());
        }
        match self.chosen_by {
            Some(var) => format!("{text} (from ${var})"),
            None => text,
        }
    }

    /// The program at `program`, with no arguments or environment of its own.
    fn at(program: impl Into<OsString>) -> Tool {
        Tool {
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            chosen_by: None,
        }
    }

    fn from_env(var: &'static str) -> Option<Tool> {
        std::env::var_os(var).map(|program| Tool {
            chosen_by: Some(var),
            ..Tool::at(program)
        })
    }
}

/// componentize-py: `$WEIR_COMPONENTIZE_PY`, else the one `weir` installs.
///
/// # Errors
/// When it is not installed and cannot be (no `python3`, no venv, pip fails).
pub fn componentize_py() -> Result<Tool> {
    if let Some(tool) = Tool::from_env("WEIR_COMPONENTIZE_PY") {
        return Ok(tool);
    }
    let what = format!("componentize-py {COMPONENTIZE_PY_VERSION}");
    let dir = provisioned(
        &format!("componentize-py-{COMPONENTIZE_PY_VERSION}"),
        &what,
        |dir| python_venv(dir, &format!("componentize-py=={COMPONENTIZE_PY_VERSION}")),
    )?;
    Ok(Tool::at(dir.join("bin").join("componentize-py")))
}

/// componentize-js: `$WEIR_COMPONENTIZE_JS`, else the one `weir` installs.
///
/// # Errors
/// When it is not installed and cannot be (no `npm`, or `npm ci` fails).
pub fn componentize_js() -> Result<Tool> {
    if let Some(tool) = Tool::from_env("WEIR_COMPONENTIZE_JS") {
        return Ok(tool);
    }
    let what = format!("componentize-js {COMPONENTIZE_JS_VERSION}");
    let dir = provisioned(
        &format!("componentize-js-{COMPONENTIZE_JS_VERSION}"),
        &what,
        |dir| {
            for (name, text) in COMPONENTIZE_JS_PACKAGE {
                let path = dir.join(name);
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write `{}`", path.display()))?;
            }
            let mut npm = Command::new("npm");
            npm.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(dir);
            run_installer(npm, "to install it (Node.js 18 or later)")
        },
    )?;
    Ok(Tool::at(
        dir.join("node_modules")
            .join(".bin")
            .join("componentize-js"),
    ))
}

/// The C compiler: `$WEIR_CLANG` (a clang with a `wasm32-wasi` sysroot),
/// else `zig cc` from the `ziglang` package `weir` installs. Installing it
/// also builds Zig's wasi-libc once, so the first operator build is fast.
///
/// # Errors
/// When it is not installed and cannot be (no `python3`, no venv, pip fails).
pub fn c_compiler() -> Result<Tool> {
    if let Some(tool) = Tool::from_env("WEIR_CLANG") {
        return Ok(tool);
    }
    let what = format!("zig {ZIG_VERSION} (clang and wasi-libc)");
    let dir = provisioned(&format!("zig-{ZIG_VERSION}"), &what, |dir| {
        python_venv(dir, &format!("ziglang=={ZIG_VERSION}"))?;
        let probe = dir.join("probe.c");
        std::fs::write(
            &probe,
            "#include <stdlib.h>\nvoid *probe(size_t n) { return malloc(n); }\n",
        )
        .with_context(|| format!("cannot write `{}`", probe.display()))?;
        let mut cc = zig_cc(dir).command();
        cc.args(["--target=wasm32-wasi", "-mexec-model=reactor", "-O2"])
            .arg(&probe)
            .arg("-o")
            .arg(dir.join("probe.wasm"));
        run_installer(cc, "to build wasi-libc")
    })?;
    Ok(zig_cc(&dir))
}

fn zig_cc(dir: &Path) -> Tool {
    Tool {
        args: ["-m", "ziglang", "cc"].map(OsString::from).to_vec(),
        // Zig's compiled wasi-libc and objects stay in the cache folder too.
        envs: vec![("ZIG_GLOBAL_CACHE_DIR", dir.join("zig-cache").into())],
        ..Tool::at(dir.join("bin").join("python3"))
    }
}

/// Adds the `wasm32-wasip2` target to the Rust toolchain that builds in
/// `crate_dir`, with rustup, unless it is there.
///
/// # Errors
/// When `rustc` cannot be run, or the target is missing and rustup is
/// absent or fails.
pub fn rust_target(crate_dir: &Path) -> Result<PathBuf> {
    let sysroot = rust_sysroot(crate_dir)?;
    let has_target = || {
        sysroot
            .join("lib")
            .join("rustlib")
            .join(RUST_TARGET)
            .join("lib")
            .is_dir()
    };
    if has_target() {
        return Ok(sysroot);
    }
    let _lock = lock(&toolchains_dir()?, &format!("rust-target-{RUST_TARGET}"))?;
    if has_target() {
        return Ok(sysroot);
    }
    eprintln!(
        "weir: adding the Rust target `{RUST_TARGET}` (`rustup target add {RUST_TARGET}`), once"
    );
    let start = Instant::now();
    let mut rustup = Command::new("rustup");
    rustup
        .args(["target", "add", RUST_TARGET])
        .current_dir(crate_dir);
    run_installer(
        rustup,
        "to add it (or add the target to your Rust toolchain yourself)",
    )
    .with_context(|| format!("cannot add the Rust target `{RUST_TARGET}`"))?;
    eprintln!(
        "weir: added `{RUST_TARGET}` in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(sysroot)
}

/// The sysroot of the `rustc` that builds in `dir` (rustup picks it from the
/// folder's toolchain file, if any).
fn rust_sysroot(dir: &Path) -> Result<PathBuf> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("cannot run `rustc`: is the Rust toolchain installed?")?;
    if !output.status.success() {
        bail!(
            "`rustc --print sysroot` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim(),
    ))
}

/// `toolchains/` in the cache folder.
fn toolchains_dir() -> Result<PathBuf> {
    crate::wasm::cache::default_dir()
        .map(|dir| dir.join("toolchains"))
        .context("no cache folder for build tools: set `WEIR_CACHE_DIR` (or `HOME`)")
}

/// Holds `root/NAME.lock` until dropped, waiting for another process that
/// holds it.
fn lock(dir: &Path, name: &str) -> Result<std::fs::File> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let path = dir.join(format!("{name}.lock"));
    let file = std::fs::File::create(&path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    file.lock()
        .with_context(|| format!("cannot lock `{}`", path.display()))?;
    Ok(file)
}

/// `toolchains/NAME`, installed by `install(folder)` unless its `.installed`
/// marker says an earlier install finished.
fn provisioned(
    name: &str,
    what: &str,
    install: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    provisioned_in(&toolchains_dir()?, name, what, install)
}

/// [`provisioned`], under `root` rather than the cache folder.
fn provisioned_in(
    root: &Path,
    name: &str,
    what: &str,
    install: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let dir = root.join(name);
    let marker = dir.join(".installed");
    if marker.is_file() {
        return Ok(dir);
    }
    let _lock = lock(root, name)?;
    if marker.is_file() {
        return Ok(dir);
    }
    eprintln!(
        "weir: installing {what} into `{}`, once (`weir toolchain install` does it ahead of time)",
        dir.display()
    );
    let start = Instant::now();
    // What an interrupted install left is not trusted.
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove `{}`", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    install(&dir).with_context(|| format!("cannot install {what}"))?;
    std::fs::write(&marker, what)
        .with_context(|| format!("cannot write `{}`", marker.display()))?;
    eprintln!(
        "weir: installed {what} in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(dir)
}

/// A virtual environment at `dir` with `requirement` installed by its pip.
fn python_venv(dir: &Path, requirement: &str) -> Result<()> {
    let mut venv = Command::new("python3");
    venv.args(["-m", "venv"]).arg(dir);
    run_installer(
        venv,
        "to make a private virtual environment (Python 3 with `venv`; Debian: python3-venv)",
    )?;
    let mut pip = Command::new(dir.join("bin").join("python3"));
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        requirement,
    ]);
    run_installer(pip, "to run pip")
}

/// Runs an install step, keeping its output for the error; `needed_for`
/// says why the program must be on the machine when it cannot be started.
fn run_installer(mut cmd: Command, needed_for: &str) -> Result<()> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let output = match cmd.stdin(Stdio::null()).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("`{program}` is not on the PATH; it is needed {needed_for}")
        }
        Err(e) => return Err(e).with_context(|| format!("cannot run `{program}`")),
    };
    if !output.status.success() {
        bail!(
            "`{program}` failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_tool(dir: &Path) -> Result<()> {
        std::fs::write(dir.join("tool"), "new")?;
        Ok(())
    }

    #[test]
    fn an_install_cut_short_is_started_over_and_a_failed_one_is_not_kept() {
        let root = tempfile::tempdir().unwrap();
        // What a killed install left: files, but no marker.
        let dir = root.path().join("tool-1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("half-written"), "old").unwrap();
        let failed = provisioned_in(root.path(), "tool-1", "tool 1", |_| bail!("no network"));
        assert_eq!(
            format!("{:#}", failed.unwrap_err()),
            "cannot install tool 1: no network"
        );
        assert!(!dir.join(".installed").exists());
        let installed = provisioned_in(root.path(), "tool-1", "tool 1", write_tool).unwrap();
        assert_eq!(installed, dir);
        assert!(
            !dir.join("half-written").exists(),
            "the old files were kept"
        );
        assert_eq!(std::fs::read_to_string(dir.join("tool")).unwrap(), "new");
        // Installed: the next call does not install again.
        let again = provisioned_in(root.path(), "tool-1", "tool 1", |_| {
            bail!("installed twice")
        });
        assert_eq!(again.unwrap(), dir);
    }
}
