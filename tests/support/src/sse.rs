//! Streamed answers as a client reads them.

use futures::StreamExt;

/// The body of `response`; for an SSE stream, without the `id: N` line
/// agenthost puts first in every frame, once [`unnumbered`] has checked
/// the numbering.
pub async fn body_text(response: reqwest::Response) -> String {
    let sse = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let text = response.text().await.unwrap();
    match sse {
        true => unnumbered(&text),
        false => text,
    }
}

/// `body` without the `id: N` line that starts each of its frames, after
/// checking that the frames are numbered 1, 2, 3... with no gap, as a
/// client resuming with `Last-Event-ID` relies on.
pub fn unnumbered(body: &str) -> String {
    let mut frames = String::with_capacity(body.len());
    for (i, frame) in body.split_inclusive("\n\n").enumerate() {
        let Some((id, rest)) = frame.strip_prefix("id: ").and_then(|f| f.split_once('\n')) else {
            panic!("frame {} has no id line: {frame:?}\nin:\n{body}", i + 1);
        };
        assert_eq!(
            id,
            (i + 1).to_string(),
            "frames are numbered in order:\n{body}"
        );
        frames.push_str(rest);
    }
    frames
}

/// Reads more of a stream: until `seen` is in `text`, or to its end.
pub async fn read_until<S>(body: &mut S, text: &mut String, seen: Option<&str>)
where
    S: futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
{
    while seen.is_none_or(|seen| !text.contains(seen)) {
        match body.next().await {
            Some(Ok(chunk)) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Some(Err(_)) | None => return,
        }
    }
}
