//! Parsing JSON request bodies with errors that name what to fix. The
//! guard has already refused bodies not sent as `application/json`. Each
//! surface turns a [`BodyError`] into its own contract's error shape.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, Unexpected, Visitor};

#[derive(Debug, Clone)]
pub enum BodyError {
    /// Not JSON at all (malformed, truncated, empty, invalid UTF-8).
    Syntax(String),
    /// JSON, but not the expected shape; `path` names the field.
    Shape { path: String, message: String },
}

impl BodyError {
    pub fn message(&self) -> String {
        match self {
            BodyError::Syntax(message) => format!("request body is not valid JSON: {message}"),
            BodyError::Shape { path, message } if path.is_empty() || path == "." => {
                format!("invalid request body: {message}")
            }
            BodyError::Shape { path, message } => format!("invalid field `{path}`: {message}"),
        }
    }
}

/// A body that must be a JSON object.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    parse(bytes, Container::Object)
}

/// A body that must be a JSON array.
pub fn parse_json_list<T: DeserializeOwned>(bytes: &[u8]) -> Result<Vec<T>, BodyError> {
    parse(bytes, Container::Array)
}

#[derive(Clone, Copy)]
enum Container {
    Object,
    Array,
}

fn parse<T: DeserializeOwned>(bytes: &[u8], container: Container) -> Result<T, BodyError> {
    // serde_json checks UTF-8 only in strings it keeps: bytes in a field
    // it ignores would pass unnoticed. Checked once here, the text is
    // then parsed as a `str`, which serde does not check again.
    let text = std::str::from_utf8(bytes).map_err(|e| {
        BodyError::Syntax(format!(
            "the body is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    let Some(first) = text.bytes().find(|b| !b.is_ascii_whitespace()) else {
        return Err(BodyError::Syntax("the body is empty; send JSON".into()));
    };
    // serde would read an array into a struct field by field and complain
    // about an element; naming the expected container is clearer.
    let (opening, name) = match container {
        Container::Object => (b'{', "object"),
        Container::Array => (b'[', "array"),
    };
    if first != opening {
        serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map_err(|e| BodyError::Syntax(e.to_string()))?;
        return Err(BodyError::Shape {
            path: String::new(),
            message: format!("the body must be a JSON {name}"),
        });
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let message = unquoted(&path, strip_position(&inner));
            BodyError::Shape { path, message }
        } else {
            BodyError::Syntax(inner.to_string())
        }
    })?;
    deserializer
        .end()
        .map_err(|e| BodyError::Syntax(e.to_string()))?;
    Ok(value)
}

/// A count sent as a JSON number. Contracts that type a count as `number`
/// get `500.0` from clients whose numbers are all floats: a whole float is
/// taken as the count, `500.5` is refused naming the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub u32);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Count, D::Error> {
        deserializer.deserialize_any(CountVisitor)
    }
}

struct CountVisitor;

impl Visitor<'_> for CountVisitor {
    type Value = Count;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a whole number from 0 to 4294967295")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
        u32::try_from(v)
            .map(Count)
            .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
        u64::try_from(v)
            .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
            .and_then(|v| self.visit_u64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Count, E> {
        if v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v) {
            Ok(Count(v as u32))
        } else {
            Err(E::invalid_value(Unexpected::Float(v), &self))
        }
    }
}

/// Fields whose values are secrets: an error about one does not repeat the
/// value (serde's messages quote what they got).
const SECRET_FIELDS: &[&str] = &["bearer_token", "headers", "env"];

/// `message` about the field at `path`, without the value when the field
/// holds secrets: `expected a map` stays, `string "sk-..."` goes.
fn unquoted(path: &str, message: String) -> String {
    let secret = path
        .split(['.', '['])
        .any(|part| SECRET_FIELDS.contains(&part));
    if !secret {
        return message;
    }
    match message.find("expected ") {
        Some(at) => format!(
            "invalid value (not repeated: the field holds secrets), {}",
            &message[at..]
        ),
        None => "invalid value (not repeated: the field holds secrets)".into(),
    }
}

/// serde's data errors end in " at line 1 column 12", which says nothing
/// useful once the field is named.
fn strip_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        message: String,
    }

    #[test]
    fn a_count_may_be_a_whole_float_and_nothing_else() {
        #[derive(serde::Deserialize, Debug)]
        struct Limits {
            max_tokens: Count,
        }
        let count = |body: &str| parse_json::<Limits>(body.as_bytes()).map(|l| l.max_tokens.0);
        assert_eq!(count(r#"{"max_tokens": 500}"#).unwrap(), 500);
        assert_eq!(count(r#"{"max_tokens": 500.0}"#).unwrap(), 500);
        assert_eq!(count(r#"{"max_tokens": 5e2}"#).unwrap(), 500);
        for (bad, got) in [
            ("500.5", "floating point `500.5`"),
            ("-1", "integer `-1`"),
            ("4294967296", "integer `4294967296`"),
            ("\"500\"", "string \"500\""),
        ] {
            let error = count(&format!(r#"{{"max_tokens": {bad}}}"#)).unwrap_err();
            assert_eq!(
                error.message(),
                format!(
                    "invalid field `max_tokens`: invalid value: {got}, expected a whole number from 0 to 4294967295"
                )
                .replace("invalid value: string", "invalid type: string"),
                "{bad}"
            );
        }
    }

    #[test]
    fn names_the_problem() {
        let missing = parse_json::<Body>(b"{}").unwrap_err();
        assert_eq!(
            missing.message(),
            "invalid request body: missing field `message`"
        );
        let wrong = parse_json::<Body>(br#"{"message": 5}"#).unwrap_err();
        assert_eq!(
            wrong.message(),
            "invalid field `message`: invalid type: integer `5`, expected a string"
        );
        assert!(matches!(
            parse_json::<Body>(b"{\"message\":"),
            Err(BodyError::Syntax(_))
        ));
        assert!(matches!(parse_json::<Body>(b""), Err(BodyError::Syntax(_))));
        assert!(matches!(
            parse_json::<Body>(b"{\"message\":\"a\"} x"),
            Err(BodyError::Syntax(_))
        ));
        assert!(matches!(
            parse_json::<Body>(b"\xff\xfe"),
            Err(BodyError::Syntax(_))
        ));
        let array = parse_json::<Body>(b"[\"hi\"]").unwrap_err();
        assert_eq!(
            array.message(),
            "invalid request body: the body must be a JSON object"
        );
        assert!(matches!(
            parse_json::<Body>(b"nope"),
            Err(BodyError::Syntax(_))
        ));
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Server {
            headers: std::collections::BTreeMap<String, String>,
        }
        let secret = parse_json::<Server>(br#"{"headers": "Bearer sk-secret"}"#).unwrap_err();
        assert_eq!(
            secret.message(),
            "invalid field `headers`: invalid value (not repeated: the field holds secrets), expected a map"
        );
        let deep = "[".repeat(10_000);
        assert!(matches!(
            parse_json::<Body>(deep.as_bytes()),
            Err(BodyError::Syntax(_))
        ));
    }
}
