//! The Feather API's error shapes: `{"error", "message"}` for everything
//! but validation, and FastAPI's `HTTPValidationError` for validation:
//! `{"detail": [{"type", "loc", "msg", "input", "ctx"?}]}`, with the
//! types and messages pydantic v2 uses, so clients written against the
//! real API read ours the same way. Every problem in a body is reported,
//! not only the first.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

/// A Feather error response.
#[derive(Debug)]
pub enum FeatherError {
    /// `{"error", "message"}` with this status.
    Api {
        status: StatusCode,
        error: &'static str,
        message: String,
    },
    /// 422 with the collected validation errors.
    Invalid(Vec<ValidationError>),
}

/// The body of every Feather error but validation's.
#[derive(Serialize, ToSchema)]
pub struct ErrorResponse {
    /// The kind, such as `NotFoundError`.
    error: &'static str,
    message: String,
}

/// FastAPI's 422 body.
#[derive(Serialize, ToSchema)]
pub struct HttpValidationError {
    detail: Vec<ValidationError>,
}

/// One entry of `detail`, its fields in FastAPI's order.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationError {
    #[serde(rename = "type")]
    kind: String,
    /// Where: `body`, `query` or `path`, then field names and indexes.
    #[schema(value_type = Vec<Value>)]
    loc: Loc,
    msg: String,
    input: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    ctx: Option<Value>,
}

impl FeatherError {
    pub fn new(
        status: StatusCode,
        error: &'static str,
        message: impl Into<String>,
    ) -> FeatherError {
        FeatherError::Api {
            status,
            error,
            message: message.into(),
        }
    }
}

impl IntoResponse for FeatherError {
    fn into_response(self) -> Response {
        match self {
            FeatherError::Api {
                status,
                error,
                message,
            } => (status, Json(ErrorResponse { error, message })).into_response(),
            FeatherError::Invalid(detail) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(HttpValidationError { detail }),
            )
                .into_response(),
        }
    }
}

/// Collects pydantic-style errors while a body is checked field by field.
#[derive(Default)]
pub struct Validator {
    errors: Vec<ValidationError>,
}

/// A location: `["body", "messages", 0, "role"]`.
pub type Loc = Vec<Value>;

pub fn loc(parts: &[&str]) -> Loc {
    parts.iter().map(|p| Value::from(*p)).collect()
}

pub fn at(mut base: Loc, part: impl Into<Value>) -> Loc {
    base.push(part.into());
    base
}

/// Fields whose values are secrets: an error shows them masked, as
/// pydantic shows a `SecretStr`.
const SECRET_FIELDS: &[&str] = &["bearer_token", "headers", "env"];
const MASK: &str = "**********";

/// `input` as an error may show it: a secret field's value masked, and so
/// are those inside an object that holds secret fields.
fn shown(loc: &Loc, input: &Value) -> Value {
    let secret = |name: &str| SECRET_FIELDS.contains(&name);
    if loc.iter().any(|part| part.as_str().is_some_and(secret)) {
        return Value::from(MASK);
    }
    match input {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .map(|(name, value)| {
                    let value = match secret(name) {
                        true => Value::from(MASK),
                        false => shown(&Vec::new(), value),
                    };
                    (name.clone(), value)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

impl Validator {
    pub fn error(
        &mut self,
        loc: Loc,
        kind: &str,
        msg: impl Into<String>,
        input: &Value,
        ctx: Option<Value>,
    ) {
        self.errors.push(ValidationError {
            kind: kind.to_owned(),
            input: shown(&loc, input),
            loc,
            msg: msg.into(),
            ctx,
        });
    }

    /// The errors so far, for when checking cannot go on.
    pub fn into_error(self) -> FeatherError {
        FeatherError::Invalid(self.errors)
    }

    pub fn finish(self) -> Result<(), FeatherError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(FeatherError::Invalid(self.errors))
        }
    }

    /// A required field of `object`, or a `missing` error.
    pub fn required<'a>(
        &mut self,
        object: &'a Map<String, Value>,
        loc: Loc,
        name: &str,
    ) -> Option<&'a Value> {
        let value = object.get(name);
        if value.is_none() {
            self.error(
                at(loc, name),
                "missing",
                "Field required",
                &Value::Object(object.clone()),
                None,
            );
        }
        value
    }

    /// An object that a model is read from.
    pub fn model<'a>(&mut self, loc: Loc, value: &'a Value) -> Option<&'a Map<String, Value>> {
        let object = value.as_object();
        if object.is_none() {
            self.error(
                loc,
                "model_attributes_type",
                "Input should be a valid dictionary or object to extract fields from",
                value,
                None,
            );
        }
        object
    }

    /// A free-form JSON object field (`dict`).
    pub fn dict<'a>(&mut self, loc: Loc, value: &'a Value) -> Option<&'a Map<String, Value>> {
        let object = value.as_object();
        if object.is_none() {
            self.error(
                loc,
                "dict_type",
                "Input should be a valid dictionary",
                value,
                None,
            );
        }
        object
    }

    pub fn string<'a>(&mut self, loc: Loc, value: &'a Value) -> Option<&'a str> {
        let text = value.as_str();
        if text.is_none() {
            self.error(
                loc,
                "string_type",
                "Input should be a valid string",
                value,
                None,
            );
        }
        text
    }

    pub fn list<'a>(
        &mut self,
        loc: Loc,
        value: &'a Value,
        min_length: usize,
    ) -> Option<&'a Vec<Value>> {
        let Some(items) = value.as_array() else {
            self.error(
                loc,
                "list_type",
                "Input should be a valid list",
                value,
                None,
            );
            return None;
        };
        if items.len() < min_length {
            self.error(
                loc,
                "too_short",
                format!(
                    "List should have at least {min_length} item after validation, not {}",
                    items.len()
                ),
                value,
                Some(json!({ "field_type": "List", "min_length": min_length, "actual_length": items.len() })),
            );
            return None;
        }
        Some(items)
    }

    /// One of a fixed set of strings (a `Literal`).
    pub fn literal<'a>(&mut self, loc: Loc, value: &'a Value, allowed: &[&str]) -> Option<&'a str> {
        let text = value.as_str().filter(|t| allowed.contains(t));
        if text.is_none() {
            let expected = allowed
                .iter()
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(" or ");
            self.error(
                loc,
                "literal_error",
                format!("Input should be {expected}"),
                value,
                Some(json!({ "expected": expected })),
            );
        }
        text
    }

    /// An integer in `min..=max`, read the way pydantic's lax mode does
    /// (`5.0`, `"5"`, `" 5.0 "` and `true` are integers).
    pub fn int_in(&mut self, loc: Loc, value: &Value, min: i64, max: i64) -> Option<i64> {
        let number = match value {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Some(i as f64),
                None => n.as_f64(),
            },
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::String(s) => match without_decimal_zeros(s.trim()).parse::<i64>() {
                Ok(n) => Some(n as f64),
                Err(_) => {
                    self.error(
                        loc,
                        "int_parsing",
                        "Input should be a valid integer, unable to parse string as an integer",
                        value,
                        None,
                    );
                    return None;
                }
            },
            _ => None,
        };
        let Some(number) = number else {
            self.error(
                loc,
                "int_type",
                "Input should be a valid integer",
                value,
                None,
            );
            return None;
        };
        if number.fract() != 0.0 {
            self.error(
                loc,
                "int_from_float",
                "Input should be a valid integer, got a number with a fractional part",
                value,
                None,
            );
            return None;
        }
        if number < min as f64 {
            self.error(
                loc,
                "greater_than_equal",
                format!("Input should be greater than or equal to {min}"),
                value,
                Some(json!({ "ge": min })),
            );
            return None;
        }
        if number > max as f64 {
            self.error(
                loc,
                "less_than_equal",
                format!("Input should be less than or equal to {max}"),
                value,
                Some(json!({ "le": max })),
            );
            return None;
        }
        Some(number as i64)
    }

    /// A UUID, in any of the spellings pydantic accepts. Its error names
    /// the position of a bad character from 1, as pydantic's does.
    pub fn uuid(&mut self, loc: Loc, value: &Value) -> Option<uuid::Uuid> {
        let Some(text) = value.as_str() else {
            self.error(
                loc,
                "uuid_type",
                "UUID input should be a string, bytes or UUID object",
                value,
                None,
            );
            return None;
        };
        match uuid::Uuid::parse_str(text.trim()) {
            Ok(id) => Some(id),
            Err(e) => {
                let error = counted_from_one(&e.to_string());
                self.error(
                    loc,
                    "uuid_parsing",
                    format!("Input should be a valid UUID, {error}"),
                    value,
                    Some(json!({ "error": error })),
                );
                None
            }
        }
    }

    /// Fields a model forbids (`extra="forbid"`). Called after the model's
    /// own fields are checked: pydantic reports extra inputs last.
    pub fn no_extra(&mut self, loc: Loc, object: &Map<String, Value>, known: &[&str]) {
        for (name, value) in object {
            if !known.contains(&name.as_str()) {
                self.error(
                    at(loc.clone(), name.as_str()),
                    "extra_forbidden",
                    "Extra inputs are not permitted",
                    value,
                    None,
                );
            }
        }
    }
}

/// `"5.000"` as `"5"`: pydantic reads a string of a whole number written
/// with a decimal point as that number.
fn without_decimal_zeros(text: &str) -> &str {
    match text.split_once('.') {
        Some((whole, zeros)) if !whole.is_empty() && zeros.bytes().all(|b| b == b'0') => whole,
        _ => text,
    }
}

/// The uuid parser counts a bad character's position from 0
/// (`found `o` at 1`); pydantic's message counts from 1.
fn counted_from_one(message: &str) -> String {
    let Some((head, position)) = message.rsplit_once(" at ") else {
        return message.to_owned();
    };
    match position.parse::<usize>() {
        Ok(n) if message.starts_with("invalid character") => format!("{head} at {}", n + 1),
        _ => message.to_owned(),
    }
}

/// The request body as JSON, or FastAPI's answer when it is not.
pub fn json_body(bytes: &[u8]) -> Result<Value, FeatherError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        let mut v = Validator::default();
        v.error(
            loc(&["body"]),
            "missing",
            "Field required",
            &Value::Null,
            None,
        );
        return Err(FeatherError::Invalid(v.errors));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let mut v = Validator::default();
        v.error(
            vec!["body".into(), position(bytes, &e).into()],
            "json_invalid",
            "JSON decode error",
            &json!({}),
            Some(json!({ "error": e.to_string() })),
        );
        FeatherError::Invalid(v.errors)
    })
}

/// Where parsing failed as a byte offset, as Python's `json` reports it:
/// the end of the input for a truncated body, else the offending byte.
fn position(bytes: &[u8], error: &serde_json::Error) -> usize {
    if error.is_eof() {
        return bytes.len();
    }
    let line_start: usize = bytes
        .split(|b| *b == b'\n')
        .take(error.line().saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    (line_start + error.column())
        .saturating_sub(1)
        .min(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(result: Result<(), FeatherError>) -> Vec<Value> {
        match result {
            Err(FeatherError::Invalid(detail)) => detail.iter().map(|e| json!(e)).collect(),
            other => panic!("expected validation errors, got {other:?}"),
        }
    }

    #[test]
    fn reports_like_pydantic() {
        let mut v = Validator::default();
        v.int_in(loc(&["body", "max_tokens"]), &json!(0), 1, 16384);
        v.int_in(loc(&["body", "max_tokens"]), &json!(20000), 1, 16384);
        v.int_in(loc(&["body", "max_tokens"]), &json!(1.5), 1, 16384);
        v.int_in(loc(&["body", "max_tokens"]), &json!("many"), 1, 16384);
        assert_eq!(v.int_in(loc(&["x"]), &json!("12"), 1, 16384), Some(12));
        assert_eq!(v.int_in(loc(&["x"]), &json!(12.0), 1, 16384), Some(12));
        assert_eq!(v.int_in(loc(&["x"]), &json!(" 12.00 "), 1, 16384), Some(12));
        assert_eq!(v.int_in(loc(&["x"]), &json!(true), 1, 16384), Some(1));
        v.literal(
            loc(&["body", "messages", "0", "role"]),
            &json!("system"),
            &["user", "assistant"],
        );
        let errors = detail(v.finish());
        let kinds: Vec<&str> = errors.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "greater_than_equal",
                "less_than_equal",
                "int_from_float",
                "int_parsing",
                "literal_error"
            ]
        );
        assert_eq!(errors[1]["ctx"], json!({ "le": 16384 }));
        assert_eq!(errors[4]["msg"], "Input should be 'user' or 'assistant'");
    }

    #[test]
    fn secret_fields_are_masked_wherever_an_error_shows_them() {
        let body = json!({ "url": 5, "bearer_token": "sk-secret", "headers": { "a": "b" } });
        let mut v = Validator::default();
        let object = v.model(loc(&["body"]), &body).unwrap();
        v.required(object, loc(&["body"]), "name");
        v.string(loc(&["body", "bearer_token"]), &json!(7));
        let text = serde_json::to_string(&detail(v.finish())).unwrap();
        assert!(
            !text.contains("sk-secret") && !text.contains("\"b\""),
            "{text}"
        );
        assert!(text.contains("\"bearer_token\":\"**********\""), "{text}");
        assert!(text.contains("\"input\":\"**********\""), "{text}");
    }

    #[test]
    fn points_at_broken_json() {
        let Err(FeatherError::Invalid(errors)) = json_body(b"{\n  \"a\": }") else {
            panic!("expected an error");
        };
        let errors: Vec<Value> = errors.iter().map(|e| json!(e)).collect();
        assert_eq!(errors[0]["type"], "json_invalid");
        assert_eq!(errors[0]["loc"], json!(["body", 9]));
    }
}
