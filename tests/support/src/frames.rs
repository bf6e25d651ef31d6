//! Wire frames of the providers' streaming formats, built exactly as the
//! real APIs send them.

use serde_json::{Value, json};

/// One Anthropic SSE event.
pub fn anthropic_event(data: Value) -> String {
    format!(
        "event: {}\ndata: {data}\n\n",
        data["type"].as_str().unwrap()
    )
}

pub fn anthropic_message_start() -> String {
    anthropic_event(json!({ "type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "content": [],
        "model": "claude-test", "stop_reason": null, "usage": { "input_tokens": 10, "output_tokens": 1 } } }))
}

pub fn anthropic_text_block(index: u32, text: &str) -> Vec<String> {
    vec![
        anthropic_event(
            json!({ "type": "content_block_start", "index": index, "content_block": { "type": "text", "text": "" } }),
        ),
        anthropic_event(
            json!({ "type": "content_block_delta", "index": index, "delta": { "type": "text_delta", "text": text } }),
        ),
        anthropic_event(json!({ "type": "content_block_stop", "index": index })),
    ]
}

pub fn anthropic_tool_block(index: u32, id: &str, name: &str, fragments: &[&str]) -> Vec<String> {
    let mut events = vec![anthropic_event(
        json!({ "type": "content_block_start", "index": index,
        "content_block": { "type": "tool_use", "id": id, "name": name, "input": {} } }),
    )];
    for fragment in fragments {
        events.push(anthropic_event(
            json!({ "type": "content_block_delta", "index": index,
            "delta": { "type": "input_json_delta", "partial_json": fragment } }),
        ));
    }
    events.push(anthropic_event(
        json!({ "type": "content_block_stop", "index": index }),
    ));
    events
}

pub fn anthropic_stop(reason: &str) -> Vec<String> {
    vec![
        anthropic_event(
            json!({ "type": "message_delta", "delta": { "stop_reason": reason, "stop_sequence": null },
            "usage": { "output_tokens": 15 } }),
        ),
        anthropic_event(json!({ "type": "message_stop" })),
    ]
}

/// One `chat.completion.chunk` SSE frame.
pub fn chunk(delta: Value, finish_reason: Option<&str>) -> String {
    chunk_with(
        json!([{ "index": 0, "delta": delta, "finish_reason": finish_reason }]),
        None,
    )
}

fn chunk_with(choices: Value, usage: Option<Value>) -> String {
    let mut chunk = json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": choices,
    });
    if let Some(usage) = usage {
        chunk["usage"] = usage;
    }
    format!("data: {chunk}\n\n")
}

pub fn role_chunk() -> String {
    chunk(json!({ "role": "assistant", "content": "" }), None)
}

pub fn text_chunk(text: &str) -> String {
    chunk(json!({ "content": text }), None)
}

pub fn tool_start_chunk(index: u32, id: &str, name: &str) -> String {
    chunk(
        json!({ "tool_calls": [{ "index": index, "id": id, "type": "function",
                "function": { "name": name, "arguments": "" } }] }),
        None,
    )
}

pub fn tool_args_chunk(index: u32, fragment: &str) -> String {
    chunk(
        json!({ "tool_calls": [{ "index": index, "function": { "arguments": fragment } }] }),
        None,
    )
}

pub fn finish_chunk(reason: &str) -> String {
    chunk(json!({}), Some(reason))
}

/// The last chunk when the request asked for `stream_options.include_usage`:
/// no choices, the turn's token counts.
pub fn usage_chunk(prompt_tokens: u32, completion_tokens: u32) -> String {
    chunk_with(
        json!([]),
        Some(
            json!({ "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                     "total_tokens": prompt_tokens + completion_tokens }),
        ),
    )
}

pub const DONE: &str = "data: [DONE]\n\n";

/// Splits every frame in two mid-way, so decoders must reassemble lines.
pub fn split_writes(frames: Vec<String>) -> Vec<String> {
    frames
        .into_iter()
        .flat_map(|frame| {
            let mut cut = frame.len() / 2;
            while !frame.is_char_boundary(cut) {
                cut -= 1;
            }
            let (a, b) = frame.split_at(cut);
            [a.to_owned(), b.to_owned()]
        })
        .collect()
}
