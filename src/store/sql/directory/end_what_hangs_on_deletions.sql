-- What hangs on a deleted user ($1), group ($2), role ($3) or organization ($4) ends:
-- memberships are removed at the earliest of their own removal and the deletions they
-- hang on (a second deletion may be the earlier one), grants are held no more. Rows learnt
-- about later are written so by their own upserts. Returns each changed row (table, row
-- key, user, realm) and whether it was a membership (or grant) until now.
WITH groups_ended AS (
    UPDATE user_groups ug
    SET removed_at = LEAST(CASE WHEN ug.member THEN NULL ELSE ms_ts(ug.decided_at) END,
                           u.deleted_at, g.deleted_at),
        updated_at = now()
    FROM user_groups x
    LEFT JOIN users u ON u.id = x.user_id
    LEFT JOIN groups g ON g.id = x.group_id
    WHERE (x.user_id = ANY($1::text[]) OR x.group_id = ANY($2::text[]))
      AND ug.user_id = x.user_id AND ug.group_id = x.group_id
      AND LEAST(u.deleted_at, g.deleted_at) IS NOT NULL
      AND x.removed_at IS DISTINCT FROM
          LEAST(CASE WHEN x.member THEN NULL ELSE ms_ts(x.decided_at) END,
                u.deleted_at, g.deleted_at)
    RETURNING 'user_groups'::text AS t, ug.group_id AS row_key, ug.user_id, ug.realm_id,
        x.removed_at IS NULL AS ended
),
roles_ended AS (
    UPDATE user_roles ur
    SET direct = false, effective = CASE WHEN ur.effective IS NULL THEN NULL ELSE false END,
        updated_at = now()
    FROM user_roles x
    LEFT JOIN users u ON u.id = x.user_id
    LEFT JOIN roles r ON r.id = x.role_id
    WHERE (x.user_id = ANY($1::text[]) OR x.role_id = ANY($3::text[]))
      AND ur.user_id = x.user_id AND ur.role_id = x.role_id
      AND (x.direct OR x.effective)
      AND (u.deleted_at IS NOT NULL OR r.deleted_at IS NOT NULL)
    RETURNING 'user_roles'::text AS t, ur.role_id AS row_key, ur.user_id, ur.realm_id,
        true AS ended
),
organizations_ended AS (
    UPDATE organization_members om
    SET removed_at = LEAST(CASE WHEN om.member THEN NULL ELSE ms_ts(om.decided_at) END,
                           u.deleted_at, o.deleted_at),
        updated_at = now()
    FROM organization_members x
    LEFT JOIN users u ON u.id = x.user_id
    LEFT JOIN organizations o ON o.id = x.organization_id
    WHERE (x.user_id = ANY($1::text[]) OR x.organization_id = ANY($4::text[]))
      AND om.organization_id = x.organization_id AND om.user_id = x.user_id
      AND LEAST(u.deleted_at, o.deleted_at) IS NOT NULL
      AND x.removed_at IS DISTINCT FROM
          LEAST(CASE WHEN x.member THEN NULL ELSE ms_ts(x.decided_at) END,
                u.deleted_at, o.deleted_at)
    RETURNING 'organization_members'::text AS t, om.organization_id AS row_key, om.user_id,
        om.realm_id, x.removed_at IS NULL AS ended
)
SELECT * FROM groups_ended
UNION ALL SELECT * FROM roles_ended
UNION ALL SELECT * FROM organizations_ended
