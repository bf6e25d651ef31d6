-- The schema of agenthost's PostgreSQL store, version 1. Timestamps are
-- RFC 3339 text, as the API shows them; messages and tool-call log rows
-- are never deleted and keep the order they were written in.

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    org TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_by_org ON sessions (org, created_at, id);

CREATE TABLE messages (
    seq BIGSERIAL PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id),
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    name TEXT,
    tool_call_id TEXT,
    tool_calls TEXT,
    timestamp TEXT NOT NULL
);
CREATE INDEX messages_by_session ON messages (session_id, seq);

CREATE TABLE registered_servers (
    org TEXT NOT NULL,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    secrets BYTEA,
    reach_any BOOLEAN NOT NULL,
    registered_at TEXT NOT NULL,
    PRIMARY KEY (org, name)
);

CREATE TABLE connections (
    id TEXT PRIMARY KEY,
    org TEXT NOT NULL,
    name TEXT NOT NULL,
    server_id TEXT NOT NULL,
    url TEXT NOT NULL,
    auth_type TEXT NOT NULL,
    header_names TEXT NOT NULL,
    credentials BYTEA NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (org, server_id)
);

CREATE TABLE connection_tools (
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    slug TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    read_only BOOLEAN NOT NULL,
    enabled BOOLEAN NOT NULL,
    PRIMARY KEY (connection_id, slug)
);

CREATE TABLE tool_calls (
    seq BIGSERIAL PRIMARY KEY,
    at TEXT NOT NULL,
    org TEXT,
    api_key TEXT,
    end_user_id TEXT,
    connection_id TEXT,
    server TEXT NOT NULL,
    tool TEXT NOT NULL,
    mode TEXT NOT NULL,
    reason TEXT NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    success BOOLEAN NOT NULL,
    error TEXT
);
CREATE INDEX tool_calls_by_org ON tool_calls (org, seq);
