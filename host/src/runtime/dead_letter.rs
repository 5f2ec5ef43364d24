//! The dead-letter output: every record that could not be decoded or
//! processed, with where it came from and why, as JSON Lines.

use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::VecDeque;
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
    /// The latest entries, for the dashboard.
    recent: Mutex<VecDeque<RecentDeadLetter>>,
}

/// Dead letters the dashboard keeps (the file has them all).
pub const RECENT_DEAD_LETTERS: usize = 50;

/// Longest `raw` kept of a recent dead letter, in bytes.
const RECENT_RAW_BYTES: usize = 1024;

/// A dead letter as the dashboard shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RecentDeadLetter {
    /// When it was written (milliseconds since the Unix epoch).
    pub at_ms: u64,
    /// Its number in the run (1 is the first).
    pub number: u64,
    /// The source it was read from.
    pub source: String,
    /// Its line there.
    pub line: u64,
    /// The record (its first KiB).
    pub raw: String,
    /// Why it was set aside.
    pub reason: String,
    /// The operator that refused it.
    pub operator: Option<String>,
    /// That operator's version.
    pub version: Option<u32>,
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
            recent: Mutex::new(VecDeque::with_capacity(RECENT_DEAD_LETTERS)),
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
        drop(out);
        let number = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        self.remember(entry, number);
        Ok(())
    }

    /// Keeps `entry` among the recent ones, dropping the oldest.
    fn remember(&self, entry: &DeadLetter<'_>, number: u64) {
        let mut raw_end = entry.raw.len().min(RECENT_RAW_BYTES);
        while !entry.raw.is_char_boundary(raw_end) {
            raw_end -= 1;
        }
        let recent = RecentDeadLetter {
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            number,
            source: entry.source.to_owned(),
            line: entry.line,
            raw: entry.raw[..raw_end].to_owned(),
            reason: entry.reason.to_owned(),
            operator: entry.operator.map(str::to_owned),
            version: entry.version,
        };
        let mut kept = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() == RECENT_DEAD_LETTERS {
            kept.pop_front();
        }
        kept.push_back(recent);
    }

    /// The latest entries, newest first.
    pub fn recent(&self) -> Vec<RecentDeadLetter> {
        let kept = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter().rev().cloned().collect()
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

#[cfg(test)]
mod tests {
    use super::{DeadLetter, DeadLetters, RECENT_DEAD_LETTERS};

    #[test]
    fn the_latest_dead_letters_are_kept_newest_first_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let letters = DeadLetters::open(&dir.path().join("dead.jsonl")).unwrap();
        let long = "é".repeat(1000); // 2,000 bytes
        for line in 1..=(RECENT_DEAD_LETTERS as u64 + 5) {
            letters
                .send(&DeadLetter {
                    source: "in",
                    line,
                    raw: &long,
                    reason: &format!("bad {line}"),
                    operator: Some("op"),
                    version: Some(1),
                })
                .unwrap();
        }
        let recent = letters.recent();
        assert_eq!(recent.len(), RECENT_DEAD_LETTERS);
        assert_eq!(recent[0].line, RECENT_DEAD_LETTERS as u64 + 5);
        assert_eq!(recent[0].number, RECENT_DEAD_LETTERS as u64 + 5);
        assert_eq!(recent[0].reason, format!("bad {}", RECENT_DEAD_LETTERS + 5));
        assert_eq!(recent.last().unwrap().line, 6);
        // Cut at a character boundary within the first KiB.
        assert_eq!(recent[0].raw, "é".repeat(512));
        assert_eq!(letters.count(), RECENT_DEAD_LETTERS as u64 + 5);
        let file = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap();
        assert_eq!(file.lines().count(), RECENT_DEAD_LETTERS + 5);
    }
}
