-- One batch of the expiry pass: open sessions more than their realm's margin past their
-- expiry end at that expiry, inferred (so later activity may still move it); their
-- refresh tokens issued by then go. Offline tokens belong to the offline session, which
-- Keycloak keeps when the browser session times out. Rows another writer holds are left
-- for the next batch.
WITH due AS (
    SELECT s.id, s.expires_at
    FROM user_sessions s
    JOIN realm_session_policies p ON p.realm_id = s.realm_id
    WHERE s.ended_at IS NULL
      AND s.expires_at < now() - make_interval(secs => p.expiry_margin_secs)
      AND ($1::text IS NULL OR s.realm_id = $1 OR p.realm_name = $1)
    ORDER BY s.expires_at
    LIMIT $2
    FOR UPDATE OF s SKIP LOCKED
),
ended AS (
    UPDATE user_sessions s
    SET ended_at = d.expires_at, end_reason = 'expired', end_inferred = true
    FROM due d
    WHERE s.id = d.id AND s.ended_at IS NULL AND s.expires_at = d.expires_at
    RETURNING s.id, s.user_id, s.ended_at
),
dropped AS (
    DELETE FROM auth_vault v USING ended e
    WHERE v.session_id = e.id AND v.token_type = 'refresh' AND v.issued_at <= e.ended_at
    RETURNING v.id::text AS id, v.user_id, v.token_type, v.client_id, v.session_id
)
-- Counts, and for the change feed what went.
SELECT (SELECT count(*) FROM ended) AS ended, (SELECT count(*) FROM dropped) AS tokens_removed,
    (SELECT COALESCE(jsonb_agg(jsonb_build_object('id', id, 'user_id', user_id)), '[]')
     FROM ended) AS ended_rows,
    (SELECT COALESCE(jsonb_agg(to_jsonb(d)), '[]') FROM dropped d) AS dropped_rows
