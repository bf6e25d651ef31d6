//! Approvals: a server's `require_approval = "writes"` pauses a chat at
//! a call of a tool that writes; the stream says so in its format, and
//! `POST /runs/{id}/approvals/{call_id}` lets the call run or refuses
//! it; unanswered, it is refused after `approval_timeout_secs`. A tool
//! that only reads does not pause.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::*;

const ADMIN: &str = "sk-approvals-admin";
const VIEWER: &str = "sk-approvals-viewer";

fn host(llm: &MockLlm, timeout_secs: f64) -> Agenthost {
    let config = format!(
        "{}[agent]\napproval_timeout_secs = {timeout_secs}\n\
         [[api_keys]]\nkey = \"{ADMIN}\"\norg = \"acme\"\nrole = \"admin\"\n\
         [[api_keys]]\nkey = \"{VIEWER}\"\norg = \"acme\"\nrole = \"viewer\"\n\
         {}require_approval = \"writes\"\n",
        llm.provider_toml(),
        demo_server_toml(),
    );
    Agenthost::start_with_env(&config, &[("AGENTHOST_TEST_KEY", "sk-test")])
}

/// The model calls `tool` once, then answers.
fn script(llm: &MockLlm, tool: &str, arguments: &str) {
    llm.respond(vec![
        role_chunk(),
        tool_start_chunk(0, "call_w", &format!("demo__{tool}")),
        tool_args_chunk(0, arguments),
        finish_chunk("tool_calls"),
        DONE.into(),
    ]);
    llm.respond(vec![text_chunk("Done."), finish_chunk("stop"), DONE.into()]);
}

const ADD_NOTE: &str = r#"{"title": "t", "text": "x"}"#;

/// A chat on one of the four surfaces, its body unread.
async fn open(host: &Agenthost, surface: &str) -> reqwest::Response {
    let request = match surface {
        "simple" => {
            let (status, body) = call(host, Method::POST, "/connect/demo", ADMIN, "").await;
            assert_eq!(status, StatusCode::OK, "{body}");
            client()
                .post(host.url("/chat/stream"))
                .body(r#"{"message": "note it"}"#)
        }
        "mcp-chat" => {
            let id = new_session(host).await;
            client().get(host.url(&format!("/chat/{id}/stream?message=note+it")))
        }
        "feather" => client()
            .post(host.url("/v1/mcp-chat/stream"))
            .header("content-type", "application/json")
            .body(json!({ "messages": [{ "role": "user", "content": "note it" }] }).to_string()),
        "truefoundry" => client()
            .post(host.url("/api/llm/agent/responses"))
            .header("content-type", "application/json")
            .body(
                json!({ "model": "gpt-4o-mini", "stream": true,
                        "messages": [{ "role": "user", "content": "note it" }],
                        "mcp_servers": [{ "integration_fqn": "demo" }] })
                .to_string(),
            ),
        _ => unreachable!(),
    };
    let response = request.header("x-api-key", ADMIN).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{surface}");
    response
}

/// A chat on `surface`: its run's id, and its body as it comes.
async fn open_run(
    host: &Agenthost,
    surface: &str,
) -> (
    String,
    std::pin::Pin<Box<impl futures::Stream<Item = reqwest::Result<bytes::Bytes>>>>,
) {
    let response = open(host, surface).await;
    let run = response.headers()["x-agenthost-run-id"]
        .to_str()
        .unwrap()
        .to_owned();
    (run, Box::pin(response.bytes_stream()))
}

async fn new_session(host: &Agenthost) -> String {
    let (status, session) = call(host, Method::POST, "/sessions", ADMIN, "").await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let session: Value = serde_json::from_str(&session).unwrap();
    session["session_id"].as_str().unwrap().to_owned()
}

async fn call(
    host: &Agenthost,
    method: Method,
    path: &str,
    key: &str,
    body: &str,
) -> (StatusCode, String) {
    let response = client()
        .request(method, host.url(path))
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

/// Each surface's approval request frame for `call_w` of `add_note`.
fn approval_frame(surface: &str, run: &str) -> String {
    match surface {
        "simple" => format!(
            r#"data: {{"type": "approval_request", "run_id": "{run}", "call_id": "call_w", "server": "demo", "tool": "add_note", "arguments": {{"title": "t", "text": "x"}}}}"#
        ),
        "mcp-chat" => format!(
            r#"data: {{"type": "approval_request", "content": {{"run_id": "{run}", "call_id": "call_w", "server": "demo", "tool": "add_note", "arguments": {{"title": "t", "text": "x"}}}}}}"#
        ),
        "feather" => format!(
            "event: approval_request\ndata: {{\"run_id\":\"{run}\",\"id\":\"call_w\",\"name\":\"demo__add_note\",\"input\":{ADD_NOTE}}}"
        ),
        "truefoundry" => format!(
            r#"data: {{"id":"tool-call-approval-call_w","object":"chat.completion.chunk","choices":[],"approval_request":{{"run_id":"{run}","tool_call_id":"call_w","mcp_server_integration_id":"demo","tool_name":"add_note","arguments":{}}}}}"#,
            serde_json::to_string(ADD_NOTE).unwrap()
        ),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_write_tool_waits_for_approval_on_every_surface_then_runs() {
    let llm = MockLlm::start().await;
    let host = host(&llm, 30.0);
    for surface in ["simple", "mcp-chat", "feather", "truefoundry"] {
        script(&llm, "add_note", ADD_NOTE);
        let (run, mut body) = open_run(&host, surface).await;
        let mut text = String::new();
        let frame = approval_frame(surface, &run);
        read_until(&mut body, &mut text, Some(&frame)).await;
        assert!(text.contains(&frame), "{surface}: {frame}\nnot in:\n{text}");

        let (status, view) = call(&host, Method::GET, &format!("/runs/{run}"), ADMIN, "").await;
        assert_eq!(status, StatusCode::OK);
        let view: Value = serde_json::from_str(&view).unwrap();
        assert_eq!(view["state"], "waiting", "{surface}: {view}");
        assert_eq!(
            view["waiting_for"],
            json!([{ "type": "approval", "call_id": "call_w", "server": "demo", "tool": "add_note",
                     "arguments": { "title": "t", "text": "x" } }]),
            "{surface}"
        );
        let approvals = format!("/runs/{run}/approvals/call_w");
        let (status, refused) = call(
            &host,
            Method::POST,
            &approvals,
            VIEWER,
            r#"{"approve": true}"#,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{surface}");
        assert_eq!(
            refused,
            r#"{"detail":"a viewer key may not approve a call of a tool that writes"}"#
        );
        let (status, _) = call(
            &host,
            Method::POST,
            &approvals,
            ADMIN,
            r#"{"approve": "yes"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{surface}");
        let other = format!("/runs/{run}/approvals/call_x");
        let (status, not_waiting) =
            call(&host, Method::POST, &other, ADMIN, r#"{"approve": true}"#).await;
        assert_eq!(status, StatusCode::CONFLICT, "{surface}");
        assert_eq!(
            not_waiting,
            format!(
                r#"{{"detail":"run `{run}` is not waiting for an approval of call `call_x`"}}"#
            )
        );
        let (status, view) = call(
            &host,
            Method::POST,
            &approvals,
            ADMIN,
            r#"{"approve": true}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{surface}: {view}");

        read_until(&mut body, &mut text, None).await;
        assert!(text.contains("Done."), "{surface}: {text}");
        let tool_message = llm.tool_message_in(llm.requests().len() - 1);
        assert_eq!(tool_message, "Saved note `t`.", "{surface}");
        let (status, _) = call(
            &host,
            Method::POST,
            &approvals,
            ADMIN,
            r#"{"approve": true}"#,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{surface}: read whole, the run is gone"
        );
    }
}

#[tokio::test]
async fn a_refused_or_unanswered_call_gives_the_model_an_error_and_a_read_tool_never_waits() {
    let llm = MockLlm::start().await;
    let host = host(&llm, 1.0);

    script(&llm, "add_note", ADD_NOTE);
    let (run, mut body) = open_run(&host, "mcp-chat").await;
    let mut text = String::new();
    read_until(&mut body, &mut text, Some("approval_request")).await;
    let approvals = format!("/runs/{run}/approvals/call_w");
    let (status, _) = call(
        &host,
        Method::POST,
        &approvals,
        VIEWER,
        r#"{"approve": false, "reason": "not today"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "anyone in the org may refuse");
    read_until(&mut body, &mut text, None).await;
    assert!(
        text.contains(
            r#""success": false, "result": "the user refused this tool call: not today""#
        ),
        "{text}"
    );
    let tool_message = llm.tool_message_in(llm.requests().len() - 1);
    assert_eq!(
        tool_message,
        "Error: the user refused this tool call: not today"
    );

    // Nobody answers: after a second the call is refused and the chat goes on.
    script(&llm, "add_note", ADD_NOTE);
    let started = std::time::Instant::now();
    let text = body_text(open(&host, "mcp-chat").await).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        text.contains(r#""success": false, "result": "no one approved this tool call within 1 s""#),
        "{text}"
    );
    assert!(text.contains("Done."), "{text}");

    // A tool that only reads runs at once.
    script(&llm, "calculate", r#"{"expression": "6*7"}"#);
    let text = body_text(open(&host, "mcp-chat").await).await;
    assert!(!text.contains("approval_request"), "{text}");
    assert!(
        text.contains(r#""success": true, "result": "42""#),
        "{text}"
    );

    // A chat that cannot be asked (not streamed) refuses such calls.
    script(&llm, "add_note", ADD_NOTE);
    let id = new_session(&host).await;
    let (status, answer) = call(
        &host,
        Method::POST,
        &format!("/chat/{id}"),
        ADMIN,
        r#"{"message": "note it"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let tool_message = llm.tool_message_in(llm.requests().len() - 1);
    assert_eq!(
        tool_message,
        "Error: this tool call needs a person's approval, which only a streamed chat can ask for"
    );
}
