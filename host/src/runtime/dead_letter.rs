//! The dead-letter output: every record that could not be decoded or
//! processed, with where it came from and why, as JSON Lines.

use anyhow::{Context, Result};
use serde::Serialize;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// One dead-letter entry.
#[derive(Debug, Serialize)]
pub struct DeadLetter<'a> {
    /// The source the record was read from.
    pub source: &'a str,
    /// Its line number in that source (1-based; event number for generators).
    pub line: u64,
    /// The record: the line as read, or the record as the operator saw it.
    pub raw: &'a str,
    /// Why it was set aside.
    pub reason: &'a str,
    /// The operator that refused it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<&'a str>,
    /// That operator's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// A shared, thread-safe dead-letter writer.
pub struct DeadLetters {
    out: Mutex<BufWriter<Box<dyn Write + Send>>>,
    count: AtomicU64,
}

impl DeadLetters {
    /// Creates (or truncates) the dead-letter file; `-` writes to stderr.
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn open(path: &Path) -> Result<Self> {
        let out: Box<dyn Write + Send> =
            if path.to_str() == Some("-") {
                Box::new(std::io::stderr())
            } else {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).with_context(|| {
                        format!("cannot create dead-letter folder `{}`", parent.display())
                    })?;
                }
                Box::new(std::fs::File::create(path).with_context(|| {
                    format!("cannot create dead-letter file `{}`", path.display())
                })?)
            };
        Ok(Self {
            out: Mutex::new(BufWriter::new(out)),
            count: AtomicU64::new(0),
        })
    }

    /// Writes one entry.
    ///
    /// # Errors
    /// When the output cannot be written: the run must stop rather than lose
    /// the record.
    pub fn send(&self, entry: &DeadLetter<'_>) -> Result<()> {
        let mut line = serde_json::to_vec(entry)?;
        line.push(b'\n');
        let mut out = self
            .out
            .lock()
            .map_err(|_| anyhow::anyhow!("dead-letter writer poisoned"))?;
        // Written through at once: a dead letter is rare, and `weir dlq
        // replay` may read the file while the run goes on.
        out.write_all(&line)
            .and_then(|()| out.flush())
            .context("cannot write the dead-letter output")?;
        self.count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Entries written so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Flushes buffered entries.
    ///
    /// # Errors
    /// When the output cannot be written.
    pub fn flush(&self) -> Result<()> {
        self.out
            .lock()
            .map_err(|_| anyhow::anyhow!("dead-letter writer poisoned"))?
            .flush()
            .context("cannot write the dead-letter output")
    }
}
