-- A chat holds its session by a lease, not a connection: it renews the
-- lease while it runs and deletes it when done; a replica that dies lets
-- its leases expire.

CREATE TABLE session_leases (
    session_id TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
