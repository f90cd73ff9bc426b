-- Bookkeeping: offline sessions that ended (a LOGOUT, an admin deletion with
-- isOffline=true), so an offline token older than the end that arrives after it is still
-- refused. The online session's end (user_sessions.ended_at) covers refresh tokens only:
-- Keycloak keeps the offline session when the browser session ends.
CREATE TABLE offline_session_ends (
    session_id text COLLATE "C" NOT NULL,
    at         timestamptz NOT NULL,
    PRIMARY KEY (session_id, at)
);

-- Ends recorded before this table existed refused offline tokens unless expired.
INSERT INTO offline_session_ends (session_id, at)
SELECT id, ended_at FROM user_sessions
WHERE ended_at IS NOT NULL AND end_reason IS DISTINCT FROM 'expired'
ON CONFLICT DO NOTHING;
