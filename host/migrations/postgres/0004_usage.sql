-- Token usage: one row per chat, provider and model, shared by every
-- replica and summed by `GET /admin/usage`.
CREATE TABLE usage (
    seq BIGSERIAL PRIMARY KEY,
    at TEXT NOT NULL,
    org TEXT NOT NULL,
    api_key TEXT,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    requests BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL
);
CREATE INDEX usage_by_org ON usage (org, at);
