//! Exactly-once output to a file: a two-phase commit per checkpoint.
//!
//! Records between barrier k-1 and barrier k go to part file
//! `part-<k>-<start>` (`start`: where it belongs in the output file). At
//! barrier k the part is synced and closed (phase one); once checkpoint k is
//! complete, the part is appended to the output file at `start` and deleted
//! (phase two). Appending at `start`, after cutting the file there, makes a
//! commit repeatable after a crash. A restart from checkpoint k commits the
//! parts up to k, drops later ones and cuts the output file to its size at
//! k: the records after k are produced again, exactly as before.

use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// An output file written through parts.
pub(super) struct Parts {
    target: PathBuf,
    dir: PathBuf,
    /// The checkpoint the open part ends at.
    epoch: u64,
    /// Bytes written in all (the output file's size once all is committed).
    written: u64,
    part: BufWriter<File>,
}

fn part_path(dir: &Path, epoch: u64, start: u64) -> PathBuf {
    dir.join(format!("part-{epoch:06}-{start}"))
}

/// The parts in `dir`, in epoch order: (epoch, start, path).
fn list(dir: &Path) -> Result<Vec<(u64, u64, PathBuf)>> {
    let mut parts = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("cannot read `{}`", dir.display()))?
    {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((epoch, start)) = name.strip_prefix("part-").and_then(|n| n.split_once('-'))
        else {
            continue;
        };
        if let (Ok(epoch), Ok(start)) = (epoch.parse(), start.parse()) {
            parts.push((epoch, start, entry.path()));
        }
    }
    parts.sort();
    Ok(parts)
}

/// Appends part `path` to `target` at `start`, and deletes it. The first
/// part becomes the output file by a rename: its bytes are not written
/// (and synced) a second time.
fn commit_part(target: &Path, start: u64, path: &Path) -> Result<()> {
    let context = || format!("cannot commit output to `{}`", target.display());
    // (Another file system refuses the rename: then it is copied.)
    if start == 0 && std::fs::rename(path, target).is_ok() {
        return match target.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(folder) => crate::checkpoint::store::sync_dir(folder),
            None => Ok(()),
        };
    }
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(target)
        .with_context(context)?;
    out.set_len(start).with_context(context)?;
    out.seek(SeekFrom::Start(start)).with_context(context)?;
    let mut part = File::open(path).with_context(context)?;
    std::io::copy(&mut part, &mut out).with_context(context)?;
    out.sync_data().with_context(context)?;
    std::fs::remove_file(path).with_context(context)
}

impl Parts {
    /// Opens output file `target` with its parts in `dir`: empty, or as
    /// checkpoint `restore = (id, bytes)` left it.
    ///
    /// # Errors
    /// When the files cannot be created or committed.
    pub(super) fn open(target: &Path, dir: &Path, restore: Option<(u64, u64)>) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create folder `{}`", dir.display()))?;
        let (epoch, written) = match restore {
            None => {
                for (_, _, path) in list(dir)? {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("cannot delete `{}`", path.display()))?;
                }
                File::create(target)
                    .with_context(|| format!("sink: cannot create `{}`", target.display()))?;
                (1, 0)
            }
            Some((id, bytes)) => {
                for (epoch, start, path) in list(dir)? {
                    if epoch <= id {
                        commit_part(target, start, &path)?;
                    } else {
                        std::fs::remove_file(&path)
                            .with_context(|| format!("cannot delete `{}`", path.display()))?;
                    }
                }
                let out = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(target)
                    .with_context(|| format!("sink: cannot open `{}`", target.display()))?;
                let size = out.metadata()?.len();
                if size < bytes {
                    tracing::warn!(
                        "`{}` is {size} bytes, shorter than the {bytes} bytes the checkpoint \
                         wrote: it was changed since",
                        target.display()
                    );
                }
                out.set_len(bytes)?;
                out.sync_data()?;
                (id + 1, bytes)
            }
        };
        Ok(Self {
            target: target.to_owned(),
            dir: dir.to_owned(),
            epoch,
            written,
            part: Self::new_part(dir, epoch, written)?,
        })
    }

    fn new_part(dir: &Path, epoch: u64, start: u64) -> Result<BufWriter<File>> {
        let path = part_path(dir, epoch, start);
        let file =
            File::create(&path).with_context(|| format!("cannot create `{}`", path.display()))?;
        Ok(BufWriter::with_capacity(1 << 20, file))
    }

    /// Writes output of the open epoch.
    pub(super) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.part
            .write_all(bytes)
            .with_context(|| format!("sink `{}`: write failed", self.target.display()))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Phase one at barrier `id`: syncs and closes the open part; returns
    /// the bytes written up to it.
    pub(super) fn barrier(&mut self, id: u64) -> Result<u64> {
        self.close_part()?;
        self.epoch = id + 1;
        self.part = Self::new_part(&self.dir, self.epoch, self.written)?;
        Ok(self.written)
    }

    fn close_part(&mut self) -> Result<()> {
        self.part.flush()?;
        self.part.get_ref().sync_data()?;
        Ok(())
    }

    /// Phase two: appends every closed part up to checkpoint `upto` to the
    /// output file.
    pub(super) fn commit(&mut self, upto: u64) -> Result<()> {
        for (epoch, start, path) in list(&self.dir)? {
            if epoch <= upto && epoch < self.epoch {
                commit_part(&self.target, start, &path)?;
            }
        }
        Ok(())
    }

    /// At the end of the input: commits everything when `all` (the input
    /// was read to its end), else leaves the parts for a restart.
    pub(super) fn finish(mut self, all: bool) -> Result<()> {
        self.close_part()?;
        if all {
            for (_, start, path) in list(&self.dir)? {
                commit_part(&self.target, start, &path)?;
            }
        }
        Ok(())
    }
}
