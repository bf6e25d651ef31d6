-- Chats are opened in groups, one call and one commit for every chat that
-- arrived while the last group was committing: the function takes one
-- array element per chat.

DROP FUNCTION agenthost_open_exchange(
    TEXT, TEXT, DOUBLE PRECISION, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT
);

-- For each chat `i`, takes the lease of session `p_sessions[i]` of
-- `p_tenants[i]` for `p_holders[i]` unless another holder's has not
-- expired. A row `(i, taken)` says whether it was taken; if it was, the
-- session's history follows as rows `(i, true, message...)`, and the
-- user's message is stored after it.
--
-- Each statement of a PL/pgSQL function takes a new snapshot, so a
-- history is read after its lease is taken and includes everything the
-- previous holder committed before giving it back. The caller passes the
-- chats sorted by session, so that groups from two replicas wait on
-- sessions' rows in one order and cannot deadlock.
CREATE FUNCTION agenthost_open_exchanges(
    p_sessions TEXT[], p_holders TEXT[], p_lease_secs DOUBLE PRECISION,
    p_tenants TEXT[], p_roles TEXT[], p_contents TEXT[], p_names TEXT[],
    p_tool_call_ids TEXT[], p_tool_calls TEXT[], p_timestamps TEXT[]
) RETURNS TABLE (
    exchange INTEGER, taken BOOLEAN, role TEXT, content TEXT, name TEXT,
    tool_call_id TEXT, tool_calls TEXT, "timestamp" TEXT
) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_sessions, 1), 0) LOOP
        UPDATE sessions s
            SET lease_holder = p_holders[i],
                lease_expires_at = now() + make_interval(secs => p_lease_secs)
            WHERE s.id = p_sessions[i] AND s.org = p_tenants[i]
              AND (s.lease_holder IS NULL OR s.lease_expires_at < now());
        taken := FOUND;
        exchange := i;
        RETURN NEXT;
        CONTINUE WHEN NOT taken;
        RETURN QUERY SELECT i, true, m.role, m.content, m.name,
                m.tool_call_id, m.tool_calls, m.timestamp
            FROM messages m WHERE m.session_id = p_sessions[i] ORDER BY m.seq;
        INSERT INTO messages AS m (session_id, role, content, name,
                                   tool_call_id, tool_calls, timestamp)
            VALUES (p_sessions[i], p_roles[i], p_contents[i], p_names[i],
                    p_tool_call_ids[i], p_tool_calls[i], p_timestamps[i]);
    END LOOP;
END;
$$;
