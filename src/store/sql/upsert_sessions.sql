-- Client and address: the first writer wins; the earliest start and the earliest ending
-- event win; refreshes add up; the latest activity wins; remember-me and offline-only,
-- once said, stay.
-- An end inferred from the expiry (no version) gives way to any ending event. The expiry
-- follows from the merged start, activity and remember-me under the realm's policy (kept
-- as it was while the realm has none).
WITH written AS (
INSERT INTO user_sessions AS s (id, realm_id, user_id, client_id, client_ver, ip_address,
    ip_ver, started_at, last_refresh_at, refresh_count, last_activity_at, remember_me,
    offline_only, ended_at, end_reason, end_ver, expires_at)
SELECT n.id, n.realm_id, n.user_id, n.client_id, n.client_ver, n.ip_address, n.ip_ver,
    ms_ts(n.started_at), ms_ts(n.last_refresh_at), n.refresh_count,
    ms_ts(n.last_activity_at), n.remember_me, n.offline_only, ms_ts(n.ended_at), n.end_reason, n.end_ver,
    session_expiry(ms_ts(n.started_at), ms_ts(n.last_activity_at), n.remember_me, p)
FROM {rows}
LEFT JOIN realm_session_policies p ON p.realm_id = n.realm_id
ON CONFLICT (id) DO UPDATE SET
    user_id = COALESCE(s.user_id, EXCLUDED.user_id),
    client_id = CASE WHEN EXCLUDED.client_ver < s.client_ver OR s.client_ver IS NULL
                     THEN EXCLUDED.client_id ELSE s.client_id END,
    client_ver = LEAST(s.client_ver, EXCLUDED.client_ver),
    ip_address = CASE WHEN EXCLUDED.ip_ver < s.ip_ver OR s.ip_ver IS NULL
                      THEN EXCLUDED.ip_address ELSE s.ip_address END,
    ip_ver = LEAST(s.ip_ver, EXCLUDED.ip_ver),
    started_at = LEAST(s.started_at, EXCLUDED.started_at),
    last_refresh_at = GREATEST(s.last_refresh_at, EXCLUDED.last_refresh_at),
    refresh_count = s.refresh_count + EXCLUDED.refresh_count,
    last_activity_at = GREATEST(s.last_activity_at, EXCLUDED.last_activity_at),
    remember_me = s.remember_me OR EXCLUDED.remember_me,
    offline_only = s.offline_only OR EXCLUDED.offline_only,
    ended_at = CASE WHEN EXCLUDED.end_ver < s.end_ver
                         OR (s.end_ver IS NULL AND EXCLUDED.end_ver IS NOT NULL)
                    THEN EXCLUDED.ended_at ELSE s.ended_at END,
    end_reason = CASE WHEN EXCLUDED.end_ver < s.end_ver
                           OR (s.end_ver IS NULL AND EXCLUDED.end_ver IS NOT NULL)
                      THEN EXCLUDED.end_reason ELSE s.end_reason END,
    end_inferred = s.end_inferred AND EXCLUDED.end_ver IS NULL,
    end_ver = LEAST(s.end_ver, EXCLUDED.end_ver),
    expires_at = COALESCE((
        SELECT session_expiry(LEAST(s.started_at, EXCLUDED.started_at),
                              GREATEST(s.last_activity_at, EXCLUDED.last_activity_at),
                              s.remember_me OR EXCLUDED.remember_me, p)
        FROM realm_session_policies p WHERE p.realm_id = s.realm_id), s.expires_at)
RETURNING id, user_id, xmax = 0 AS created, end_ver, end_reason, end_inferred
)
-- For the change feed: the rows created by this statement or ended now; and the ended
-- ones whose end was inferred, which the new expiry may move (`follow_expiry.sql`). Most
-- rows of a batch are neither: only refreshed, and need not travel back.
SELECT * FROM written WHERE created OR end_ver IS NOT NULL OR end_inferred
