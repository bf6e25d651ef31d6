//! Reading a `tool-result`'s content, for formats that show text.
//!
//! The host hands over the MCP `tools/call` result as JSON text, or, when
//! it failed the call itself (unknown tool, role denied, server down), a
//! JSON string with the reason. Formats that show one message either way
//! read it here, so a server's error result and the host's own read alike.

use serde::Deserialize;

/// The result's text blocks joined by newlines, the host's message, or
/// the content as it is when it is neither.
pub fn text(content: &str) -> String {
    #[derive(Deserialize)]
    struct Block {
        text: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Content {
        Result { content: Vec<Block> },
        Message(String),
    }
    match serde_json::from_str::<Content>(content) {
        Ok(Content::Result { content }) => content
            .into_iter()
            .filter_map(|b| b.text)
            .collect::<Vec<_>>()
            .join("\n"),
        Ok(Content::Message(message)) => message,
        Err(_) => content.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::text;

    #[test]
    fn a_server_result_and_a_host_message_read_alike() {
        assert_eq!(
            text(
                r#"{"content":[{"type":"text","text":"no such note"},{"type":"image","data":"x"},{"type":"text","text":"try list_notes"}],"isError":true}"#
            ),
            "no such note\ntry list_notes"
        );
        assert_eq!(
            text(r#""role `viewer` may not call `add_note`""#),
            "role `viewer` may not call `add_note`"
        );
        assert_eq!(text("not json"), "not json");
    }
}
