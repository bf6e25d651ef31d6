#!/usr/bin/env bash
# Runs every test of agenthost on a fresh machine: installs what the tests
# need (the wasm32-wasip2 target, the Python MCP and OpenAI SDKs, a Node
# EventSource client), then checks formatting, runs the unit and
# end-to-end tests, and lints.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2
python3 -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
npm ci --silent --no-audit --no-fund --prefix tests/fixtures/node

cargo fmt --all -- --check
cargo fmt --manifest-path plugins/Cargo.toml --all -- --check
cargo test --manifest-path plugins/Cargo.toml --target-dir target/plugins-native -p agenthost-plugin
cargo test --workspace
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --manifest-path plugins/Cargo.toml --target-dir target/plugins --target wasm32-wasip2 --workspace -- -D warnings
