//! `/ui`: the chat page in headless Chromium, driven as a person would,
//! in keyed mode; and the page's own answers (no key, a policy header).

use std::time::Duration;

use reqwest::StatusCode;
use testkit::*;

const KEY: &str = "sk-ui-member";

#[tokio::test]
async fn the_chat_page_shows_a_tool_call_and_the_streamed_answer_in_chromium() {
    let llm = MockLlm::answering(calculate_then_answer, Duration::from_millis(5)).await;
    let config = format!(
        "{}\n{}[[api_keys]]\nkey = \"{KEY}\"\norg = \"acme\"\nrole = \"member\"\n",
        llm.provider_toml(),
        demo_server_toml()
    );
    let host = Agenthost::start_with_env(&config, &[("AGENTHOST_TEST_KEY", "sk-test")]);
    let screenshot = artifact_path("ui-chat.png");
    let _ = std::fs::remove_file(&screenshot);
    let page = run_json_client(
        "python3",
        &[
            fixture("ui_browser.py").display().to_string(),
            host.url("/ui"),
            KEY.to_owned(),
            "What is 6*7?".to_owned(),
            screenshot.display().to_string(),
        ],
    )
    .await;

    assert_eq!(
        page["asked"],
        "an API key is required: send it in the x-api-key header or as `Authorization: Bearer <key>`",
        "{page}"
    );
    assert_eq!(page["key_kept"], KEY, "{page}");
    assert_eq!(page["servers"][0], "Demo tools (stdio, 5 tools)", "{page}");
    assert!(
        page["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "demo__calculate"),
        "{page}"
    );
    assert_eq!(page["user"][0], "What is 6*7?", "{page}");
    assert_eq!(page["tool_names"][0], "demo · calculate", "{page}");
    assert_eq!(
        page["tool_arguments"][0], "{\n  \"expression\": \"6*7\"\n}",
        "{page}"
    );
    assert_eq!(page["tool_results"][0], "42", "{page}");
    let answer: String = (0..LOAD_TEXT_CHUNKS).map(|i| format!("word{i} ")).collect();
    assert_eq!(page["answers"][0], answer, "{page}");
    assert_eq!(page["errors"].as_array().unwrap().len(), 0, "{page}");
    assert_eq!(page["sessions"].as_array().unwrap().len(), 1, "{page}");
    assert!(screenshot.is_file(), "the screenshot is kept");

    assert_eq!(
        page["asked_again"], false,
        "the key is kept in the tab: {page}"
    );
    let history = &page["history"];
    assert_eq!(history["user"][0], "What is 6*7?", "{page}");
    assert_eq!(history["tool_names"][0], "demo__calculate", "{page}");
    assert_eq!(
        history["tool_arguments"][0], page["tool_arguments"][0],
        "{page}"
    );
    assert_eq!(history["tool_results"][0], "42", "{page}");
    assert_eq!(history["answers"][0], answer, "{page}");
}

#[tokio::test]
async fn the_page_needs_no_key_and_may_only_talk_to_this_server() {
    let llm = MockLlm::start().await;
    let config = format!(
        "{}\n[[api_keys]]\nkey = \"{KEY}\"\norg = \"acme\"\nrole = \"member\"\n",
        llm.provider_toml()
    );
    let host = Agenthost::start_with_env(&config, &[("AGENTHOST_TEST_KEY", "sk-test")]);
    let response = client().get(host.url("/ui")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert_eq!(
        header("content-security-policy"),
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    let script = client().get(host.url("/ui/app.js")).send().await.unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let foreign = client()
        .get(host.url("/ui"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        foreign.status(),
        StatusCode::FORBIDDEN,
        "a rebound name is refused"
    );
}
