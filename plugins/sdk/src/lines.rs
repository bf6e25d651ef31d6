//! Reassembling lines from a byte stream that arrives in arbitrary chunks.

/// Buffers bytes and yields complete lines (without `\n` or `\r\n`).
///
/// Providers stream SSE or JSON lines, and the host feeds whatever the
/// network delivered, so a line (or a UTF-8 character) may be split across
/// calls.
#[derive(Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    /// Adds `bytes` and calls `on_line` for every line they complete.
    pub fn feed(&mut self, bytes: &[u8], mut on_line: impl FnMut(&str)) {
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(pos);
            rest = &tail[1..];
            if self.pending.is_empty() {
                on_line(&lossy(trim_cr(head)));
            } else {
                self.pending.extend_from_slice(head);
                let line = std::mem::take(&mut self.pending);
                on_line(&lossy(trim_cr(&line)));
            }
        }
        self.pending.extend_from_slice(rest);
    }

    /// Yields the unterminated last line, if any.
    pub fn finish(&mut self, mut on_line: impl FnMut(&str)) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            on_line(&lossy(trim_cr(&line)));
        }
    }

    /// [`feed`](Self::feed) for a fallible decoder: stops at the first
    /// error and returns it. Later lines are buffered, not decoded.
    pub fn try_feed<E>(
        &mut self,
        bytes: &[u8],
        on_line: impl FnMut(&str) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut first_error = FirstError::new(on_line);
        self.feed(bytes, |line| first_error.call(line));
        first_error.into_result()
    }

    /// [`finish`](Self::finish) for a fallible decoder.
    pub fn try_finish<E>(&mut self, on_line: impl FnMut(&str) -> Result<(), E>) -> Result<(), E> {
        let mut first_error = FirstError::new(on_line);
        self.finish(|line| first_error.call(line));
        first_error.into_result()
    }
}

/// Calls a fallible line handler until it first fails.
struct FirstError<F, E> {
    on_line: F,
    error: Option<E>,
}

impl<F: FnMut(&str) -> Result<(), E>, E> FirstError<F, E> {
    fn new(on_line: F) -> Self {
        FirstError {
            on_line,
            error: None,
        }
    }

    fn call(&mut self, line: &str) {
        if self.error.is_none()
            && let Err(e) = (self.on_line)(line)
        {
            self.error = Some(e);
        }
    }

    fn into_result(self) -> Result<(), E> {
        self.error.map_or(Ok(()), Err)
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn lossy(line: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(line)
}

/// A response format read line by line: the part of a provider decoder
/// that differs between providers.
pub trait LineProtocol: Default {
    type Event;
    type Error;

    /// Decodes one complete line, appending what it means to `events`.
    fn line(&mut self, line: &str, events: &mut Vec<Self::Event>) -> Result<(), Self::Error>;

    /// The body ended: a protocol that had not seen its end marker can
    /// report a cut stream here.
    fn end(&mut self, _events: &mut Vec<Self::Event>) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// A provider decoder: line reassembly plus a [`LineProtocol`].
#[derive(Default)]
pub struct LineDecoder<P> {
    lines: LineBuffer,
    protocol: P,
}

impl<P: LineProtocol> LineDecoder<P> {
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<P::Event>, P::Error> {
        let mut events = Vec::new();
        let protocol = &mut self.protocol;
        self.lines
            .try_feed(bytes, |line| protocol.line(line, &mut events))?;
        Ok(events)
    }

    pub fn finish(&mut self) -> Result<Vec<P::Event>, P::Error> {
        let mut events = Vec::new();
        let protocol = &mut self.protocol;
        self.lines
            .try_finish(|line| protocol.line(line, &mut events))?;
        self.protocol.end(&mut events)?;
        Ok(events)
    }
}

/// The payload of an SSE `data:` line, or `None` for any other line.
pub fn sse_data(line: &str) -> Option<&str> {
    let data = line.strip_prefix("data:")?;
    Some(data.strip_prefix(' ').unwrap_or(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_lines_split_across_chunks() {
        let mut buf = LineBuffer::default();
        let mut lines = Vec::new();
        buf.feed(b"data: a", |l| lines.push(l.to_owned()));
        buf.feed(b"bc\r\n\ndata: \xc3", |l| lines.push(l.to_owned()));
        buf.feed(b"\xa9\n", |l| lines.push(l.to_owned()));
        buf.feed(b"tail", |l| lines.push(l.to_owned()));
        buf.finish(|l| lines.push(l.to_owned()));
        assert_eq!(lines, ["data: abc", "", "data: é", "tail"]);
        assert_eq!(sse_data("data: x"), Some("x"));
        assert_eq!(sse_data("data:x"), Some("x"));
        assert_eq!(sse_data("event: x"), None);
    }

    #[derive(Default)]
    struct Counting {
        seen: usize,
    }

    impl LineProtocol for Counting {
        type Event = String;
        type Error = String;

        fn line(&mut self, line: &str, events: &mut Vec<String>) -> Result<(), String> {
            self.seen += 1;
            events.push(line.to_owned());
            Ok(())
        }

        fn end(&mut self, _events: &mut Vec<String>) -> Result<(), String> {
            if self.seen == 2 {
                Ok(())
            } else {
                Err(format!("saw {}", self.seen))
            }
        }
    }

    #[test]
    fn line_decoders_decode_and_check_the_end() {
        let mut decoder = LineDecoder::<Counting>::default();
        assert_eq!(decoder.feed(b"a\nb").unwrap(), ["a"]);
        assert_eq!(decoder.finish().unwrap(), ["b"]);
        let mut cut = LineDecoder::<Counting>::default();
        cut.feed(b"a\n").unwrap();
        assert_eq!(cut.finish().unwrap_err(), "saw 1");
    }

    #[test]
    fn fallible_feeding_stops_at_the_first_error() {
        let mut buf = LineBuffer::default();
        let mut seen = Vec::new();
        let result = buf.try_feed(b"a\nbad\nc\n", |line| {
            seen.push(line.to_owned());
            if line == "bad" {
                Err(line.to_owned())
            } else {
                Ok(())
            }
        });
        assert_eq!(result, Err("bad".to_owned()));
        assert_eq!(seen, ["a", "bad"]);
    }
}
