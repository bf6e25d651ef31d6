//! `/healthz` and `/readyz`: open to probes with no key and any host
//! name, and readiness that follows the store.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::postgres::Cluster;
use testkit::*;

async fn probe(host: &Agenthost, path: &str) -> (StatusCode, Value) {
    let response = client()
        .get(host.url(path))
        .header("host", "agenthost.internal:8000")
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn probes_need_no_key_and_readiness_follows_the_store() {
    let cluster = Cluster::start(false);
    let database = cluster
        .database("agenthost")
        .replacen("postgres@", "postgres:pg-secret-pw@", 1);
    let config = format!(
        "database_url = {database:?}\n[[api_keys]]\nkey = \"sk-admin\"\norg = \"acme\"\nrole = \"admin\"\n\
         [limits]\ndatabase_timeout_secs = 2\n"
    );
    let host = Agenthost::start(&config);
    // A route that is not a probe still wants a key and a known host.
    let (status, _) = probe(&host, "/sessions").await;
    assert_ne!(status, StatusCode::OK);

    assert_eq!(
        probe(&host, "/healthz").await,
        (StatusCode::OK, json!({ "status": "ok" }))
    );
    assert_eq!(
        probe(&host, "/readyz").await,
        (StatusCode::OK, json!({ "status": "ready" }))
    );

    cluster.stop();
    let (status, body) = probe(&host, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "unready");
    let reasons = body["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{body}");
    assert!(
        reasons[0]
            .as_str()
            .unwrap()
            .starts_with("the store cannot be reached: the database is unavailable"),
        "{body}"
    );
    assert!(!body.to_string().contains("pg-secret-pw"), "{body}");
    assert_eq!(
        probe(&host, "/healthz").await.0,
        StatusCode::OK,
        "alive while the store is away"
    );

    cluster.start_again();
    let started = Instant::now();
    while probe(&host, "/readyz").await.0 != StatusCode::OK {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "ready again once the store is back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
