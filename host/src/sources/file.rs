//! JSON Lines and CSV, from a file or standard input.

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Read};
use std::ops::Range;
use std::sync::atomic::Ordering;

use super::SourceContext;
use crate::checkpoint::Position;
use crate::codec::{self, BadLine};
use crate::config::Format;
use crate::runtime::DeadLetter;

/// The longest line a source reads: a longer one (a file without newlines,
/// a runaway writer) is dead-lettered with its first [`RAW_KEPT`] bytes, and
/// never held in memory whole.
pub const MAX_LINE_BYTES: u64 = 16 << 20;

/// How much of an over-long line its dead letter keeps.
const RAW_KEPT: usize = 1024;

/// Where reading starts: at the beginning, or where a checkpoint left off.
#[derive(Default)]
pub(super) struct Start {
    /// Bytes already read (the reader is past them).
    pub(super) offset: u64,
    /// Lines already read.
    pub(super) line: u64,
    /// A CSV file's header, once read.
    pub(super) header: Option<Vec<String>>,
}

/// Reads lines in batches of `batch_size`, decodes them and sends them on,
/// with a checkpoint barrier after any batch when one is due. A live input
/// (stdin) also sends a partial batch whenever it has no more bytes waiting,
/// so records do not wait for a full batch of later ones. Returns where it
/// ended.
pub(super) fn read<R: Read>(
    mut reader: BufReader<R>,
    format: Format,
    live: bool,
    start: Start,
    context: &SourceContext,
) -> Result<Position> {
    let mut text = String::new();
    let mut lines: Vec<(u64, Range<usize>)> = Vec::with_capacity(context.batch_size);
    let mut raw = Vec::new();
    let Start {
        mut offset,
        line: mut line_no,
        mut header,
    } = start;
    let position = |offset: u64, line: u64, header: &Option<Vec<String>>| Position::File {
        offset,
        line,
        header: header.clone(),
    };
    loop {
        raw.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut raw)
            .with_context(|| format!("source `{}`: read failed", context.name))?;
        if read == 0 {
            break;
        }
        offset += read as u64;
        line_no += 1;
        if raw.len() as u64 > MAX_LINE_BYTES && raw.last() != Some(&b'\n') {
            let skipped = skip_line(&mut reader, &context.name)?;
            offset += skipped;
            let length = raw.len() as u64 + skipped;
            context.metrics.records_in.fetch_add(1, Ordering::Relaxed);
            raw.truncate(RAW_KEPT);
            dead_letter(
                context,
                &BadLine {
                    line: line_no,
                    raw: String::from_utf8_lossy(&raw).into_owned(),
                    reason: format!(
                        "the line is {length} bytes long, over the limit of {MAX_LINE_BYTES} \
                         (its first {RAW_KEPT} bytes are kept here)"
                    ),
                },
            )?;
            continue;
        }
        let mut bytes = raw.as_slice();
        if let Some(stripped) = bytes.strip_suffix(b"\n") {
            bytes = stripped;
        }
        if let Some(stripped) = bytes.strip_suffix(b"\r") {
            bytes = stripped;
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        context.metrics.records_in.fetch_add(1, Ordering::Relaxed);
        let Ok(line) = std::str::from_utf8(bytes) else {
            dead_letter(
                context,
                &BadLine {
                    line: line_no,
                    raw: String::from_utf8_lossy(bytes).into_owned(),
                    reason: "the line is not valid UTF-8".to_owned(),
                },
            )?;
            continue;
        };
        if format == Format::Csv && header.is_none() {
            context.metrics.records_in.fetch_sub(1, Ordering::Relaxed);
            header = Some(codec::parse_csv_header(line).map_err(|e| {
                anyhow::anyhow!(
                    "source `{}`: line {line_no}: bad CSV header: {e}",
                    context.name
                )
            })?);
            continue;
        }
        let start = text.len();
        text.push_str(line);
        lines.push((line_no, start..text.len()));
        if lines.len() >= context.batch_size || (live && reader.buffer().is_empty()) {
            flush(&text, &lines, format, header.as_deref(), context)?;
            text.clear();
            lines.clear();
            context.figures.bytes_read.store(offset, Ordering::Relaxed);
            context.barrier_point(|| position(offset, line_no, &header))?;
        }
    }
    if !lines.is_empty() {
        flush(&text, &lines, format, header.as_deref(), context)?;
    }
    context.figures.bytes_read.store(offset, Ordering::Relaxed);
    Ok(position(offset, line_no, &header))
}

/// Reads past the rest of a line without keeping it; returns its length
/// (the newline included).
fn skip_line<R: Read>(reader: &mut BufReader<R>, source: &str) -> Result<u64> {
    let mut skipped = 0u64;
    loop {
        let buffer = reader
            .fill_buf()
            .with_context(|| format!("source `{source}`: read failed"))?;
        if buffer.is_empty() {
            return Ok(skipped);
        }
        let (used, done) = match buffer.iter().position(|&b| b == b'\n') {
            Some(end) => (end + 1, true),
            None => (buffer.len(), false),
        };
        reader.consume(used);
        skipped += used as u64;
        if done {
            return Ok(skipped);
        }
    }
}

fn flush(
    text: &str,
    lines: &[(u64, Range<usize>)],
    format: Format,
    header: Option<&[String]>,
    context: &SourceContext,
) -> Result<()> {
    let items = lines.iter().map(|(n, r)| (*n, &text[r.clone()]));
    let (batch, line_numbers, bad) = match (format, header) {
        (Format::Csv, Some(header)) => codec::decode_csv_lines(header, items),
        _ => codec::decode_json_lines(items),
    };
    for bad_line in &bad {
        dead_letter(context, bad_line)?;
    }
    context.send(batch, line_numbers.into())
}

fn dead_letter(context: &SourceContext, bad: &BadLine) -> Result<()> {
    context.dead_letters.send(&DeadLetter {
        source: &context.name,
        line: bad.line,
        raw: &bad.raw,
        reason: &bad.reason,
        operator: None,
        version: None,
    })
}
