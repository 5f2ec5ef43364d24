//! A record of a Rust operator crate's last build, so that a `weir run` of
//! an unchanged crate skips cargo.
//!
//! Asking cargo whether a crate is stale costs three process starts
//! (`rustc --print sysroot`, `cargo metadata`, a no-op `cargo build`): 180 to
//! 230 ms on every run. After each build, the record keeps what cargo's own
//! check reads: the files of cargo's dep-info for the component (the crate's
//! and its path dependencies' sources, the WIT files), the manifests beside
//! them and the workspace's lock file, the toolchain and cargo configuration
//! files that apply to the crate, the compiler, and the environment that
//! changes a build. The component is fresh while none of those changed since
//! it was written; otherwise cargo decides, as before. Like cargo, it trusts
//! modification times.

use serde::{Deserialize, Serialize};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Environment variables that change what cargo builds.
const BUILD_ENV: [&str; 7] = [
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTC",
    "RUSTUP_TOOLCHAIN",
    "CARGO_HOME",
];

/// Files looked for in the crate's folder and each folder above it (and
/// cargo's own configuration in `$CARGO_HOME`).
const CONFIG_FILES: [&str; 4] = [
    "rust-toolchain",
    "rust-toolchain.toml",
    ".cargo/config",
    ".cargo/config.toml",
];

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Record {
    /// The component, and its modification time (ns since the epoch).
    wasm: PathBuf,
    built_ns: u128,
    /// Files that must not be newer than the component.
    inputs: Vec<PathBuf>,
    /// Configuration files that did not exist, and must not appear.
    absent: Vec<PathBuf>,
    /// The compiler, and its modification time (a toolchain update).
    rustc: PathBuf,
    rustc_ns: u128,
    /// A digest of [`BUILD_ENV`] and of how `weir` builds.
    env: u64,
}

/// The component built from `crate_dir`, if its record says nothing it was
/// built from has changed since.
pub(super) fn fresh_component(crate_dir: &Path) -> Option<PathBuf> {
    let text = std::fs::read(record_path(crate_dir)?).ok()?;
    let record: Record = serde_json::from_slice(&text).ok()?;
    record.holds().then_some(record.wasm)
}

impl Record {
    /// Nothing it names changed since the component was written.
    fn holds(&self) -> bool {
        modified_ns(&self.wasm) == Some(self.built_ns)
            && modified_ns(&self.rustc) == Some(self.rustc_ns)
            && self.env == env_digest()
            && self.absent.iter().all(|p| !p.exists())
            && self
                .inputs
                .iter()
                .all(|p| modified_ns(p).is_some_and(|t| t < self.built_ns))
    }
}

/// Records the build of `wasm` from `crate_dir` by the compiler in
/// `sysroot`. A record that cannot be written only costs the next run a
/// cargo check.
pub(super) fn record_build(crate_dir: &Path, wasm: &Path, sysroot: &Path, workspace: &Path) {
    let Some(record) = make_record(crate_dir, wasm, sysroot, workspace) else {
        return;
    };
    let Some(path) = record_path(crate_dir) else {
        return;
    };
    if let (Some(parent), Ok(bytes)) = (path.parent(), serde_json::to_vec(&record)) {
        let partial = path.with_extension(format!("{}.tmp", std::process::id()));
        let _ = std::fs::create_dir_all(parent)
            .and_then(|()| std::fs::write(&partial, bytes))
            .and_then(|()| std::fs::rename(&partial, &path));
    }
}

fn make_record(crate_dir: &Path, wasm: &Path, sysroot: &Path, workspace: &Path) -> Option<Record> {
    let built_ns = modified_ns(wasm)?;
    let dep_info = std::fs::read_to_string(wasm.with_extension("d")).ok()?;
    let mut inputs = dep_info_files(&dep_info)?;
    // The manifest of every crate whose sources it lists (features and
    // dependencies live there), and the workspace's.
    let manifests: Vec<PathBuf> = inputs
        .iter()
        .filter_map(|file| {
            file.ancestors()
                .skip(1)
                .map(|dir| dir.join("Cargo.toml"))
                .find(|m| m.is_file())
        })
        .collect();
    inputs.extend(manifests);
    inputs.push(crate_dir.join("Cargo.toml"));
    inputs.push(workspace.join("Cargo.toml"));
    inputs.push(workspace.join("Cargo.lock"));
    let mut absent = Vec::new();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let home_configs = cargo_home
        .iter()
        .flat_map(|home| [home.join("config"), home.join("config.toml")]);
    for path in home_configs {
        if path.exists() {
            inputs.push(path);
        } else {
            absent.push(path);
        }
    }
    for dir in crate_dir.ancestors() {
        for name in CONFIG_FILES {
            let path = dir.join(name);
            if path.exists() {
                inputs.push(path);
            } else {
                absent.push(path);
            }
        }
    }
    inputs.sort();
    inputs.dedup();
    let rustc = sysroot.join("bin").join("rustc");
    Some(Record {
        wasm: wasm.to_path_buf(),
        built_ns,
        rustc_ns: modified_ns(&rustc)?,
        rustc,
        inputs,
        absent,
        env: env_digest(),
    })
}

/// The prerequisites of a Makefile-style dep-info file (`target: a b\ c`),
/// or `None` when it is not one.
fn dep_info_files(text: &str) -> Option<Vec<PathBuf>> {
    let line = text.lines().next()?;
    let (_, prerequisites) = line.split_once(": ")?;
    let mut files = Vec::new();
    let mut current = String::new();
    let mut chars = prerequisites.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ' ' if !current.is_empty() => files.push(PathBuf::from(std::mem::take(&mut current))),
            ' ' => {}
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        files.push(PathBuf::from(current));
    }
    Some(files)
}

fn env_digest() -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    super::GUEST_PROFILE.hash(&mut hasher);
    for name in BUILD_ENV {
        std::env::var_os(name).hash(&mut hasher);
    }
    hasher.finish()
}

/// `builds/<digest of the crate folder>.json` in the cache folder.
fn record_path(crate_dir: &Path) -> Option<PathBuf> {
    let dir = std::path::absolute(crate_dir).ok()?;
    let mut hasher = std::hash::DefaultHasher::new();
    dir.hash(&mut hasher);
    let cache = crate::wasm::cache::default_dir()?;
    Some(
        cache
            .join("builds")
            .join(format!("{:016x}.json", hasher.finish())),
    )
}

fn modified_ns(path: &Path) -> Option<u128> {
    let time = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(time.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_files_are_split_at_unescaped_spaces() {
        let files =
            dep_info_files("/t/a.wasm: /src/lib.rs /my\\ dir/x.rs  /wit/w.wit\n\n/src/lib.rs:\n");
        assert_eq!(
            files,
            Some(vec![
                PathBuf::from("/src/lib.rs"),
                PathBuf::from("/my dir/x.rs"),
                PathBuf::from("/wit/w.wit"),
            ])
        );
        assert_eq!(dep_info_files("not a dep-info file"), None);
    }

    #[test]
    fn a_record_holds_until_an_input_changes_or_appears() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let write = |name: &str| {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("folder");
            std::fs::write(&path, name).expect("written");
            path
        };
        let source = write("op/src/lib.rs");
        write("op/Cargo.toml");
        write("op/Cargo.lock");
        let rustc = write("sysroot/bin/rustc");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let wasm = write("op/target/op.wasm");
        std::fs::write(
            wasm.with_extension("d"),
            format!("{}: {}\n", wasm.display(), source.display()),
        )
        .expect("dep-info");
        let record = make_record(
            &root.join("op"),
            &wasm,
            &root.join("sysroot"),
            &root.join("op"),
        )
        .expect("a record");
        assert_eq!(record.rustc, rustc);
        assert!(record.inputs.contains(&source), "{:?}", record.inputs);
        assert!(record.inputs.contains(&root.join("op/Cargo.lock")));
        assert!(
            record.absent.contains(&root.join("op/rust-toolchain.toml")),
            "{:?}",
            record.absent
        );

        assert!(record.holds(), "nothing changed");

        let later = || std::thread::sleep(std::time::Duration::from_millis(20));
        later();
        write("op/src/lib.rs");
        assert!(!record.holds(), "an edited source");
        later();
        write("op/target/op.wasm");
        let rebuilt = make_record(
            &root.join("op"),
            &wasm,
            &root.join("sysroot"),
            &root.join("op"),
        )
        .expect("a record");
        assert!(rebuilt.holds(), "rebuilt");
        write("op/rust-toolchain.toml");
        assert!(!rebuilt.holds(), "a toolchain file that appeared");
        std::fs::remove_file(root.join("op/rust-toolchain.toml")).expect("removed");
        assert!(rebuilt.holds(), "the toolchain file gone again");
        later();
        write("sysroot/bin/rustc");
        assert!(!rebuilt.holds(), "an updated compiler");
    }
}
