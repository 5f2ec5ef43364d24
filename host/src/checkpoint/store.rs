//! The checkpoint folder on disk.
//!
//! ```text
//! <dir>/chk-000042/manifest.json      what the checkpoint holds, with a checksum per file
//! <dir>/chk-000042/<op>-<worker>.state  a worker's keyed state (postcard)
//! <dir>/chk-000042/<hash>.wasm        every operator version it names
//! <dir>/chk-000043.tmp/               a checkpoint being taken
//! <dir>/components/<hash>.wasm        components written once, linked into each checkpoint
//! <dir>/sinks/<n>/part-<k>-<start>    file sink output of epoch k, not yet committed
//! ```
//!
//! A checkpoint is written into its `.tmp` folder, every file synced, and
//! then renamed: a folder named `chk-N` is complete, and its checksums tell
//! whether it was damaged since.

use anyhow::{Context, Result, anyhow, bail};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{FileEntry, Manifest};

/// How many complete checkpoints are kept.
pub const KEEP: usize = 3;

const MANIFEST: &str = "manifest.json";

/// The name of checkpoint `id`'s folder.
pub fn checkpoint_name(id: u64) -> String {
    format!("chk-{id:06}")
}

/// Writes a file through `write`, syncs it, and returns its size and checksum.
///
/// # Errors
/// When the file cannot be written.
pub fn write_file(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<FileEntry> {
    let file = File::create(path).with_context(|| format!("cannot create `{}`", path.display()))?;
    // Buffered before the checksum, so it sees large blocks.
    let mut out = BufWriter::with_capacity(
        1 << 20,
        Checksummed {
            inner: file,
            hasher: crc32fast::Hasher::new(),
            bytes: 0,
        },
    );
    write(&mut out).with_context(|| format!("cannot write `{}`", path.display()))?;
    let written = out
        .into_inner()
        .map_err(|e| anyhow!("cannot write `{}`: {}", path.display(), e.error()))?;
    written
        .inner
        .sync_all()
        .with_context(|| format!("cannot sync `{}`", path.display()))?;
    Ok(FileEntry {
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bytes: written.bytes,
        crc32: written.hasher.finalize(),
    })
}

struct Checksummed<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    bytes: u64,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Maps a file named in a manifest into memory (its pages are read on
/// demand and can be dropped again, so a large state file needs no heap),
/// checking its size and checksum.
///
/// # Errors
/// When it is missing, or its size or checksum differ (it was damaged).
pub fn read_file(dir: &Path, entry: &FileEntry) -> Result<memmap2::Mmap> {
    let path = dir.join(&entry.file);
    let file = File::open(&path).with_context(|| format!("cannot read `{}`", path.display()))?;
    // SAFETY: the checkpoint folder is locked for this run, and no weir
    // writes a file of a complete checkpoint again.
    let bytes = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    if bytes.len() as u64 != entry.bytes {
        bail!(
            "`{}` is {} bytes, the manifest says {}",
            path.display(),
            bytes.len(),
            entry.bytes
        );
    }
    let crc = crc32fast::hash(&bytes);
    if crc != entry.crc32 {
        bail!(
            "`{}` has checksum {crc:08x}, the manifest says {:08x}",
            path.display(),
            entry.crc32
        );
    }
    Ok(bytes)
}

/// Syncs a folder, so a rename in it survives a power cut.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync folder `{}`", dir.display()))
}

/// Completes the checkpoint in `tmp`: writes its manifest, syncs, and renames
/// the folder to `final_dir`.
///
/// # Errors
/// When a file cannot be written or the folder renamed.
pub fn commit(tmp: &Path, final_dir: &Path, manifest: &Manifest) -> Result<()> {
    let text = serde_json::to_vec_pretty(manifest)?;
    write_file(&tmp.join(MANIFEST), |out| Ok(out.write_all(&text)?))?;
    sync_dir(tmp)?;
    std::fs::rename(tmp, final_dir).with_context(|| {
        format!(
            "cannot rename `{}` to `{}`",
            tmp.display(),
            final_dir.display()
        )
    })?;
    if let Some(parent) = final_dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Reads and checks the checkpoint in `dir`: its manifest, and the size and
/// checksum of every file the manifest names.
///
/// # Errors
/// What is missing or damaged.
pub fn load(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read(&path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .with_context(|| format!("`{}` is not a checkpoint manifest", path.display()))?;
    if manifest.format != super::FORMAT {
        bail!(
            "its state files are in layout {}, and this weir reads layout {}",
            manifest.format,
            super::FORMAT
        );
    }
    for entry in manifest.files() {
        read_file(dir, entry)?;
    }
    Ok(manifest)
}

/// The complete checkpoints in `dir`, newest first.
pub fn list(dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_prefix("chk-")?.parse().ok()?;
            Some((id, e.path()))
        })
        .collect();
    found.sort_by_key(|c| std::cmp::Reverse(c.0));
    found
}

/// The newest checkpoint in `dir` that is whole, with a warning for each
/// newer one that is damaged.
pub fn newest(dir: &Path) -> Option<(PathBuf, Manifest)> {
    for (_, path) in list(dir) {
        match load(&path) {
            Ok(manifest) => return Some((path, manifest)),
            Err(e) => eprintln!(
                "weir: warning: checkpoint `{}` is damaged and is skipped: {e:#}",
                path.display()
            ),
        }
    }
    None
}

/// Deletes checkpoints beyond the newest [`KEEP`], and unfinished ones.
pub fn prune(dir: &Path, newest: u64) {
    for (id, path) in list(dir).into_iter().skip(KEEP) {
        if let Err(e) = std::fs::remove_dir_all(&path) {
            tracing::warn!("cannot delete old checkpoint {id}: {e}");
        }
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = name
            .strip_prefix("chk-")
            .and_then(|n| n.strip_suffix(".tmp"))
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|id| id < newest);
        if stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Puts component `bytes` (SHA-256 `hash`) into checkpoint folder `into`:
/// written once to the shared `components` folder, then linked.
///
/// # Errors
/// When neither a link nor a copy can be made.
pub fn add_component(dir: &Path, into: &Path, hash: &str, bytes: &[u8]) -> Result<()> {
    let shared = dir.join("components");
    let name = format!("{hash}.wasm");
    let source = shared.join(&name);
    if !source.exists() {
        std::fs::create_dir_all(&shared)
            .with_context(|| format!("cannot create `{}`", shared.display()))?;
        let tmp = shared.join(format!("{name}.tmp"));
        write_file(&tmp, |out| Ok(out.write_all(bytes)?))?;
        std::fs::rename(&tmp, &source)
            .with_context(|| format!("cannot write `{}`", source.display()))?;
    }
    let target = into.join(&name);
    // Never copy onto an old link to the same file: that would empty it.
    let _ = std::fs::remove_file(&target);
    if std::fs::hard_link(&source, &target).is_err() {
        std::fs::copy(&source, &target)
            .with_context(|| format!("cannot copy a component into `{}`", into.display()))?;
    }
    Ok(())
}

/// Copies checkpoint `from` to folder `to` (a savepoint), and checks the copy.
///
/// # Errors
/// When a file cannot be copied, or `to` exists.
pub fn copy(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        bail!("`{}` exists already", to.display());
    }
    let tmp = to.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create `{}`", tmp.display()))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = tmp.join(entry.file_name());
        std::fs::copy(entry.path(), &target)
            .with_context(|| format!("cannot copy to `{}`", target.display()))?;
    }
    sync_dir(&tmp)?;
    std::fs::rename(&tmp, to).with_context(|| format!("cannot create `{}`", to.display()))?;
    load(to).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_linked_again_into_a_leftover_folder_keeps_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let pending = dir.path().join("chk-000001.tmp");
        std::fs::create_dir_all(&pending).unwrap();
        add_component(dir.path(), &pending, "abc", b"component").unwrap();
        // A run killed mid-checkpoint leaves the link; the next run takes
        // the same checkpoint number again.
        add_component(dir.path(), &pending, "abc", b"component").unwrap();
        assert_eq!(
            std::fs::read(pending.join("abc.wasm")).unwrap(),
            b"component"
        );
        assert_eq!(
            std::fs::read(dir.path().join("components/abc.wasm")).unwrap(),
            b"component"
        );
    }

    #[test]
    fn a_damaged_file_is_told_apart_by_its_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let entry = write_file(&dir.path().join("state"), |out| {
            Ok(out.write_all(b"keyed state")?)
        })
        .unwrap();
        assert_eq!(&*read_file(dir.path(), &entry).unwrap(), b"keyed state");
        std::fs::write(dir.path().join("state"), b"keyed stage").unwrap();
        let error = read_file(dir.path(), &entry).unwrap_err().to_string();
        assert!(error.contains("has checksum"), "{error}");
    }
}
