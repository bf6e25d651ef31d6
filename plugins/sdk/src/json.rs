//! Writing JSON text by hand, faster than building `serde_json::Value`s.

use crate::types::ToolCallReady;

/// Appends `s` as a JSON string literal (quotes included).
///
/// Non-ASCII characters are written as UTF-8, not `\u` escapes: every
/// format we serve is UTF-8 and the seed examples show raw characters.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends `items` separated by commas, each written by `write`: the
/// inside of a JSON array.
pub fn write_separated<T>(
    out: &mut String,
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut String, T),
) {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write(out, item);
    }
}

/// Appends valid JSON text re-spaced the way Python's `json.dumps` writes
/// it (`", "` and `": "` separators, no other whitespace), keeping keys,
/// order and escapes exactly as given.
///
/// Seed contracts written against Python servers show this spacing, and a
/// token-level pass is much cheaper than parsing and re-serializing.
pub fn write_python_spaced(out: &mut String, json: &str) {
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            ',' => out.push_str(", "),
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
}

/// Appends an approval request's fields as the simple frontend and the
/// MCP Chat API show them, spaced as Python prints JSON: `"run_id": ...,
/// "call_id": ..., "server": ..., "tool": ..., "arguments": {...}`.
pub fn write_approval_spaced(out: &mut String, run_id: &str, ready: &ToolCallReady) {
    out.push_str(r#""run_id": "#);
    write_str(out, run_id);
    out.push_str(r#", "call_id": "#);
    write_str(out, &ready.call.id);
    out.push_str(r#", "server": "#);
    write_str(out, &ready.call.server);
    out.push_str(r#", "tool": "#);
    write_str(out, &ready.call.tool);
    out.push_str(r#", "arguments": "#);
    write_python_spaced(out, &ready.arguments);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ToolCallInfo;

    #[test]
    fn approval_fields_are_written_in_order_with_the_arguments_spaced() {
        let ready = ToolCallReady {
            call: ToolCallInfo {
                id: "call_1".into(),
                name: "demo__add_note".into(),
                server: "demo".into(),
                tool: "add_note".into(),
            },
            arguments: r#"{"title":"t"}"#.into(),
        };
        let mut out = String::new();
        write_approval_spaced(&mut out, "run1", &ready);
        assert_eq!(
            out,
            r#""run_id": "run1", "call_id": "call_1", "server": "demo", "tool": "add_note", "arguments": {"title": "t"}"#
        );
    }

    #[test]
    fn escapes_controls_and_quotes_but_keeps_unicode() {
        let mut out = String::new();
        write_str(&mut out, "a\"b\\c\nd\u{1}é°");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é°""#);
    }

    #[test]
    fn python_spacing_leaves_strings_alone() {
        let mut out = String::new();
        write_python_spaced(&mut out, r#"{"a":1,"b":{"c, d":"x: \"y\""},"e":[1, 2]}"#);
        assert_eq!(out, r#"{"a": 1, "b": {"c, d": "x: \"y\""}, "e": [1, 2]}"#);
    }
}
