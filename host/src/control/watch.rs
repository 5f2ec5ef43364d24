//! The deploy folder: writing `<operator-id>.wasm` into it deploys the file
//! as that operator's next version.
//!
//! A file is read when it is complete: when the writer closes it, or when it
//! is renamed into the folder (write elsewhere, then `mv`, for an atomic
//! deploy). Files that name no operator are ignored with a warning.

use anyhow::{Context, Result};
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Control;

/// A running watcher; dropping it stops watching.
pub struct DeployWatcher {
    _watcher: notify::RecommendedWatcher,
}

/// Watches `dir` (created if missing) and deploys what lands in it.
///
/// # Errors
/// When the folder cannot be created or watched.
pub fn watch(control: Arc<Control>, dir: &Path) -> Result<DeployWatcher> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the deploy folder `{}`", dir.display()))?;
    let (sender, events) = std::sync::mpsc::channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let complete = matches!(
            event.kind,
            EventKind::Access(AccessKind::Close(AccessMode::Write))
                | EventKind::Modify(ModifyKind::Name(RenameMode::To))
        );
        if let (true, Some(path)) = (complete, event.paths.last()) {
            let _ = sender.send(path.clone());
        }
    })
    .context("cannot start the deploy-folder watcher")?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch the deploy folder `{}`", dir.display()))?;
    std::thread::Builder::new()
        .name("weir-deploy-dir".into())
        .spawn(move || {
            for path in events {
                deploy_file(&control, &path);
            }
        })?;
    Ok(DeployWatcher { _watcher: watcher })
}

fn deploy_file(control: &Arc<Control>, path: &Path) {
    let (Some(id), Some("wasm")) = (
        path.file_stem().and_then(|s| s.to_str()),
        path.extension().and_then(|s| s.to_str()),
    ) else {
        return;
    };
    if !control.has_operator(id) {
        tracing::warn!(
            "deploy folder: ignored `{}`: the pipeline has no operator `{id}`",
            path.display()
        );
        return;
    }
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!("deploy folder: cannot read `{}`: {e}", path.display());
            return;
        }
    };
    match control.deploy(id, &bytes, "deploy folder") {
        Ok(report) => eprintln!(
            "weir: deployed `{}` version {} from {} ({} keys migrated)",
            id,
            report.version,
            path.display(),
            report.migrated_keys
        ),
        Err(e) => eprintln!("weir: refused `{}` from {}: {e}", id, path.display()),
    }
}
