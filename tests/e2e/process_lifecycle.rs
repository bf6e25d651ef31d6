//! MCP child processes never outlive the host, however it
//! stops, and a disconnect stops them too.

use testkit::*;

async fn host_with_running_demo_child() -> (Agenthost, u32) {
    let host = Agenthost::start(&demo_server_toml());
    let (status, body) = host.post_json("/connect/demo", "").await;
    assert!(status.is_success(), "{body}");
    let children = children_of(host.pid());
    assert_eq!(children.len(), 1, "one demo server child: {children:?}");
    (host, children[0])
}

#[tokio::test]
async fn children_stop_on_graceful_shutdown() {
    let (mut host, child) = host_with_running_demo_child().await;
    host.terminate();
    assert!(
        wait_until_gone(child),
        "demo server {child} outlived the host"
    );
}

#[tokio::test]
async fn children_stop_when_the_host_is_killed() {
    let (mut host, child) = host_with_running_demo_child().await;
    host.kill_hard();
    assert!(
        wait_until_gone(child),
        "demo server {child} outlived a killed host"
    );
}

#[tokio::test]
async fn disconnect_stops_the_child() {
    let (host, child) = host_with_running_demo_child().await;
    host.post("/disconnect", "").await;
    assert!(
        wait_until_gone(child),
        "demo server {child} kept running after disconnect"
    );
}
