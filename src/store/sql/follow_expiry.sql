-- Works out again when Keycloak would expire the given sessions ($1) under their realm's
-- policy (the apply path passes only sessions with an inferred end: the session upsert
-- keeps the expiry itself). An inferred end follows: it moves to the new expiry if that is more than the
-- policy's margin in the past, and otherwise the session is open again, as the late
-- activity shows Keycloak still had it. Ends from events stay.
WITH due AS (
    SELECT s.id, s.ended_at AS ended_before,
        session_expiry(s.started_at, s.last_activity_at, s.remember_me, p) AS at,
        now() - make_interval(secs => p.expiry_margin_secs) AS horizon
    FROM user_sessions s
    JOIN realm_session_policies p ON p.realm_id = s.realm_id
    WHERE s.id = ANY($1::text[])
)
UPDATE user_sessions s
SET expires_at = d.at,
    ended_at = CASE WHEN NOT s.end_inferred THEN s.ended_at
                    WHEN d.at < d.horizon THEN d.at END,
    end_reason = CASE WHEN NOT s.end_inferred THEN s.end_reason
                      WHEN d.at < d.horizon THEN 'expired' END,
    end_inferred = s.end_inferred AND d.at < d.horizon
FROM due d
WHERE s.id = d.id
  AND (s.expires_at IS DISTINCT FROM d.at
       OR (s.end_inferred AND s.ended_at IS DISTINCT FROM
           CASE WHEN d.at < d.horizon THEN d.at END))
-- For the change feed: the sessions this update ended (an inferred end), and only those.
RETURNING s.id, s.user_id, CASE WHEN d.ended_before IS NULL AND s.ended_at IS NOT NULL
                               THEN s.end_reason END
