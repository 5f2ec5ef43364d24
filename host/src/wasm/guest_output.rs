//! A guest's stdout and stderr: each line goes to the host log under the
//! operator's name, at most [`LINES_PER_SECOND`] a second per stream (a
//! guest printing in a loop cannot flood the log or the disk), and stderr's
//! last lines are kept to explain a trap (a Rust panic prints its message
//! there just before it traps).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Lines each stream may log per second; the rest are counted and the count
/// is logged when the next second starts.
pub const LINES_PER_SECOND: u32 = 20;

/// The longest line logged; a longer one is cut (its rest is dropped).
const MAX_LINE: usize = 4096;

/// Lines of stderr kept for trap reports.
const TAIL_LINES: usize = 3;

/// Which of the guest's streams.
#[derive(Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// One of a guest's output streams; clones write to the same stream.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    inner: Arc<Mutex<Lines>>,
}

struct Lines {
    label: Arc<str>,
    stream: Stream,
    /// The line being written, up to [`MAX_LINE`] bytes.
    partial: Vec<u8>,
    tail: VecDeque<String>,
    window_start: Instant,
    logged_in_window: u32,
    dropped: u64,
}

impl GuestOutput {
    pub(crate) fn new(label: Arc<str>, stream: Stream) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Lines {
                label,
                stream,
                partial: Vec::new(),
                tail: VecDeque::with_capacity(TAIL_LINES),
                window_start: Instant::now(),
                logged_in_window: 0,
                dropped: 0,
            })),
        }
    }

    /// The last lines written, the unfinished one included, oldest first.
    pub(crate) fn tail(&self) -> Vec<String> {
        let Ok(lines) = self.inner.lock() else {
            return Vec::new();
        };
        let mut tail: Vec<String> = lines.tail.iter().cloned().collect();
        if !lines.partial.is_empty() {
            tail.push(String::from_utf8_lossy(&lines.partial).into_owned());
        }
        let skip = tail.len().saturating_sub(TAIL_LINES);
        tail.split_off(skip)
    }

    fn write_bytes(&self, bytes: &[u8]) {
        if let Ok(mut lines) = self.inner.lock() {
            lines.write(bytes, Instant::now());
        }
    }
}

impl Lines {
    fn write(&mut self, mut bytes: &[u8], now: Instant) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.push_partial(&bytes[..end]);
            let line = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            self.finish_line(line, now);
            bytes = &bytes[end + 1..];
        }
        self.push_partial(bytes);
    }

    fn push_partial(&mut self, bytes: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn finish_line(&mut self, line: String, now: Instant) {
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            if self.dropped > 0 {
                self.log(&format!(
                    "({} more lines not logged: over {LINES_PER_SECOND} a second)",
                    self.dropped
                ));
            }
            self.window_start = now;
            self.logged_in_window = 0;
            self.dropped = 0;
        }
        if self.logged_in_window < LINES_PER_SECOND {
            self.logged_in_window += 1;
            self.log(&line);
        } else {
            self.dropped += 1;
        }
        if matches!(self.stream, Stream::Stderr) {
            if self.tail.len() == TAIL_LINES {
                self.tail.pop_front();
            }
            self.tail.push_back(line);
        }
    }

    fn log(&self, line: &str) {
        let operator = &self.label;
        match self.stream {
            Stream::Stdout => tracing::info!(operator = %operator, "stdout: {line}"),
            Stream::Stderr => tracing::warn!(operator = %operator, "stderr: {line}"),
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready: what is over the rate is counted, not kept.
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_keeps_its_last_lines_and_the_unfinished_one() {
        let out = GuestOutput::new("op@v1".into(), Stream::Stderr);
        out.write_bytes(b"one\ntwo\nthr");
        out.write_bytes(b"ee\nfour\npanicked at");
        assert_eq!(out.tail(), ["three", "four", "panicked at"]);
    }

    #[test]
    fn a_long_line_is_cut_and_lines_over_the_rate_are_counted() {
        let out = GuestOutput::new("op@v1".into(), Stream::Stderr);
        out.write_bytes(&vec![b'x'; MAX_LINE * 2]);
        out.write_bytes(b"\n");
        assert_eq!(out.tail(), ["x".repeat(MAX_LINE)]);
        let mut lines = out.inner.lock().unwrap();
        let start = lines.window_start;
        for i in 0..100 {
            lines.write(format!("line {i}\n").as_bytes(), start);
        }
        assert_eq!(lines.logged_in_window, LINES_PER_SECOND);
        assert_eq!(lines.dropped, 101 - u64::from(LINES_PER_SECOND));
        // A second later the count starts over.
        lines.write(b"later\n", start + Duration::from_secs(1));
        assert_eq!((lines.logged_in_window, lines.dropped), (1, 0));
    }
}
