//! Numbering a streamed answer's events, so a client can resume after the
//! last one it saw.
//!
//! An encoder's output is cut into SSE frames (text up to a blank line),
//! and each gets `id: N` as its first line: a client's `Last-Event-ID`
//! then names the last frame it received whole, whatever the format puts
//! in its frames. Output that is not `text/event-stream` cannot carry ids;
//! each chunk of it counts as one event, for `?after=N`.

use std::ops::Range;

use bytes::Bytes;

/// Cuts one response's output into numbered events.
pub(super) struct Framer {
    sse: bool,
    /// The number the next event gets; the first is 1.
    next_id: u64,
    /// The start of a frame whose blank line has not come yet.
    partial: Vec<u8>,
}

/// Output ready to send, and where each event lies in it.
pub(super) struct Framed {
    pub bytes: Bytes,
    pub events: Vec<Range<usize>>,
}

impl Framer {
    pub(super) fn new(content_type: &str) -> Framer {
        Framer {
            sse: content_type
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream"),
            next_id: 1,
            partial: Vec::new(),
        }
    }

    /// The whole events in what has come so far; the start of an
    /// unfinished frame waits for the rest of it, unless this is the
    /// `last` output of the response, when it is sent as it is.
    pub(super) fn frame(&mut self, output: Vec<u8>, last: bool) -> Framed {
        if !self.sse {
            return self.whole(output);
        }
        let input = match self.partial.is_empty() {
            true => output,
            false => {
                let mut joined = std::mem::take(&mut self.partial);
                joined.extend_from_slice(&output);
                joined
            }
        };
        let mut bytes = Vec::with_capacity(input.len() + 16);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(end) = frame_end(&input, start) {
            let frame = &input[start..end];
            if frame.iter().all(|b| matches!(b, b'\r' | b'\n')) {
                // A stray blank line: no event, so no number.
                bytes.extend_from_slice(frame);
            } else {
                let at = bytes.len();
                bytes.extend_from_slice(b"id: ");
                bytes.extend_from_slice(itoa::Buffer::new().format(self.next_id).as_bytes());
                bytes.push(b'\n');
                bytes.extend_from_slice(frame);
                events.push(at..bytes.len());
                self.next_id += 1;
            }
            start = end;
        }
        match last {
            true => bytes.extend_from_slice(&input[start..]),
            false => self.partial = input[start..].to_vec(),
        }
        Framed {
            bytes: Bytes::from(bytes),
            events,
        }
    }

    fn whole(&self, output: Vec<u8>) -> Framed {
        let mut events = Vec::new();
        if !output.is_empty() {
            events.push(0..output.len());
        }
        Framed {
            bytes: Bytes::from(output),
            events,
        }
    }
}

/// Where the frame starting at `start` ends: just past its blank line.
/// SSE ends a line with `\r\n`, `\n` or `\r`.
fn frame_end(input: &[u8], start: usize) -> Option<usize> {
    let mut line_start = start;
    loop {
        let at = line_start + memchr::memchr2(b'\n', b'\r', &input[line_start..])?;
        let crlf = input[at] == b'\r' && input.get(at + 1) == Some(&b'\n');
        let next = at + 1 + usize::from(crlf);
        if at == line_start {
            return Some(next);
        }
        line_start = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_all(framer: &mut Framer, chunks: &[&str]) -> (String, Vec<String>) {
        let mut text = String::new();
        let mut events = Vec::new();
        for chunk in chunks {
            let framed = framer.frame(chunk.as_bytes().to_vec(), false);
            for range in framed.events {
                events.push(String::from_utf8(framed.bytes[range].to_vec()).unwrap());
            }
            text.push_str(std::str::from_utf8(&framed.bytes).unwrap());
        }
        (text, events)
    }

    #[test]
    fn every_sse_frame_gets_the_next_id_as_its_first_line() {
        let mut framer = Framer::new("text/event-stream; charset=utf-8");
        let (text, events) = frame_all(
            &mut framer,
            &["event: a\ndata: 1\n\ndata: 2\n\n", "data: [DONE]\n\n"],
        );
        assert_eq!(
            text,
            "id: 1\nevent: a\ndata: 1\n\nid: 2\ndata: 2\n\nid: 3\ndata: [DONE]\n\n"
        );
        assert_eq!(events[1], "id: 2\ndata: 2\n\n");
    }

    #[test]
    fn a_frame_split_across_chunks_is_sent_whole_once_its_blank_line_comes() {
        let mut framer = Framer::new("text/event-stream");
        let (text, events) = frame_all(&mut framer, &["data: a", "bc\n", "\ndata: d\r\n\r\n"]);
        assert_eq!(text, "id: 1\ndata: abc\n\nid: 2\ndata: d\r\n\r\n");
        assert_eq!(events.len(), 2);
        assert!(framer.frame(Vec::new(), true).bytes.is_empty());
    }

    #[test]
    fn stray_blank_lines_pass_through_unnumbered() {
        let mut framer = Framer::new("text/event-stream");
        let (text, events) = frame_all(&mut framer, &["\n\r\n: ping\n\n"]);
        assert_eq!(text, "\n\r\nid: 1\n: ping\n\n");
        assert_eq!(events, ["id: 1\n: ping\n\n"]);
    }

    #[test]
    fn an_unfinished_last_frame_is_sent_as_it_is_at_the_end() {
        let mut framer = Framer::new("text/event-stream");
        let (text, _) = frame_all(&mut framer, &["data: x\n\ndata: y"]);
        assert_eq!(text, "id: 1\ndata: x\n\n");
        assert_eq!(&framer.frame(Vec::new(), true).bytes[..], b"data: y");
    }

    #[test]
    fn other_content_types_count_each_chunk_as_an_event_and_keep_their_bytes() {
        let mut framer = Framer::new("application/x-ndjson");
        let (text, events) = frame_all(&mut framer, &["{\"a\":1}\n", "", "{\"b\":2}\n"]);
        assert_eq!(text, "{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(events, ["{\"a\":1}\n", "{\"b\":2}\n"]);
    }
}
