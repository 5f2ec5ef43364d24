//! An on-disk cache of compiled components, keyed by the module's content hash
//! and the engine's settings, so only the first run of a module compiles it.

use anyhow::{Context, Result};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The cache folder: `$WEIR_CACHE_DIR`, else `$XDG_CACHE_HOME/weir`, else
/// `$HOME/.cache/weir`; `None` when none of them is set.
pub(crate) fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("weir"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("weir"))
}

/// A key for the engine's code-generation settings and wasmtime version.
fn engine_key(engine: &Engine) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

/// Loads the compiled form of a module from the cache, or compiles it and
/// stores it. Returns the component and whether it came from the cache.
///
/// A cache entry that cannot be loaded (corrupt, from another wasmtime) is
/// compiled again and overwritten; a cache that cannot be written only costs
/// the next run a compilation.
pub(crate) fn load_or_compile(
    engine: &Engine,
    dir: Option<&Path>,
    content_hash: &str,
    bytes: &[u8],
) -> Result<(Component, bool)> {
    let Some(dir) = dir else {
        return Ok((Component::from_binary(engine, bytes)?, false));
    };
    if let Some(component) = load_cached(engine, Some(dir), content_hash) {
        return Ok((component, true));
    }
    let path = entry_path(engine, dir, content_hash);
    let component = Component::from_binary(engine, bytes)?;
    if let Ok(serialized) = component.serialize() {
        let _ = store_atomically(dir, &path, &serialized);
    }
    Ok((component, false))
}

fn entry_path(engine: &Engine, dir: &Path, content_hash: &str) -> PathBuf {
    dir.join(format!("{content_hash}-{:016x}.cwasm", engine_key(engine)))
}

/// The cached compiled form of a module, if the cache has a loadable one.
pub(crate) fn load_cached(
    engine: &Engine,
    dir: Option<&Path>,
    content_hash: &str,
) -> Option<Component> {
    let path = entry_path(engine, dir?, content_hash);
    if !path.exists() {
        return None;
    }
    // SAFETY: the file was written by `Component::serialize` of an engine
    // with the same compatibility hash (it is in the name), in a folder only
    // Weir writes to; wasmtime still checks its header and version.
    unsafe { Component::deserialize_file(engine, &path) }.ok()
}

fn store_atomically(dir: &Path, path: &Path, data: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create cache folder `{}`", dir.display()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
