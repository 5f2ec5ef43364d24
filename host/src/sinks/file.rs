//! JSON Lines to a file or to standard output.
//!
//! With checkpoints on, a file is exactly-once: it only ever holds records
//! of complete checkpoints (see [`super::parts`]). Without them it is written
//! as records come. Standard output is at-least-once: what was printed stays
//! printed, so records after the last checkpoint are printed again after a
//! restart.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::Sink;
use super::parts::Parts;
use crate::checkpoint::Coordinator;
use crate::codec::encode_json_lines;
use crate::runtime::Message;

/// A JSON Lines file.
pub(super) struct FileSink {
    output: FileOutput,
    /// The encoded lines of one message, reused.
    buffer: Vec<u8>,
}

enum FileOutput {
    /// Written as records come, flushed when the input pauses.
    Direct(BufWriter<File>, String),
    /// Written through checkpoint-committed parts.
    Parts(Parts),
}

impl FileSink {
    /// Creates `path` (and its folder): empty, or as checkpoint
    /// `restore = (id, bytes)` left it when the run takes checkpoints.
    pub(super) fn open(
        path: &Path,
        checkpoints: Option<&Coordinator>,
        index: usize,
        restore: Option<(u64, u64)>,
    ) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create folder `{}`", parent.display()))?;
        }
        let output = match checkpoints {
            Some(checkpoints) => {
                FileOutput::Parts(Parts::open(path, &checkpoints.sink_parts(index), restore)?)
            }
            None => {
                let file = File::create(path)
                    .with_context(|| format!("sink: cannot create `{}`", path.display()))?;
                FileOutput::Direct(
                    BufWriter::with_capacity(1 << 20, file),
                    path.display().to_string(),
                )
            }
        };
        Ok(Self {
            output,
            buffer: Vec::with_capacity(1 << 20),
        })
    }
}

impl Sink for FileSink {
    fn write(&mut self, message: &Message) -> Result<()> {
        self.buffer.clear();
        encode_json_lines(&message.batch, &mut self.buffer);
        match &mut self.output {
            FileOutput::Direct(out, label) => out
                .write_all(&self.buffer)
                .with_context(|| format!("sink `{label}`: write failed")),
            FileOutput::Parts(parts) => parts.write(&self.buffer),
        }
    }

    fn barrier(&mut self, id: u64) -> Result<u64> {
        match &mut self.output {
            FileOutput::Parts(parts) => parts.barrier(id),
            FileOutput::Direct(..) => self.flush().map(|()| 0),
        }
    }

    fn commit(&mut self, upto: u64) -> Result<()> {
        match &mut self.output {
            FileOutput::Parts(parts) => parts.commit(upto),
            FileOutput::Direct(..) => Ok(()),
        }
    }

    fn flush(&mut self) -> Result<()> {
        match &mut self.output {
            FileOutput::Direct(out, label) => out
                .flush()
                .with_context(|| format!("sink `{label}`: write failed")),
            FileOutput::Parts(_) => Ok(()),
        }
    }

    fn finish(mut self: Box<Self>, all: bool) -> Result<()> {
        match self.output {
            FileOutput::Parts(parts) => parts.finish(all),
            FileOutput::Direct(..) => self.flush(),
        }
    }
}

/// Standard output, as JSON Lines.
pub(super) struct StdoutSink {
    out: BufWriter<std::io::Stdout>,
    buffer: Vec<u8>,
}

impl StdoutSink {
    pub(super) fn new() -> Self {
        Self {
            out: BufWriter::with_capacity(1 << 16, std::io::stdout()),
            buffer: Vec::with_capacity(1 << 16),
        }
    }
}

impl Sink for StdoutSink {
    fn write(&mut self, message: &Message) -> Result<()> {
        self.buffer.clear();
        encode_json_lines(&message.batch, &mut self.buffer);
        self.out
            .write_all(&self.buffer)
            .context("sink `stdout`: write failed")
    }

    fn barrier(&mut self, _id: u64) -> Result<u64> {
        self.flush().map(|()| 0)
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush().context("sink `stdout`: write failed")
    }

    fn finish(mut self: Box<Self>, _all: bool) -> Result<()> {
        self.flush()
    }
}
