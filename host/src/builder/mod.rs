//! Building operator projects into components: Rust crates with cargo, as
//! `spin up --build` does; Python apps with componentize-py, JavaScript
//! modules with componentize-js, and C files with clang and wasi-libc, each
//! with the SDK and WIT that `weir` carries. The tools come from
//! [`crate::toolchain`], which installs them on first use.
//!
//! Cargo decides what is stale (the crate, the SDK, any dependency). A
//! record of each build ([`fresh`]) lets a run of an unchanged crate skip
//! even cargo's no-op check.

mod fresh;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::toolchain::{
    COMPONENTIZE_JS_VERSION, COMPONENTIZE_PY_VERSION, RUST_TARGET as GUEST_TARGET, ZIG_VERSION,
};

/// How operator crates are optimized, whatever their own release profile
/// says: whole-program (fat LTO, one codegen unit), so the SDK's record
/// reading and writing inlines into the operator. Fewer calls also means
/// fewer of the epoch checks wasmtime puts at every function entry. A `weir
/// run` of 4 M Nexmark q1 events on one core: 5.2 -> 5.9 M events/s.
/// Rebuilding the q1 crate after an edit took 1.16 s instead of 0.88 s.
const GUEST_PROFILE: [&str; 4] = [
    "--config",
    "profile.release.lto=true",
    "--config",
    "profile.release.codegen-units=1",
];

/// Builds a guest crate if cargo finds it stale and returns its `.wasm` path.
///
/// Adds the `wasm32-wasip2` target first when the toolchain lacks it.
///
/// # Errors
/// When the crate has no readable `Cargo.toml`, the target cannot be added,
/// or cargo fails.
pub fn build_crate(crate_dir: &Path) -> Result<PathBuf> {
    if let Some(wasm) = fresh::fresh_component(crate_dir) {
        return Ok(wasm);
    }
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
    let sysroot = crate::toolchain::rust_target(crate_dir)?;
    let (target_dir, workspace) = target_and_workspace(&manifest)?;
    let wasm = target_dir
        .join(GUEST_TARGET)
        .join("release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    let output = Command::new(cargo())
        .args(["build", "--release", "--quiet", "--target", GUEST_TARGET])
        .args(GUEST_PROFILE)
        .arg("--manifest-path")
        .arg(&manifest)
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run `cargo`: is the Rust toolchain installed?")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("building `{name}` failed:\n{stderr}");
    }
    if !wasm.exists() {
        bail!(
            "cargo built `{name}` but `{}` is missing: is its `crate-type` `cdylib`?",
            wasm.display()
        );
    }
    fresh::record_build(crate_dir, &wasm, &sysroot, &workspace);
    Ok(wasm)
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The target folder cargo uses for this manifest (a workspace's, if any),
/// and the workspace's root folder.
fn target_and_workspace(manifest: &Path) -> Result<(PathBuf, PathBuf)> {
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
    let folder = |key: &str| {
        metadata
            .get(key)
            .and_then(|t| t.as_str())
            .map(PathBuf::from)
            .with_context(|| format!("`cargo metadata` gave no `{key}`"))
    };
    Ok((folder("target_directory")?, folder("workspace_root")?))
}

/// The language of an operator project folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// A Rust crate (`Cargo.toml`), built by cargo.
    Rust,
    /// A Python app (`app.py`, maybe with a `pyproject.toml`), built by componentize-py.
    Python,
    /// A JavaScript module (`app.js` with a `package.json`), built by componentize-js.
    JavaScript,
    /// C files (`app.c`), built by clang (`zig cc`) with wasi-libc into a
    /// core module that `weir` makes a component.
    C,
}

impl Language {
    /// The language of the project in `dir`, from the files it holds.
    ///
    /// # Errors
    /// When `dir` holds none of `Cargo.toml`, `app.py`, `pyproject.toml`,
    /// `package.json`, `app.js`, `app.c`.
    pub fn of(dir: &Path) -> Result<Language> {
        if dir.join("Cargo.toml").is_file() {
            Ok(Language::Rust)
        } else if dir.join("app.py").is_file() || dir.join("pyproject.toml").is_file() {
            Ok(Language::Python)
        } else if dir.join("package.json").is_file() || dir.join("app.js").is_file() {
            Ok(Language::JavaScript)
        } else if dir.join("app.c").is_file() {
            Ok(Language::C)
        } else {
            bail!(
                "`{}` is not an operator project: it has no `Cargo.toml` (Rust), `app.py` \
                 (Python), `package.json` (JavaScript) or `app.c` (C)",
                dir.display()
            )
        }
    }
}

/// Builds the operator project in `dir`, in whatever language it is written,
/// if it changed since its last build, and returns its component file.
///
/// # Errors
/// When the folder is no operator project, its build tool is missing and
/// cannot be installed (the message names what is missing) or the build fails.
pub fn build_operator(dir: &Path) -> Result<PathBuf> {
    match Language::of(dir)? {
        Language::Rust => build_crate(dir),
        Language::Python => build_python(dir),
        Language::JavaScript => build_js(dir),
        Language::C => build_c(dir),
    }
}

/// The WIT package, written beside a Python or JavaScript build.
const WIT_FILES: [(&str, &str); 4] = [
    ("host.wit", include_str!("../../../wit/host.wit")),
    ("operator.wit", include_str!("../../../wit/operator.wit")),
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("world.wit", include_str!("../../../wit/world.wit")),
];

/// The Python SDK, compiled into `weir` so a build needs no checkout.
const PYTHON_SDK: [(&str, &str); 5] = [
    (
        "weir_operator/__init__.py",
        include_str!("../../../guest-sdk/python/weir_operator/__init__.py"),
    ),
    (
        "weir_operator/_columns.py",
        include_str!("../../../guest-sdk/python/weir_operator/_columns.py"),
    ),
    (
        "weir_operator/_runtime.py",
        include_str!("../../../guest-sdk/python/weir_operator/_runtime.py"),
    ),
    (
        "weir_operator/testing.py",
        include_str!("../../../guest-sdk/python/weir_operator/testing.py"),
    ),
    (
        "weir_operator/_component.py",
        include_str!("../../../guest-sdk/python/weir_operator/_component.py"),
    ),
];

/// The module componentize-py starts from: the app declares its operator,
/// the SDK exports it.
const PYTHON_ENTRY: &str = "import app  # noqa: F401  (declares the operator)\n\
     from weir_operator._component import Operator  # noqa: F401\n";

/// The JavaScript SDK, compiled into `weir` like the Python one.
const JS_SDK: [(&str, &str); 1] = [(
    "weir-operator.js",
    include_str!("../../../guest-sdk/js/weir-operator.js"),
)];

/// Where a Python or JavaScript build writes its files, inside the project.
pub const BUILD_DIR: &str = ".weir";

/// The WIT files `weir` carries, then `sdk`: what a Python or JavaScript
/// build writes into its build folder before the project's own sources.
fn wit_files_and(sdk: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    WIT_FILES
        .iter()
        .map(|(name, text)| (wit_name(name).to_owned(), (*text).to_owned()))
        .chain(sdk)
        .collect()
}

fn build_python(dir: &Path) -> Result<PathBuf> {
    if !dir.join("app.py").is_file() {
        bail!(
            "`{}` has no `app.py`: a Python operator declares its function there",
            dir.display()
        );
    }
    let mut files = wit_files_and(
        PYTHON_SDK
            .iter()
            .map(|(n, t)| (format!("py/{n}"), (*t).to_owned())),
    );
    files.push(("py/weir_entry.py".to_owned(), PYTHON_ENTRY.to_owned()));
    // componentize-py reads one folder tree: the app's modules are copied
    // beside the SDK and the entry module.
    files.extend(project_sources(dir, &["py"], "py", |text, _| text)?);
    let tool = crate::toolchain::componentize_py()?;
    build_with_tool(
        dir,
        &files,
        &tool.pin(&format!("componentize-py {COMPONENTIZE_PY_VERSION}")),
        |build, out| {
            let mut cmd = tool.command();
            cmd.arg("-d")
                .arg(build.join("wit"))
                .args(["-w", "operator-component", "componentize", "-p"])
                .arg(build.join("py"))
                .arg("weir_entry")
                .arg("-o")
                .arg(out);
            cmd
        },
        &tool.not_runnable("building Python operators needs componentize-py"),
    )
}

/// The project's files with one of `extensions`, as `(into/RELATIVE, text)`,
/// each passed through `transform(text, depth)` (`depth`: folders between
/// the file and `into`, plus one).
fn project_sources(
    dir: &Path,
    extensions: &[&str],
    into: &str,
    transform: impl Fn(String, usize) -> String,
) -> Result<Vec<(String, String)>> {
    let mut sources = Vec::new();
    collect_sources(dir, &mut sources)?;
    let mut out = Vec::new();
    for path in sources {
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        if !extensions.contains(&ext) {
            continue;
        }
        let relative = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        let depth = relative.components().count();
        out.push((
            format!("{into}/{}", relative.to_string_lossy()),
            transform(text, depth),
        ));
    }
    Ok(out)
}

fn build_js(dir: &Path) -> Result<PathBuf> {
    if !dir.join("app.js").is_file() {
        bail!(
            "`{}` has no `app.js`: a JavaScript operator declares its function there",
            dir.display()
        );
    }
    let mut files = wit_files_and(
        JS_SDK
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned())),
    );
    files.push(("src/__weir_entry.js".to_owned(), JS_ENTRY.to_owned()));
    // componentize-js resolves relative imports only, so the project's
    // modules are copied under `.weir/src/` with `"weir-operator"` pointing
    // at the SDK file.
    files.extend(project_sources(
        dir,
        &["js", "mjs"],
        "src",
        |text, depth| {
            let up = "../".repeat(depth);
            text.replace("\"weir-operator\"", &format!("\"{up}weir-operator.js\""))
                .replace("'weir-operator'", &format!("'{up}weir-operator.js'"))
        },
    )?);
    let tool = crate::toolchain::componentize_js()?;
    build_with_tool(
        dir,
        &files,
        &tool.pin(&format!("componentize-js {COMPONENTIZE_JS_VERSION}")),
        |build, out| {
            let mut cmd = tool.command();
            // The operator needs no WASI HTTP: leaving it out keeps the
            // component linkable by the sandbox, which offers none.
            cmd.arg(build.join("src").join("__weir_entry.js"))
                .arg("--wit")
                .arg(build.join("wit"))
                .args([
                    "-n",
                    "operator-component",
                    "-d",
                    "http",
                    "-d",
                    "fetch-event",
                ])
                .arg("-o")
                .arg(out);
            cmd
        },
        &tool.not_runnable("building JavaScript operators needs componentize-js"),
    )
}

/// The module componentize-js starts from: the app declares its operator,
/// the SDK exports it.
const JS_ENTRY: &str = "import \"./app.js\";\nexport { operator } from \"../weir-operator.js\";\n";

/// The C SDK and the JSON library it reads and builds records with,
/// compiled into `weir` like the Python and JavaScript ones.
const C_SDK: [(&str, &str); 5] = [
    (
        "sdk/weir_operator.h",
        include_str!("../../../guest-sdk/c/weir_operator.h"),
    ),
    (
        "sdk/weir_operator.c",
        include_str!("../../../guest-sdk/c/weir_operator.c"),
    ),
    (
        "sdk/yyjson.h",
        include_str!("../../../guest-sdk/c/vendor/yyjson.h"),
    ),
    (
        "sdk/yyjson.c",
        include_str!("../../../guest-sdk/c/vendor/yyjson.c"),
    ),
    (
        "sdk/yyjson-LICENSE",
        include_str!("../../../guest-sdk/c/vendor/yyjson-LICENSE"),
    ),
];

/// What clang prints when a part of the toolchain rather than the project
/// is missing: wasi-libc's headers or start files, the linker, the builtins
/// (only a `$WEIR_CLANG` of the user's can lack them).
const C_TOOLCHAIN_MISSING: [&str; 5] = [
    "'stdlib.h' file not found",
    "crt1-reactor.o",
    "\"wasm-ld\" doesn't exist",
    "libclang_rt.builtins-wasm32.a",
    "unable to create target",
];

/// The parts of the yyjson library the SDK does not use (it writes JSON
/// itself, in serde_json's form), left out to halve the compile time.
const YYJSON_TRIM: [&str; 3] = [
    "-DYYJSON_DISABLE_WRITER=1",
    "-DYYJSON_DISABLE_UTILS=1",
    "-DYYJSON_DISABLE_INCR_READER=1",
];

/// The `weir:operator` package, resolved, and its `operator-component` world.
fn operator_world() -> Result<(wit_parser::Resolve, wit_parser::WorldId)> {
    let mut map = wit_parser::SourceMap::new();
    for (name, text) in WIT_FILES {
        map.push_str(name, text);
    }
    let group = map
        .parse()
        .map_err(|(_, e)| anyhow::anyhow!("the WIT package `weir:operator` is invalid: {e}"))?;
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve
        .push_group(group)
        .map_err(|e| anyhow::anyhow!("the WIT package `weir:operator` is invalid: {e}"))?;
    let world = resolve.select_world(&[package], Some("operator-component"))?;
    Ok((resolve, world))
}

/// The C bindings of the operator world, generated by wit-bindgen's C
/// generator in-process so a C build needs no `wit-bindgen` CLI.
fn c_bindings(
    resolve: &wit_parser::Resolve,
    world: wit_parser::WorldId,
) -> Result<Vec<(String, String)>> {
    let opts = wit_bindgen_c::Opts {
        // The component type is embedded after linking, with the same
        // `Resolve`, rather than linked in from an object file.
        no_object_file: true,
        ..Default::default()
    };
    let mut files = wit_bindgen_core::Files::default();
    let mut resolve = resolve.clone();
    opts.build()
        .generate(&mut resolve, world, &mut files)
        .context("cannot generate the C bindings of `weir:operator`")?;
    files
        .iter()
        .map(|(name, bytes)| {
            let text = String::from_utf8(bytes.to_vec())
                .with_context(|| format!("the generated `{name}` is not UTF-8"))?;
            Ok((format!("gen/{name}"), text))
        })
        .collect()
}

/// Makes the clang-built core module at `core` a component at `out`: the
/// world's type goes into a custom section, then the encoder lifts the
/// exports and adapts the module's WASI preview1 imports to preview2 with
/// the adapter of the wasmtime release the host runs.
fn c_component(
    resolve: &wit_parser::Resolve,
    world: wit_parser::WorldId,
    core: &Path,
    out: &Path,
) -> Result<()> {
    let mut module =
        std::fs::read(core).with_context(|| format!("cannot read `{}`", core.display()))?;
    wit_component::embed_component_metadata(
        &mut module,
        resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)?
        .adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .validate(true)
        .encode()?;
    std::fs::write(out, component).with_context(|| format!("cannot write `{}`", out.display()))
}

fn build_c(dir: &Path) -> Result<PathBuf> {
    let (resolve, world) = operator_world()?;
    let mut files = c_bindings(&resolve, world)?;
    files.extend(
        C_SDK
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned())),
    );
    // The project's own files are compiled where they are, so clang's
    // messages name the user's paths; only the SDK and bindings are staged.
    let project =
        std::path::absolute(dir).with_context(|| format!("cannot resolve `{}`", dir.display()))?;
    let sources: Vec<PathBuf> = project_sources(dir, &["c"], "", |text, _| text)?
        .into_iter()
        .map(|(name, _)| project.join(name.trim_start_matches('/')))
        .collect();
    let staged: Vec<String> = files
        .iter()
        .map(|(name, _)| name)
        .filter(|name| name.ends_with(".c"))
        .cloned()
        .collect();
    let finish =
        |stage: &Path, out: &Path| c_component(&resolve, world, &stage.join("core.wasm"), out);
    let tool = crate::toolchain::c_compiler()?;
    let missing = tool.not_runnable(
        "building C operators needs clang with a wasm32-wasi sysroot (wasi-libc), its linker \
         and builtins",
    );
    build_staged(
        dir,
        &files,
        &format!(
            "{} wasm32-wasi, wit-bindgen-c 0.61.1, wit-component 0.258.3, adapter 48.0.8",
            tool.pin(&format!("zig {ZIG_VERSION}"))
        ),
        |build, _out| {
            let mut cmd = tool.command();
            // A reactor: no `main`, the exports are called many times.
            cmd.args([
                "--target=wasm32-wasi",
                "-mexec-model=reactor",
                "-std=c11",
                "-O2",
                "-Wall",
            ])
            .args(YYJSON_TRIM)
            .arg("-I")
            .arg(build.join("gen"))
            .arg("-I")
            .arg(build.join("sdk"))
            .arg("-I")
            .arg(&project)
            .args(staged.iter().map(|name| build.join(name)))
            .args(&sources)
            .arg("-Wl,--strip-debug")
            .arg("-o")
            .arg(build.join("core.wasm"));
            cmd
        },
        ToolChecks {
            missing_tool: &missing,
            missing_markers: &C_TOOLCHAIN_MISSING,
            finish: Some(&finish),
        },
    )
}

/// `wit/NAME`, as a static string.
fn wit_name(name: &str) -> &'static str {
    match name {
        "host.wit" => "wit/host.wit",
        "operator.wit" => "wit/operator.wit",
        "types.wit" => "wit/types.wit",
        _ => "wit/world.wit",
    }
}

/// Writes `files` under `dir/.weir`, and runs the build `command(build_dir,
/// out)` unless the project, the SDK and the tool are what the last build used.
fn build_with_tool(
    dir: &Path,
    files: &[(String, String)],
    tool_pin: &str,
    command: impl FnOnce(&Path, &Path) -> Command,
    missing_tool: &anyhow::Error,
) -> Result<PathBuf> {
    build_staged(dir, files, tool_pin, command, ToolChecks::new(missing_tool))
}

/// A build's last step: makes the component at the second path from what
/// the tool left in the stage folder (the first path).
type FinishStep<'a> = &'a dyn Fn(&Path, &Path) -> Result<()>;

/// How a build tells a missing toolchain from a failed build, and what it
/// does after the tool ran.
struct ToolChecks<'a> {
    /// The one-line error for a tool that cannot be run.
    missing_tool: &'a anyhow::Error,
    /// Texts of the tool's output that mean a part of the toolchain (a
    /// library, a linker) is missing rather than the project being wrong.
    missing_markers: &'a [&'a str],
    /// Runs after the tool succeeded, with the stage folder and the path the
    /// component must end up at.
    finish: Option<FinishStep<'a>>,
}

impl<'a> ToolChecks<'a> {
    fn new(missing_tool: &'a anyhow::Error) -> Self {
        ToolChecks {
            missing_tool,
            missing_markers: &[],
            finish: None,
        }
    }
}

/// [`build_with_tool`], with checks and a last step of the caller's.
fn build_staged(
    dir: &Path,
    files: &[(String, String)],
    tool_pin: &str,
    command: impl FnOnce(&Path, &Path) -> Command,
    checks: ToolChecks<'_>,
) -> Result<PathBuf> {
    let missing_tool = checks.missing_tool;
    let dir =
        std::path::absolute(dir).with_context(|| format!("cannot resolve `{}`", dir.display()))?;
    let build = dir.join(BUILD_DIR);
    let wasm = build.join("operator.wasm");
    let stamp = build.join("operator.wasm.inputs");
    let fingerprint = fingerprint(&dir, files, tool_pin)?;
    if wasm.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&fingerprint) {
        return Ok(wasm);
    }
    // Each build stages its files in a folder of its own and renames the
    // component into place, so parallel builds of one project (tests) never
    // see each other's half-written files.
    let stage = build.join(format!("stage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&stage);
    for (name, text) in files {
        let path = stage.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        std::fs::write(&path, text)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    let partial = stage.join("operator.wasm");
    let mut cmd = command(&stage, &partial);
    cmd.current_dir(&dir).stdin(std::process::Stdio::null());
    let output = cmd.output();
    let output = match output {
        Ok(output) => output,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&stage);
            if e.kind() == std::io::ErrorKind::NotFound {
                bail!("{missing_tool}");
            }
            return Err(e).context(format!("cannot run the build tool of `{}`", dir.display()));
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if checks.missing_markers.iter().any(|m| stderr.contains(m)) {
            let _ = std::fs::remove_dir_all(&stage);
            bail!("{missing_tool}");
        }
    }
    if output.status.success()
        && let Some(finish) = checks.finish
        && let Err(e) = finish(&stage, &partial)
    {
        let _ = std::fs::remove_dir_all(&stage);
        return Err(e.context(format!("cannot make a component of `{}`", dir.display())));
    }
    if !output.status.success() || !partial.is_file() {
        let _ = std::fs::remove_dir_all(&stage);
        bail!(
            "building `{}` failed:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::rename(&partial, &wasm)
        .with_context(|| format!("cannot move the component to `{}`", wasm.display()))?;
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::write(&stamp, &fingerprint)
        .with_context(|| format!("cannot write `{}`", stamp.display()))?;
    Ok(wasm)
}

/// A digest of everything a build reads: the project's files (but build
/// output, caches and dependencies), the SDK and WIT files, and the tool pin.
fn fingerprint(dir: &Path, files: &[(String, String)], tool_pin: &str) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(tool_pin.as_bytes());
    for (name, text) in files {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    let mut sources = Vec::new();
    collect_sources(dir, &mut sources)?;
    sources.sort();
    for path in sources {
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read `{}`", path.display()))?;
        hasher.update(
            path.strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .as_bytes(),
        );
        hasher.update([0]);
        hasher.update(&bytes);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn collect_sources(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read `{}`", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read `{}`", dir.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || matches!(name.as_ref(), "node_modules" | "__pycache__" | "out")
        {
            continue;
        }
        let path = entry.path();
        let kind = entry
            .file_type()
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        if kind.is_dir() {
            collect_sources(&path, out)?;
        } else if kind.is_file() {
            out.push(path);
        }
    }
    Ok(())
}
