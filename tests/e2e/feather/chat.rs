//! The chat stream: the seed's events, roles enforced by the tools, and
//! FastAPI-shaped validation errors.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::*;

use super::*;

#[tokio::test]
async fn a_chat_with_two_tool_calls_streams_the_seed_events() {
    let llm = MockLlm::start().await;
    let host = start(&llm, None);
    let mut first = vec![role_chunk(), text_chunk("Checking.")];
    first.extend(tool_call_turn(&[
        (
            "call_a",
            "demo__calculate",
            &["{\"expression\":", " \"6*7\"}"],
        ),
        ("call_b", "demo__calculate", &["{\"expression\": \"2^10\"}"]),
    ]));
    llm.respond(first);
    llm.respond(vec![
        text_chunk("42 and "),
        text_chunk("1024."),
        finish_chunk("stop"),
        DONE.into(),
    ]);
    let body = chat(
        &host,
        ADMIN,
        json!({ "messages": [{ "role": "user", "content": "Work out 6*7 and 2^10." }] }),
    )
    .await;
    assert_golden("feather/two_tool_calls.sse", &body);
    let requests = llm.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].body["model"], "gpt-5.4-mini",
        "the seed's default"
    );
    assert_eq!(requests[0].body["max_tokens"], 4096, "the seed's default");
    let tools: Vec<&str> = requests[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(tools.contains(&"demo__add_note"), "{tools:?}");
    let replayed = requests[1].body["messages"].as_array().unwrap();
    assert_eq!(replayed[2]["role"], "tool");
    assert_eq!(replayed[2]["content"], "42");

    // The model and token limit a client asks for reach the provider.
    llm.respond(text_turn("Hi."));
    let body = chat(
        &host,
        ADMIN,
        json!({ "messages": [{ "role": "user", "content": "Hi" }, { "role": "assistant", "content": "Hello" }, { "role": "user", "content": "Again" }],
                "model": "gpt-4o", "max_tokens": 77, "end_user_id": null }),
    )
    .await;
    assert!(
        body.ends_with("event: done\ndata: {\"turns\":1}\n\n"),
        "{body}"
    );
    let sent = &llm.requests()[2].body;
    assert_eq!(
        (sent["model"].as_str(), sent["max_tokens"].as_u64()),
        (Some("gpt-4o"), Some(77))
    );
    assert_eq!(
        sent["messages"][1],
        json!({ "role": "assistant", "content": "Hello" })
    );

    // A provider failure is the stream's fatal `error` event.
    llm.reply(Reply::status(400, r#"{"error":{"message":"bad model"}}"#));
    let body = chat(
        &host,
        ADMIN,
        json!({ "messages": [{ "role": "user", "content": "Hi" }] }),
    )
    .await;
    let last = events(&body).pop().unwrap();
    assert_eq!(last.0, "error");
    assert!(
        last.1["message"].as_str().unwrap().contains("400"),
        "{body}"
    );
}

#[tokio::test]
async fn a_viewer_is_denied_write_tools_while_the_stream_goes_on() {
    let llm = MockLlm::start().await;
    let host = start(&llm, None);
    llm.respond(tool_call_turn(&[
        (
            "call_w",
            "demo__add_note",
            &["{\"title\": \"x\", \"text\": \"y\"}"],
        ),
        ("call_o", "demo__list_notes", &["{}"]),
        ("call_r", "demo__calculate", &["{\"expression\": \"1+1\"}"]),
        ("call_n", "demo__read_note", &["{\"title\": \"missing\"}"]),
    ]));
    llm.respond(text_turn("Some of that worked."));
    let body = chat(
        &host,
        VIEWER,
        json!({ "messages": [{ "role": "user", "content": "Note, list, add." }] }),
    )
    .await;
    let events = events(&body);
    let results: Vec<&Value> = events
        .iter()
        .filter(|(event, _)| event == "tool_result")
        .map(|(_, data)| data)
        .collect();
    let denial = |tool: &str| {
        format!(
            "permission denied: tool `{tool}` changes data and this API key has the viewer role, which may only call read-only tools"
        )
    };
    assert_eq!(
        results[0],
        &json!({ "id": "call_w", "name": "demo__add_note", "error": denial("demo__add_note") })
    );
    assert_eq!(
        results[1],
        &json!({ "id": "call_o", "name": "demo__list_notes", "error": denial("demo__list_notes") }),
        "the config overrides the server's readOnlyHint"
    );
    assert!(results[2]["result"].as_str().unwrap().contains("\"2\""));
    // A server's error result reads as a message too, like the host's own.
    assert_eq!(
        results[3],
        &json!({ "id": "call_n", "name": "demo__read_note", "error": "no note titled `missing`" })
    );
    assert_eq!(events.last().unwrap().0, "done");
    let fed_back = &llm.requests()[1].body["messages"];
    assert_eq!(
        fed_back[2]["content"],
        format!("Error: {}", denial("demo__add_note"))
    );

    // The denied write never ran: the admin finds no note.
    llm.respond(tool_call_turn(&[("call_l", "demo__list_notes", &["{}"])]));
    llm.respond(text_turn("Listed."));
    let body = chat(
        &host,
        ADMIN,
        json!({ "messages": [{ "role": "user", "content": "List notes." }] }),
    )
    .await;
    assert!(body.contains("No notes yet."), "{body}");

    // Every call is in the log, denied ones as failures; admins only.
    let (status, log) = send_json(
        &host,
        Method::GET,
        "/v1/integrations/tool-calls",
        Some(VIEWER),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(log["error"], "PermissionDeniedError");
    let (status, log) = send_json(
        &host,
        Method::GET,
        "/v1/integrations/tool-calls",
        Some(ADMIN),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let rows = log["tool_calls"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "{log}");
    assert_eq!(rows[0]["tool"], "list_notes", "newest first");
    assert_eq!(rows[0]["success"], true);
    for row in &rows[1..] {
        assert_eq!(
            (
                row["org"].as_str(),
                row["reason"].as_str(),
                row["mode"].as_str()
            ),
            (Some("acme"), Some("feather_chat"), Some("mcp_pool"))
        );
        if row["tool"] == "read_note" {
            assert_eq!(row["success"], false, "the server answered an error");
            continue;
        }
        let denied = row["tool"] != "calculate";
        assert_eq!(row["success"], !denied, "{row}");
        assert_eq!(row["error"].is_string(), denied, "{row}");
    }
    let (_, other) = send_json(
        &host,
        Method::GET,
        "/v1/integrations/tool-calls",
        Some(OTHER_ORG),
        "",
    )
    .await;
    assert_eq!(
        other["tool_calls"],
        json!([]),
        "another org sees none of it"
    );
}

/// Validation errors themselves are compared with FastAPI's in
/// `validation`; here, what comes before validation.
#[tokio::test]
async fn requests_without_a_valid_key_are_refused_before_validation() {
    let llm = MockLlm::start().await;
    let host = start(&llm, None);
    let ok_messages = json!([{ "role": "user", "content": "hi" }]);
    let body = json!({ "messages": ok_messages }).to_string();
    let (status, text) = send(&host, Method::POST, "/v1/mcp-chat/stream", None, &body, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(text, MISSING_KEY);
    let (status, text) = send(
        &host,
        Method::POST,
        "/v1/mcp-chat/stream",
        Some("sk-wrong-000000"),
        &body,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        text,
        r#"{"error":"AuthenticationError","message":"invalid API key"}"#
    );
    assert!(
        llm.requests().is_empty(),
        "nothing invalid reached the model"
    );
}
