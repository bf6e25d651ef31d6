//! Runs: every streamed answer names its run in `x-agenthost-run-id` and
//! numbers its events; `GET /runs/{id}/events` replays what came after
//! `Last-Event-ID` and follows the rest live; `POST /runs/{id}/cancel`
//! stops a run; with `agent.on_disconnect = "continue"` a run outlives
//! its client. Runs are seen only by their org.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use testkit::*;

const ADMIN: &str = "sk-runs-admin";
const VIEWER: &str = "sk-runs-viewer";
const OTHER_ORG: &str = "sk-runs-other-org";

fn host(llm: &MockLlm, on_disconnect: &str) -> Agenthost {
    let config = format!(
        "mcp_servers = []\n{}[agent]\non_disconnect = \"{on_disconnect}\"\n\
         [[api_keys]]\nkey = \"{ADMIN}\"\norg = \"acme\"\nrole = \"admin\"\n\
         [[api_keys]]\nkey = \"{VIEWER}\"\norg = \"acme\"\nrole = \"viewer\"\n\
         [[api_keys]]\nkey = \"{OTHER_ORG}\"\norg = \"globex\"\nrole = \"member\"\n",
        llm.provider_toml()
    );
    Agenthost::start_with_env(&config, &[("AGENTHOST_TEST_KEY", "sk-test")])
}

/// `method path` with `key`; the status and the body as text.
async fn call(
    host: &Agenthost,
    method: reqwest::Method,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut request = client()
        .request(method, host.url(path))
        .header("x-api-key", key);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn run_view(host: &Agenthost, run: &str, key: &str) -> (StatusCode, Value) {
    let (status, text) = call(
        host,
        reqwest::Method::GET,
        &format!("/runs/{run}"),
        key,
        &[],
    )
    .await;
    (status, serde_json::from_str(&text).unwrap())
}

/// An MCP Chat stream on a new session of `ADMIN`'s org: the session and
/// the response, whose body is unread.
async fn open_chat(host: &Agenthost) -> (String, reqwest::Response) {
    let (status, session) = call(host, reqwest::Method::POST, "/sessions", ADMIN, &[]).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let session: Value = serde_json::from_str(&session).unwrap();
    let session = session["session_id"].as_str().unwrap().to_owned();
    let response = client()
        .get(host.url(&format!("/chat/{session}/stream?message=hi")))
        .header("x-api-key", ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    (session, response)
}

fn run_id(response: &reqwest::Response) -> String {
    let id = response.headers()["x-agenthost-run-id"].to_str().unwrap();
    assert_eq!(id.len(), 32, "{id}");
    id.to_owned()
}

/// The run's state once it has left `running`.
async fn ended_state(host: &Agenthost, run: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, view) = run_view(host, run, ADMIN).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        if view["state"] != "running" || Instant::now() > deadline {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const PARTIAL: &str = "id: 1\ndata: {\"type\": \"token\", \"content\": \"Partial \"}\n\n";

#[tokio::test]
async fn a_client_that_reconnects_with_last_event_id_gets_exactly_the_events_it_missed() {
    let llm = MockLlm::start().await;
    let host = host(&llm, "continue");
    llm.reply(
        Reply::stream(vec![
            role_chunk(),
            text_chunk("Partial "),
            text_chunk("and "),
            text_chunk("the rest."),
            finish_chunk("stop"),
            DONE.into(),
        ])
        .pausing_before(2, Duration::from_millis(800)),
    );
    let (session, response) = open_chat(&host).await;
    let run = run_id(&response);
    let mut body = Box::pin(response.bytes_stream());
    let mut seen = String::new();
    read_until(&mut body, &mut seen, Some("Partial")).await;
    // The connection drops mid-answer, while the model is thinking.
    drop(body);
    assert_eq!(seen, PARTIAL);

    let response = client()
        .get(host.url(&format!("/runs/{run}/events")))
        .header("x-api-key", ADMIN)
        .header("last-event-id", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream; charset=utf-8",
        "the format the run started with"
    );
    assert_eq!(response.headers()["x-agenthost-run-id"], run.as_str());
    let missed = response.text().await.unwrap();
    assert_eq!(
        missed,
        "id: 2\ndata: {\"type\": \"token\", \"content\": \"and \"}\n\n\
         id: 3\ndata: {\"type\": \"token\", \"content\": \"the rest.\"}\n\n\
         id: 4\ndata: {\"type\": \"done\", \"content\": \"Partial and the rest.\"}\n\n"
    );
    // No gap and no duplicate: the two parts are the whole stream.
    unnumbered(&format!("{seen}{missed}"));

    let view = ended_state(&host, &run).await;
    assert_eq!(view["state"], "done", "{view}");
    assert_eq!(view["events"], 4, "{view}");
    assert!(view["ended_at"].is_string(), "{view}");
    // The run went on without its client, so the session has it whole.
    let (status, history) = call(
        &host,
        reqwest::Method::GET,
        &format!("/sessions/{session}/history"),
        ADMIN,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let history: Value = serde_json::from_str(&history).unwrap();
    assert_eq!(history[1]["content"], "Partial and the rest.", "{history}");
    // `?after=0` is the whole run again, in its format.
    let (status, all) = call(
        &host,
        reqwest::Method::GET,
        &format!("/runs/{run}/events?after=0"),
        ADMIN,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all, format!("{seen}{missed}"));
}

#[tokio::test]
async fn cancel_stops_a_run_and_ends_its_stream_with_an_error_event_seen_only_by_its_org() {
    let llm = MockLlm::start().await;
    let host = host(&llm, "cancel");
    llm.reply(Reply::stream(vec![role_chunk(), text_chunk("Partial ")]).then_hang());
    let (_, response) = open_chat(&host).await;
    let run = run_id(&response);
    let mut body = Box::pin(response.bytes_stream());
    let mut text = String::new();
    read_until(&mut body, &mut text, Some("Partial")).await;

    let (status, view) = run_view(&host, &run, VIEWER).await;
    assert_eq!(status, StatusCode::OK, "an org's viewer sees its runs");
    assert_eq!(view["state"], "running");
    assert_eq!(view["events"], 1);
    assert_eq!(view["content_type"], "text/event-stream; charset=utf-8");
    let (status, view) = run_view(&host, &run, OTHER_ORG).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{view}");
    assert!(
        view["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("run `{run}` not found")),
        "{view}"
    );
    let cancel = format!("/runs/{run}/cancel");
    let (status, refused) = call(&host, reqwest::Method::POST, &cancel, VIEWER, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        refused,
        r#"{"detail":"a viewer key may cancel only the runs it started"}"#
    );
    let (status, _) = call(&host, reqwest::Method::POST, &cancel, OTHER_ORG, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, view) = call(&host, reqwest::Method::POST, &cancel, ADMIN, &[]).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let view: Value = serde_json::from_str(&view).unwrap();
    assert_eq!(view["state"], "cancelled", "{view}");
    read_until(&mut body, &mut text, None).await;
    let error = "id: 2\ndata: {\"type\": \"error\", \"content\": \"the run was cancelled: the chat was stopped before its answer was complete\"}\n\n";
    assert_eq!(text, format!("{PARTIAL}{error}"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while llm.open_requests() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(llm.open_requests(), 0, "the provider request was dropped");

    // Read to its end by its client, the run is forgotten.
    let (status, view) = run_view(&host, &run, ADMIN).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{view}");
    let (status, _) = call(&host, reqwest::Method::POST, &cancel, ADMIN, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let events = format!("/runs/{run}/events");
    let (status, _) = call(&host, reqwest::Method::GET, &events, ADMIN, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&host, reqwest::Method::GET, "/runs/0123/events", ADMIN, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn by_default_a_client_that_leaves_cancels_its_run() {
    let llm = MockLlm::start().await;
    let host = host(&llm, "cancel");
    llm.reply(
        Reply::stream(vec![
            role_chunk(),
            text_chunk("Partial "),
            text_chunk("never read"),
            finish_chunk("stop"),
            DONE.into(),
        ])
        .pausing_before(2, Duration::from_millis(500)),
    );
    let (_, response) = open_chat(&host).await;
    let run = run_id(&response);
    let mut body = Box::pin(response.bytes_stream());
    let mut seen = String::new();
    read_until(&mut body, &mut seen, Some("Partial")).await;
    drop(body);

    let view = ended_state(&host, &run).await;
    assert_eq!(view["state"], "cancelled", "{view}");
    // Its client left before it ended, so it is kept.
    let cancel = format!("/runs/{run}/cancel");
    let (status, again) = call(&host, reqwest::Method::POST, &cancel, ADMIN, &[]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        again,
        r#"{"detail":"the run has already ended (cancelled)"}"#
    );
    let (status, bad) = call(
        &host,
        reqwest::Method::GET,
        &format!("/runs/{run}/events"),
        ADMIN,
        &[("last-event-id", "one")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad,
        r#"{"detail":"Last-Event-ID must be the number of an event the run sent (0 or more), not `one`"}"#
    );
    let (status, replay) = call(
        &host,
        reqwest::Method::GET,
        &format!("/runs/{run}/events"),
        ADMIN,
        &[("last-event-id", "0")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // What was sent before the client left (a frame it never read may
    // have been written before its leaving was noticed).
    assert!(replay.starts_with(&seen), "{replay}");
    unnumbered(&replay);
}
