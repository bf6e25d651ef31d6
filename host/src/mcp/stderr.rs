//! A server's stderr: logged line by line under its id, with the last
//! lines kept for the message of a server that failed to start.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead};

/// Longest stderr line logged whole; the rest of a longer one is dropped,
/// so a server cannot make the host buffer without bound.
const STDERR_LINE_MAX: usize = 4096;
/// Lines of stderr kept for a start-up failure's message, and how much of
/// each.
const TAIL_LINES: usize = 5;
const TAIL_LINE_MAX: usize = 300;
/// How long a server that failed to start is given to finish its stderr.
pub const STDERR_GRACE: Duration = Duration::from_secs(1);

/// The last lines a server wrote to stderr.
#[derive(Clone, Default)]
pub struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    fn push(&self, line: &str) {
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        let mut kept: String = line.chars().take(TAIL_LINE_MAX).collect();
        if kept.len() < line.len() {
            kept.push('…');
        }
        lines.push_back(kept);
    }

    /// The lines joined with ` | `, if there were any.
    pub fn lines(&self) -> Option<String> {
        let lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (!lines.is_empty()).then(|| {
            lines
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" | ")
        })
    }
}

/// Logs a server's stderr line by line under its id, so its messages can
/// be told from the host's and from other servers', and keeps the last
/// few for a start-up failure's message. Reads until the server closes
/// it, so the server never blocks on a full pipe.
pub async fn log_stderr(server: String, stderr: impl AsyncRead + Unpin, tail: StderrTail) {
    let mut reader = tokio::io::BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(buf) => buf,
        };
        let end = buf.iter().position(|b| *b == b'\n');
        let chunk = &buf[..end.unwrap_or(buf.len())];
        let room = STDERR_LINE_MAX.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let consumed = chunk.len() + usize::from(end.is_some());
        reader.consume(consumed);
        if end.is_some() {
            log_stderr_line(&server, &line, &tail);
            line.clear();
        }
    }
    if !line.is_empty() {
        log_stderr_line(&server, &line, &tail);
    }
}

fn log_stderr_line(server: &str, line: &[u8], tail: &StderrTail) {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end();
    tracing::info!(target: "agenthost::mcp::stderr", server, "{line}");
    if !line.is_empty() {
        tail.push(line);
    }
}
