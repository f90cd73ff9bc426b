-- Organization memberships, as group memberships (upsert_group_members.sql). A member
-- added by username (Keycloak records adds on `organizations/{id}/members`, the user only
-- in the details) is the realm's user of that name; until one is known the verdict waits
-- in organization_members_pending (resolve_pending_members.sql).
WITH n AS (
    SELECT n.organization_id, n.realm_id, n.member, n.decided_at, n.ver, n.since, n.username,
        COALESCE(n.user_id, (
            SELECT u.id FROM users u
            WHERE u.realm_id = n.realm_id AND u.username = n.username
            ORDER BY u.deleted_at IS NULL DESC, u.id LIMIT 1)) AS user_id
    FROM {rows}
),
-- A member named by username and by id (or a waiting one resolved) in the same statement
-- is one row: the latest verdict, the latest join.
known AS (
    SELECT organization_id, user_id, realm_id,
        (array_agg(member ORDER BY ver DESC))[1] AS member,
        (array_agg(decided_at ORDER BY ver DESC))[1] AS decided_at,
        max(ver) AS ver, max(since) AS since
    FROM n WHERE user_id IS NOT NULL
    GROUP BY organization_id, user_id, realm_id
),
pending AS (
    INSERT INTO organization_members_pending AS p (organization_id, realm_id, username,
        member, decided_at, ver, since)
    SELECT DISTINCT ON (n.organization_id, n.realm_id, n.username) n.organization_id,
        n.realm_id, n.username, n.member, n.decided_at, n.ver, n.since
    FROM n WHERE n.user_id IS NULL
    ORDER BY n.organization_id, n.realm_id, n.username, n.ver DESC
    ON CONFLICT (organization_id, realm_id, username) DO UPDATE SET
        member = CASE WHEN EXCLUDED.ver > p.ver THEN EXCLUDED.member ELSE p.member END,
        decided_at = CASE WHEN EXCLUDED.ver > p.ver THEN EXCLUDED.decided_at
                          ELSE p.decided_at END,
        ver = GREATEST(p.ver, EXCLUDED.ver),
        since = GREATEST(p.since, EXCLUDED.since)
),
old AS (
    SELECT om.organization_id, om.user_id, om.removed_at IS NULL AS was_member
    FROM organization_members om
    JOIN known n ON n.organization_id = om.organization_id AND n.user_id = om.user_id
),
up AS (
    INSERT INTO organization_members AS om (organization_id, user_id, realm_id,
        member_since, removed_at, member, decided_at, ver)
    SELECT n.organization_id, n.user_id, n.realm_id, ms_ts(n.since),
        LEAST(CASE WHEN n.member THEN NULL ELSE ms_ts(n.decided_at) END,
              (SELECT deleted_at FROM users WHERE id = n.user_id),
              (SELECT deleted_at FROM organizations WHERE id = n.organization_id)),
        n.member, n.decided_at, n.ver
    FROM known n
    ON CONFLICT (organization_id, user_id) DO UPDATE SET
        member = CASE WHEN EXCLUDED.ver > om.ver THEN EXCLUDED.member ELSE om.member END,
        decided_at = CASE WHEN EXCLUDED.ver > om.ver THEN EXCLUDED.decided_at
                          ELSE om.decided_at END,
        ver = GREATEST(om.ver, EXCLUDED.ver),
        member_since = GREATEST(om.member_since, EXCLUDED.member_since),
        removed_at = LEAST(
            CASE WHEN EXCLUDED.ver > om.ver
                 THEN CASE WHEN EXCLUDED.member THEN NULL ELSE ms_ts(EXCLUDED.decided_at) END
                 ELSE CASE WHEN om.member THEN NULL ELSE ms_ts(om.decided_at) END
            END,
            (SELECT deleted_at FROM users WHERE id = om.user_id),
            (SELECT deleted_at FROM organizations WHERE id = om.organization_id)),
        updated_at = now()
    RETURNING om.organization_id, om.user_id, om.realm_id, om.removed_at IS NULL AS is_member
)
SELECT up.organization_id, up.user_id, up.realm_id, old.was_member, up.is_member
FROM up LEFT JOIN old ON old.organization_id = up.organization_id AND old.user_id = up.user_id
