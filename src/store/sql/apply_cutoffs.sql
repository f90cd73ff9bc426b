-- Ends sessions where a cutoff reaches them, unless an ending event ended them earlier
-- (a disabling ends none: Keycloak keeps a disabled user's sessions, usable again once the
-- user is enabled; its cutoff only keeps older tokens out of the vault):
-- new cutoffs (per user, $1/$2; per realm, $4/$5) meeting stored sessions, and the
-- batch's sessions ($3) meeting stored cutoffs (the stored row may know the user when the
-- event did not). An inferred end gives way. A realm's new cutoffs are rare (an admin
-- signing everyone out) and reach the whole realm: sessions.rs leaves that branch out of
-- batches without one, so the planner never weighs it. A cutoff of one client (a consent
-- revoked) reaches only the user's offline-only sessions of that client.
WITH new_cutoffs AS (
    SELECT c.* FROM session_cutoffs c
    JOIN UNNEST($1::text[], $2::text[]) AS n(user_id, ver)
      ON c.user_id = n.user_id AND c.ver = n.ver
),
-- The batch's sessions, read once for both kinds of stored cutoffs.
batch AS MATERIALIZED (
    SELECT id, user_id, realm_id, started_at, end_ver, client_id, offline_only
    FROM user_sessions
    WHERE id = ANY($3::text[])
),
candidates AS (
    SELECT t.id, t.end_ver, c.at, c.reason, c.ver
    FROM new_cutoffs c
    JOIN user_sessions t ON t.user_id = c.user_id AND t.started_at <= c.at
    WHERE c.reason <> 'user_disabled'
      AND (c.client_id IS NULL OR (t.offline_only AND t.client_id = c.client_id))
    UNION ALL
    SELECT t.id, t.end_ver, c.at, c.reason, c.ver
    FROM batch t
    JOIN session_cutoffs c ON c.user_id = t.user_id AND t.started_at <= c.at
    WHERE c.reason <> 'user_disabled'
      AND (c.client_id IS NULL OR (t.offline_only AND t.client_id = c.client_id))
    UNION ALL
    SELECT t.id, t.end_ver, c.at, 'admin', c.ver
    FROM batch t
    JOIN realm_cutoffs c ON c.realm_id = t.realm_id AND t.started_at <= c.at
    {new_realm_cutoffs}
)
UPDATE user_sessions s
SET ended_at = c.at, end_reason = c.reason, end_ver = c.ver, end_inferred = false
FROM (
    SELECT DISTINCT ON (id) id, at, reason, ver
    FROM candidates
    WHERE end_ver IS NULL OR ver < end_ver
    ORDER BY id, ver
) c
-- Checked again on the row itself: a concurrent writer may have ended the session
-- earlier since the candidates were read, and the row's latest version is what this
-- condition sees.
WHERE s.id = c.id AND (s.end_ver IS NULL OR c.ver < s.end_ver)
RETURNING s.id, s.user_id, s.end_reason
