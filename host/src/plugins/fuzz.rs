//! Seeded random input for every built-in decoder and encoder, through
//! the real runtime. Garbage may be refused with a reported error; it must
//! never trap a plugin, overrun its deadline or break its output. Bounded
//! in rounds so it runs in the test command; the seed makes a failure
//! reproducible.

use super::tests::runtime;
use super::*;

const ROUNDS: usize = 150;

/// xorshift64*: deterministic, dependency-free, good enough to fuzz.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// Text mixing protocol fragments, JSON punctuation, multi-byte
    /// characters and raw noise, so decoders get past their first check.
    fn text(&mut self, max: usize) -> String {
        const PIECES: &[&str] = &[
            "data: ",
            "event: ",
            "\n",
            "\n\n",
            "\r\n",
            "[DONE]",
            "{",
            "}",
            "[",
            "]",
            "\"",
            ":",
            ",",
            "\\",
            "\\u00",
            "choices",
            "delta",
            "content",
            "tool_calls",
            "index",
            "arguments",
            "type",
            "content_block_delta",
            "input_json_delta",
            "message_stop",
            "finish_reason",
            "null",
            "0",
            "-1",
            "1e999",
            "é",
            "世界",
            "👋",
            "\u{0}",
            "\u{7f}",
            "text",
        ];
        (0..self.below(max))
            .map(|_| self.pick(PIECES).to_owned())
            .collect()
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let mut bytes = self.text(max).into_bytes();
        for _ in 0..self.below(4) {
            if !bytes.is_empty() {
                let at = self.below(bytes.len());
                bytes[at] = self.next() as u8;
            }
        }
        bytes
    }
}

/// Failures a plugin may answer garbage with; anything else is a bug.
fn tolerated(failure: &PluginFailure) -> bool {
    matches!(failure, PluginFailure::Reported { .. })
}

#[tokio::test]
async fn decoders_survive_random_streams() {
    let runtime = runtime().await;
    let mut rng = Rng(0x5eed_0001);
    for name in ["openai", "anthropic", "mock"] {
        let plugin = runtime.provider(name).unwrap();
        for round in 0..ROUNDS {
            let mut instance = plugin.instantiate().await.unwrap();
            let decoder = instance.new_decoder().await.unwrap();
            let mut outcome = Ok(Vec::new());
            for _ in 0..rng.below(6) {
                let chunk = rng.bytes(40);
                outcome = instance.feed(decoder, &chunk).await;
                if outcome.is_err() {
                    break;
                }
            }
            if outcome.is_ok() {
                outcome = instance.finish(decoder).await;
            }
            if let Err(failure) = outcome {
                assert!(tolerated(&failure), "{name} round {round}: {failure}");
            }
        }
    }
}

fn call(rng: &mut Rng) -> ToolCallInfo {
    ToolCallInfo {
        id: rng.text(3),
        name: rng.text(3),
        server: rng.text(2),
        tool: rng.text(2),
    }
}

fn event(rng: &mut Rng) -> ChatEvent {
    let reasons = [
        FinishReason::Stop,
        FinishReason::ToolCalls,
        FinishReason::Length,
        FinishReason::ContentFilter,
    ];
    match rng.below(8) {
        0 => ChatEvent::ToolCallStart(call(rng)),
        1 => ChatEvent::ToolCallArgsDelta(ToolCallArgsDelta {
            id: rng.text(3),
            fragment: rng.text(8),
        }),
        2 => ChatEvent::ToolCall(ToolCallReady {
            call: call(rng),
            arguments: rng.text(8),
        }),
        3 => ChatEvent::ToolResult(ToolResult {
            call: call(rng),
            content: rng.text(12),
            is_error: rng.below(2) == 0,
        }),
        4 => ChatEvent::TurnEnd(TurnEnd {
            iteration: rng.next() as u32,
            reason: reasons[rng.below(reasons.len())],
        }),
        _ => ChatEvent::TextDelta(rng.text(10)),
    }
}

#[tokio::test]
async fn encoders_survive_random_event_sequences() {
    let runtime = runtime().await;
    let mut rng = Rng(0x5eed_0002);
    for name in ["simple", "truefoundry", "mcp-chat", "feather"] {
        let plugin = runtime.encoder(name).unwrap();
        let text_format = plugin.info.content_type.starts_with("text/");
        for round in 0..ROUNDS {
            let options = StreamOptions {
                response_id: rng.text(3),
                model: rng.text(3),
                created: rng.next(),
            };
            let mut instance = plugin.instantiate(&options).await.unwrap();
            let mut out = Vec::new();
            for _ in 0..rng.below(5) {
                let batch: Vec<ChatEvent> = (0..rng.below(4)).map(|_| event(&mut rng)).collect();
                out.extend(
                    instance
                        .encode(&batch)
                        .await
                        .unwrap_or_else(|failure| panic!("{name} round {round}: {failure}")),
                );
            }
            let last = match rng.below(2) {
                0 => ChatEvent::Done,
                _ => ChatEvent::Error(rng.text(6)),
            };
            out.extend(instance.encode(&[last]).await.unwrap());
            out.extend(instance.finish().await.unwrap());
            if text_format {
                assert!(
                    std::str::from_utf8(&out).is_ok(),
                    "{name} round {round}: output is not UTF-8"
                );
            }
        }
    }
}
