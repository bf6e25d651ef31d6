-- A session's lease moves into its row, and opening a chat becomes one
-- call. Taking and giving back the lease are then updates of columns no
-- index covers (heap-only updates), where a lease row was an insert and a
-- delete in a table and its index per chat; and the statements of the
-- opening transaction, each a protocol exchange of its own, become one.

DROP TABLE session_leases;
ALTER TABLE sessions
    ADD COLUMN lease_holder TEXT,
    ADD COLUMN lease_expires_at TIMESTAMPTZ;
-- Room in each page for the new version of an updated row, which a
-- heap-only update needs.
ALTER TABLE sessions SET (fillfactor = 80);

-- Takes the lease of session `p_session` of `p_tenant` for `p_holder`
-- unless another holder's has not expired. The first row says whether it
-- was taken; if it was, the session's history follows, and the user's
-- message is stored after it.
--
-- Each statement of a PL/pgSQL function takes a new snapshot, so the
-- history is read after the lease is taken and includes everything the
-- previous holder committed before giving it back.
CREATE FUNCTION agenthost_open_exchange(
    p_session TEXT, p_holder TEXT, p_lease_secs DOUBLE PRECISION,
    p_tenant TEXT, p_role TEXT, p_content TEXT, p_name TEXT,
    p_tool_call_id TEXT, p_tool_calls TEXT, p_timestamp TEXT
) RETURNS TABLE (
    taken BOOLEAN, role TEXT, content TEXT, name TEXT, tool_call_id TEXT,
    tool_calls TEXT, "timestamp" TEXT
) LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sessions s
        SET lease_holder = p_holder,
            lease_expires_at = now() + make_interval(secs => p_lease_secs)
        WHERE s.id = p_session AND s.org = p_tenant
          AND (s.lease_holder IS NULL OR s.lease_expires_at < now());
    taken := FOUND;
    RETURN NEXT;
    IF NOT taken THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT true, m.role, m.content, m.name, m.tool_call_id,
            m.tool_calls, m.timestamp
        FROM messages m WHERE m.session_id = p_session ORDER BY m.seq;
    INSERT INTO messages AS m (session_id, role, content, name, tool_call_id,
                               tool_calls, timestamp)
        VALUES (p_session, p_role, p_content, p_name, p_tool_call_id,
                p_tool_calls, p_timestamp);
END;
$$;
