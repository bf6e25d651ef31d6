#!/usr/bin/env bash
# Runs every test of agenthost on a fresh machine: installs what the tests
# need (the wasm32-wasip2 target, the Python MCP and OpenAI SDKs, the MCP
# SDK 2.x in a virtual environment of its own, a Node EventSource client and
# the reference MCP server, PostgreSQL, Chromium and its driver for the chat
# page), starts a throwaway PostgreSQL cluster,
# then checks formatting, runs the unit and end-to-end tests (the
# end-to-end ones on SQLite, then again on PostgreSQL), and lints.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2
python3 -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
[ -x target/python-mcp2/bin/python ] || python3 -m venv target/python-mcp2
target/python-mcp2/bin/pip install --quiet --disable-pip-version-check -r tests/requirements-mcp2.txt
npm ci --silent --no-audit --no-fund --prefix tests/fixtures/node

# The distribution's PostgreSQL, and Chromium with chromedriver (the chat
# page's test drives them through Selenium), where missing.
missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# A PostgreSQL cluster of this run's own: in a temporary directory, on a
# free loopback port, stopped when the run ends.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_dir=$(mktemp -d)
chmod 777 "$pg_dir"
pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_postgres "$pg_bin/initdb" -U postgres -A trust --no-sync -D "$pg_dir/data" >/dev/null
as_postgres "$pg_bin/pg_ctl" -w -D "$pg_dir/data" -l "$pg_dir/log" \
    -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400" start >/dev/null
trap 'as_postgres "$pg_bin/pg_ctl" -m immediate -D "$pg_dir/data" stop >/dev/null; rm -rf "$pg_dir"' EXIT
export AGENTHOST_TEST_POSTGRES="postgres://postgres@127.0.0.1:$pg_port/postgres"

cargo fmt --all -- --check
cargo fmt --manifest-path plugins/Cargo.toml --all -- --check
cargo test --manifest-path plugins/Cargo.toml --target-dir target/plugins-native -p agenthost-plugin
cargo test --workspace
AGENTHOST_TEST_BACKEND=postgres cargo test -p agenthost --test e2e
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --manifest-path plugins/Cargo.toml --target-dir target/plugins --target wasm32-wasip2 --workspace -- -D warnings
