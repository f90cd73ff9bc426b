-- Direct role grants (user_roles.direct), as group memberships
-- (upsert_group_members.sql): the latest mapping event decides; a deleted user or role
-- holds nothing, directly or not.
WITH n AS (SELECT * FROM {rows}),
old AS (
    SELECT ur.user_id, ur.role_id, ur.direct OR COALESCE(ur.effective, false) AS was_held
    FROM user_roles ur JOIN n ON n.user_id = ur.user_id AND n.role_id = ur.role_id
),
up AS (
    INSERT INTO user_roles AS ur (user_id, role_id, realm_id, client_id, role_name, direct,
        direct_granted, decided_at, ver)
    SELECT n.user_id, n.role_id, n.realm_id, n.client_id, n.role_name,
        n.granted AND (SELECT deleted_at FROM users WHERE id = n.user_id) IS NULL
                  AND (SELECT deleted_at FROM roles WHERE id = n.role_id) IS NULL,
        n.granted, n.decided_at, n.ver
    FROM n
    ON CONFLICT (user_id, role_id) DO UPDATE SET
        client_id = COALESCE(ur.client_id, EXCLUDED.client_id),
        role_name = COALESCE(EXCLUDED.role_name, ur.role_name),
        direct_granted = CASE WHEN EXCLUDED.ver > COALESCE(ur.ver, '') THEN EXCLUDED.direct_granted
                              ELSE ur.direct_granted END,
        decided_at = CASE WHEN EXCLUDED.ver > COALESCE(ur.ver, '') THEN EXCLUDED.decided_at
                          ELSE ur.decided_at END,
        ver = GREATEST(ur.ver, EXCLUDED.ver),
        direct = CASE WHEN EXCLUDED.ver > COALESCE(ur.ver, '') THEN EXCLUDED.direct_granted
                      ELSE COALESCE(ur.direct_granted, false) END
            AND (SELECT deleted_at FROM users WHERE id = ur.user_id) IS NULL
            AND (SELECT deleted_at FROM roles WHERE id = ur.role_id) IS NULL,
        updated_at = now()
    RETURNING ur.user_id, ur.role_id, ur.realm_id,
        ur.direct OR COALESCE(ur.effective, false) AS held
)
-- Held at all, before and after: a direct grant of a role already held through a group
-- is no news to applications.
SELECT up.role_id, up.user_id, up.realm_id, old.was_held, up.held
FROM up LEFT JOIN old ON old.user_id = up.user_id AND old.role_id = up.role_id
