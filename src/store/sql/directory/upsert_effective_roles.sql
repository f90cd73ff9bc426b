-- Effective roles as the Admin API lists them (user_roles.effective): the newest reading
-- wins; a deleted user or role holds nothing. Returns each row's effective state before
-- and after.
WITH n AS (SELECT * FROM {rows}),
old AS (
    SELECT ur.user_id, ur.role_id, ur.direct OR COALESCE(ur.effective, false) AS was_held
    FROM user_roles ur JOIN n ON n.user_id = ur.user_id AND n.role_id = ur.role_id
),
up AS (
    INSERT INTO user_roles AS ur (user_id, role_id, realm_id, client_id, role_name, effective,
        effective_ver)
    SELECT n.user_id, n.role_id, n.realm_id, n.client_id, n.role_name,
        n.effective AND (SELECT deleted_at FROM users WHERE id = n.user_id) IS NULL
                    AND (SELECT deleted_at FROM roles WHERE id = n.role_id) IS NULL,
        n.ver
    FROM n
    ON CONFLICT (user_id, role_id) DO UPDATE SET
        client_id = COALESCE(ur.client_id, EXCLUDED.client_id),
        role_name = COALESCE(ur.role_name, EXCLUDED.role_name),
        effective = CASE WHEN EXCLUDED.effective_ver > COALESCE(ur.effective_ver, '')
                         THEN EXCLUDED.effective ELSE ur.effective END,
        effective_ver = GREATEST(ur.effective_ver, EXCLUDED.effective_ver),
        updated_at = now()
    RETURNING ur.user_id, ur.role_id, ur.realm_id,
        ur.direct OR COALESCE(ur.effective, false) AS held
)
-- Held at all (directly or effectively), before and after: a read confirming a direct
-- grant is no news; a role first read as held (or no longer held) is.
SELECT up.role_id, up.user_id, up.realm_id, old.was_held, up.held
FROM up LEFT JOIN old ON old.user_id = up.user_id AND old.role_id = up.role_id
