//! Validation errors byte for byte as FastAPI sends them: every request
//! here also goes to the seed's schemas served by FastAPI and pydantic
//! themselves (`tests/fixtures/feather_fastapi.py`), and both answers
//! must be the same bytes.

use reqwest::Method;
use serde_json::{Value, json};
use testkit::*;
use tokio::io::AsyncWriteExt;

use super::*;

const CHAT: &str = "/v1/mcp-chat/stream";
const TEST_CALL: &str =
    "/v1/integrations/connections/0b9f6f5e-52a4-4a8e-9d57-3c2f7f0a1b2c/test-mcp-call";

/// Requests that FastAPI refuses or, for the lax inputs pydantic takes,
/// accepts.
fn cases() -> Vec<(&'static str, String)> {
    let ok = json!([{ "role": "user", "content": "hi" }]);
    let chat = |extra: Value| {
        let mut body = json!({ "messages": ok });
        for (name, value) in extra.as_object().unwrap() {
            body[name] = value.clone();
        }
        (CHAT, body.to_string())
    };
    vec![
        (CHAT, "{}".into()),
        (CHAT, r#"{"messages": []}"#.into()),
        (CHAT, r#"{"messages": "hi"}"#.into()),
        (CHAT, r#"{"messages": [{"role": "system", "content": "x"}]}"#.into()),
        (CHAT, r#"{"messages": [{"role": "user"}, 7, null]}"#.into()),
        (CHAT, r#"{"messages": [{"zeta": 1, "alpha": {"b": 1, "a": 2}}]}"#.into()),
        (CHAT, r#"{"messages": [{"role": "user", "content": 1}]}"#.into()),
        chat(json!({ "end_user_id": "contact-42" })),
        chat(json!({ "end_user_id": "6f1c2f7e-1111-4c1b-9f3e-0a4b5c6d7e8" })),
        chat(json!({ "end_user_id": 42 })),
        chat(json!({ "model": 5 })),
        chat(json!({ "max_tokens": 0 })),
        chat(json!({ "max_tokens": 16385 })),
        chat(json!({ "max_tokens": "lots" })),
        chat(json!({ "max_tokens": "5.5" })),
        chat(json!({ "max_tokens": 2.5 })),
        chat(json!({ "max_tokens": [] })),
        (
            CHAT,
            r#"{"max_tokens": 0, "model": 1, "end_user_id": "x", "messages": [{"role": "bot", "content": 2}]}"#.into(),
        ),
        (CHAT, "[1]".into()),
        (CHAT, String::new()),
        // pydantic's lax mode takes these as integers.
        chat(json!({ "max_tokens": true })),
        chat(json!({ "max_tokens": "5.0" })),
        chat(json!({ "max_tokens": " 12 " })),
        chat(json!({ "max_tokens": 64.0 })),
        (TEST_CALL, "{}".into()),
        (TEST_CALL, r#"{"zzz": 1, "slug": 5}"#.into()),
        (TEST_CALL, r#"{"slug": "a", "input": [], "b": {"y": 1, "x": 2}}"#.into()),
        (
            "/v1/integrations/connections/not-a-uuid/test-mcp-call",
            r#"{"slug": 5}"#.into(),
        ),
    ]
}

/// What FastAPI answers to each case: its status and body text.
async fn fastapi_answers(cases: &[(&str, String)]) -> Vec<(u16, String)> {
    let input: Vec<Value> = cases
        .iter()
        .map(|(path, body)| json!({ "method": "POST", "path": path, "body": body }))
        .collect();
    let mut child = tokio::process::Command::new("python3")
        .arg(fixture("feather_fastapi.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(Value::from(input).to_string().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(
        output.status.success(),
        "feather_fastapi.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    answers
        .iter()
        .map(|a| {
            (
                a["status"].as_u64().unwrap() as u16,
                a["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn validation_errors_are_the_bytes_fastapi_sends() {
    let llm = MockLlm::start().await;
    let host = start(&llm, None);
    let cases = cases();
    let expected = fastapi_answers(&cases).await;
    let mut differences = Vec::new();
    for ((path, body), (status, fastapi)) in cases.iter().zip(expected) {
        let (ours_status, ours) = send(&host, Method::POST, path, Some(ADMIN), body, &[]).await;
        // Accepted, the chat runs (the model is not scripted, so the
        // stream carries its error): only acceptance is compared.
        let same = match status {
            200 => ours_status == 200,
            _ => (ours_status.as_u16(), &ours) == (status, &fastapi),
        };
        if !same {
            differences.push(format!(
                "{path} {body}\n  FastAPI: {status} {fastapi}\n  ours:    {ours_status} {ours}"
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// Python's `json` and ours word a syntax error differently; the rest of
/// the error is FastAPI's.
#[tokio::test]
async fn malformed_json_is_located_as_fastapi_locates_it() {
    let llm = MockLlm::start().await;
    let host = start(&llm, None);
    let cases: Vec<(&str, String)> = ["{\"messages\": [", "{\"messages\": }", "{\n  \"a\": 1,,}"]
        .into_iter()
        .map(|body| (CHAT, body.to_owned()))
        .collect();
    let expected = fastapi_answers(&cases).await;
    for ((path, body), (status, fastapi)) in cases.iter().zip(expected) {
        let (ours_status, ours) = send_json(&host, Method::POST, path, Some(ADMIN), body).await;
        let mut fastapi: Value = serde_json::from_str(&fastapi).unwrap();
        assert_eq!(ours_status.as_u16(), status, "{body}");
        assert!(ours["detail"][0]["ctx"]["error"].is_string(), "{ours}");
        fastapi["detail"][0]["ctx"]["error"] = ours["detail"][0]["ctx"]["error"].clone();
        assert_eq!(ours, fastapi, "{body}");
    }
}
