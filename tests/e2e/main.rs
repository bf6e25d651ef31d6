//! End-to-end tests: the real `agenthost` binary, driven over HTTP by real
//! clients, against a mock LLM speaking the providers' exact wire formats
//! and real MCP servers. One module per feature; shared support is the
//! `testkit` crate (`tests/support`), expected streams are golden files in
//! `tests/golden` (`BLESS=1` rewrites them).

mod approvals;
mod bad_input;
mod component_servers;
mod conformance;
mod crash_safety;
mod feather;
mod health;
mod hostile;
mod load;
mod logs;
mod mcp_catalog;
mod mcp_chat;
mod mcp_failures;
mod mcp_results;
mod metrics;
mod openapi;
mod plugin_developers;
mod plugin_sandbox;
mod process_lifecycle;
mod providers;
mod replicas;
mod runs;
mod secrets;
mod seed_clients;
mod shutdown;
mod simple_frontend;
mod traces;
mod truefoundry;
mod trust;
mod ui;
mod usage;
