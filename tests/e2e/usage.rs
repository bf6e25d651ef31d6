//! Token usage: what each provider's stream reports (OpenAI's usage chunk,
//! asked for with `stream_options.include_usage`; Anthropic's usage in
//! `message_start` and `message_delta`; the offline mock's word counts) is
//! recorded per org, key, provider and model, and summed by
//! `GET /admin/usage` for the admin's own org.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::*;

const ACME_ADMIN: &str = "sk-usage-acme-admin";
const ACME_MEMBER: &str = "sk-usage-acme-member";
const GLOBEX_ADMIN: &str = "sk-usage-globex-admin";

fn config(llm: &MockLlm) -> String {
    format!(
        "[[providers]]\nname = \"openai\"\nplugin = \"openai\"\nbase_url = {:?}\napi_key_env = \"AGENTHOST_TEST_KEY\"\nmodel = \"gpt-4o-mini\"\n\
         [[providers]]\nname = \"claude\"\nplugin = \"anthropic\"\nbase_url = {:?}\napi_key_env = \"AGENTHOST_TEST_KEY\"\nmodel = \"claude-test\"\n\
         [[api_keys]]\nkey = \"{ACME_ADMIN}\"\norg = \"acme\"\nrole = \"admin\"\n\
         [[api_keys]]\nkey = \"{ACME_MEMBER}\"\norg = \"acme\"\nrole = \"member\"\n\
         [[api_keys]]\nkey = \"{GLOBEX_ADMIN}\"\norg = \"globex\"\nrole = \"admin\"\n{}",
        llm.base_url,
        llm.root_url,
        demo_server_toml()
    )
}

fn openai_answer(text: &str, prompt: u32, completion: u32) -> Vec<String> {
    vec![
        role_chunk(),
        text_chunk(text),
        finish_chunk("stop"),
        usage_chunk(prompt, completion),
        DONE.into(),
    ]
}

async fn chat(host: &Agenthost, key: &str, model: &str, message: &str) {
    let response = client()
        .post(host.url("/chat/stream"))
        .header("x-api-key", key)
        .json(&json!({ "message": message, "model": model }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.unwrap();
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
}

async fn usage(host: &Agenthost, key: Option<&str>, query: &str) -> (StatusCode, Value) {
    let mut request = client().get(host.url(&format!("/admin/usage{query}")));
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

fn counts(requests: u64, input: u64, output: u64) -> Value {
    json!({ "requests": requests, "input_tokens": input, "output_tokens": output,
            "total_tokens": input + output })
}

#[tokio::test]
async fn usage_sums_each_orgs_reported_tokens_by_provider_model_and_key() {
    let llm = MockLlm::start().await;
    let host = Agenthost::start_with_env(&config(&llm), &[("AGENTHOST_TEST_KEY", "sk-test")]);

    for key in [ACME_MEMBER, ACME_ADMIN, GLOBEX_ADMIN] {
        let response = client()
            .post(host.url("/connect/demo"))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    llm.respond(openai_answer("Hi.", 31, 9));
    chat(&host, ACME_MEMBER, "gpt-4o-mini", "hello").await;
    let mut anthropic = vec![anthropic_message_start()];
    anthropic.extend(anthropic_text_block(0, "Hello."));
    anthropic.extend(anthropic_stop("end_turn"));
    llm.respond(anthropic);
    chat(&host, ACME_MEMBER, "claude/claude-test", "hello").await;
    // The mock counts words: three in, five out ("You said: hello there friend").
    chat(&host, ACME_ADMIN, "mock/echo", "hello there friend").await;
    llm.respond(openai_answer("Yes.", 1000, 1));
    chat(&host, GLOBEX_ADMIN, "gpt-4o-mini", "hello").await;

    let requests = llm.requests();
    assert_eq!(
        requests[0].body["stream_options"],
        json!({ "include_usage": true }),
        "OpenAI reports usage only when asked"
    );

    let (status, all) = usage(&host, Some(ACME_ADMIN), "").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["org"], "acme");
    assert_eq!(all["rows"], json!([]));
    assert_eq!(all["total"], counts(3, 31 + 10 + 3, 9 + 15 + 5));

    let (_, by_model) = usage(&host, Some(ACME_ADMIN), "?group_by=provider,model").await;
    assert_eq!(by_model["group_by"], json!(["provider", "model"]));
    let row = |provider: &str, model: &str, value: Value| {
        let mut row = value;
        row["provider"] = json!(provider);
        row["model"] = json!(model);
        row
    };
    assert_eq!(
        by_model["rows"],
        json!([
            row("claude", "claude-test", counts(1, 10, 15)),
            row("mock", "echo", counts(1, 3, 5)),
            row("openai", "gpt-4o-mini", counts(1, 31, 9)),
        ])
    );

    let (_, by_key) = usage(&host, Some(ACME_ADMIN), "?group_by=key").await;
    let keys = by_key["rows"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{by_key}");
    for row in keys {
        let label = row["key"].as_str().unwrap();
        assert!(!label.is_empty() && !label.contains("sk-"), "{by_key}");
    }
    let member_row = keys.iter().find(|r| r["requests"] == 2).unwrap();
    assert_eq!(member_row["input_tokens"], 41);

    let today = &all_days(&host).await[0];
    let (_, today_only) = usage(
        &host,
        Some(ACME_ADMIN),
        &format!("?from={today}&to={today}&group_by=day"),
    )
    .await;
    assert_eq!(today_only["rows"][0]["day"], *today);
    assert_eq!(
        today_only["total"], all["total"],
        "a date `to` includes its day"
    );
    let (_, future) = usage(&host, Some(ACME_ADMIN), "?from=2999-01-01T00:00:00Z").await;
    assert_eq!(future["total"], counts(0, 0, 0));

    let (_, globex) = usage(&host, Some(GLOBEX_ADMIN), "?group_by=org").await;
    assert_eq!(
        globex["rows"],
        json!([{ "org": "globex", "requests": 1, "input_tokens": 1000, "output_tokens": 1, "total_tokens": 1001 }]),
        "an admin sees its own org's usage only"
    );

    let (status, body) = usage(&host, Some(ACME_MEMBER), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = usage(&host, None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = usage(&host, Some(ACME_ADMIN), "?group_by=model,tenant").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["detail"],
        "`group_by` may name org, key, provider, model and day, separated by commas; `tenant` is none of them"
    );
    let (status, body) = usage(&host, Some(ACME_ADMIN), "?from=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("`from` must be a date (2026-01-31) or an RFC 3339 timestamp"),
        "{body}"
    );
}

/// The days acme used tokens on, as `/admin/usage` groups them.
async fn all_days(host: &Agenthost) -> Vec<String> {
    let (_, by_day) = usage(host, Some(ACME_ADMIN), "?group_by=day").await;
    by_day["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["day"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_chat_whose_client_leaves_still_has_its_usage_recorded() {
    let llm = MockLlm::start().await;
    let host = Agenthost::start_with_env(
        &format!("{}\n{}", llm.provider_toml(), demo_server_toml()),
        &[("AGENTHOST_TEST_KEY", "sk-test")],
    );
    let (status, body) = host.post_json("/connect/demo", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    llm.respond(vec![
        role_chunk(),
        tool_start_chunk(0, "call_1", "demo__calculate"),
        tool_args_chunk(0, "{\"expression\": \"6*7\"}"),
        finish_chunk("tool_calls"),
        usage_chunk(50, 5),
        DONE.into(),
    ]);
    // The second turn starts and never ends.
    llm.reply(Reply::stream(vec![role_chunk(), text_chunk("It is")]).then_hang());

    let mut response = client()
        .post(host.url("/chat/stream"))
        .json(&json!({ "message": "What is 6*7?" }))
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    // The simple format sends a turn's text when the turn ends: the tool's
    // end is the last thing this chat shows before its second turn hangs.
    while !seen.contains("tool_end") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .unwrap_or_else(|_| panic!("only this came: {seen}\n{}", host.logs()))
            .unwrap()
            .expect("the stream goes on");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    while llm.open_requests() < 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(response);

    let deadline = Instant::now() + Duration::from_secs(10);
    let total = loop {
        let (status, report) = usage(&host, None, "").await;
        assert_eq!(status, StatusCode::OK, "{report}");
        if report["total"]["requests"] == 1 || Instant::now() > deadline {
            break report["total"].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(total, counts(1, 50, 5), "the first turn's usage is kept");
}

/// One chat with the offline mock: three words in, five out.
async fn mock_chat(host: &Agenthost) {
    let (status, body) = host.post_json("/connect/demo", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = host
        .post("/chat", r#"{"message": "hello there friend"}"#)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn usage_is_written_every_second_and_at_shutdown() {
    let data = tempfile::tempdir().unwrap();
    let config = format!("data_dir = {:?}\n", data.path().display().to_string());
    let mut host = Agenthost::start(&config);
    mock_chat(&host).await;
    let (_, counted) = usage(&host, None, "?group_by=provider,model").await;
    assert_eq!(
        counted["rows"],
        json!([{ "provider": "mock", "model": "mock", "requests": 1, "input_tokens": 3,
                 "output_tokens": 5, "total_tokens": 8 }]),
        "a chat's usage shows at once on its replica"
    );
    // Past the next write, a crash loses none of it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    host.kill_hard();

    let mut host = Agenthost::start(&config);
    let (_, written) = usage(&host, None, "?group_by=provider,model").await;
    assert_eq!(written["rows"], counted["rows"]);
    // SIGTERM writes what the last second counted.
    mock_chat(&host).await;
    host.terminate();

    let host = Agenthost::start(&config);
    let (_, after) = usage(&host, None, "").await;
    assert_eq!(after["total"], counts(2, 6, 10));
}
