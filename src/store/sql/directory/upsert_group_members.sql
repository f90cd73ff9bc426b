-- Group memberships: the latest event by version decides (`member`, `decided_at`, `ver`),
-- `member_since` is the latest time the user was added. `removed_at` follows from the
-- verdict and from the deletions of the user and the group: nothing from before a
-- deletion brings a membership back. Returns each row (group, user, realm) with its
-- membership before (null: a new row) and after.
WITH n AS (SELECT * FROM {rows}),
old AS (
    SELECT ug.user_id, ug.group_id, ug.removed_at IS NULL AS was_member
    FROM user_groups ug JOIN n ON n.user_id = ug.user_id AND n.group_id = ug.group_id
),
up AS (
    INSERT INTO user_groups AS ug (user_id, group_id, realm_id, member_since, removed_at,
        member, decided_at, ver)
    SELECT n.user_id, n.group_id, n.realm_id, ms_ts(n.since),
        LEAST(CASE WHEN n.member THEN NULL ELSE ms_ts(n.decided_at) END,
              (SELECT deleted_at FROM users WHERE id = n.user_id),
              (SELECT deleted_at FROM groups WHERE id = n.group_id)),
        n.member, n.decided_at, n.ver
    FROM n
    ON CONFLICT (user_id, group_id) DO UPDATE SET
        member = CASE WHEN EXCLUDED.ver > ug.ver THEN EXCLUDED.member ELSE ug.member END,
        decided_at = CASE WHEN EXCLUDED.ver > ug.ver THEN EXCLUDED.decided_at
                          ELSE ug.decided_at END,
        ver = GREATEST(ug.ver, EXCLUDED.ver),
        member_since = GREATEST(ug.member_since, EXCLUDED.member_since),
        removed_at = LEAST(
            CASE WHEN EXCLUDED.ver > ug.ver
                 THEN CASE WHEN EXCLUDED.member THEN NULL ELSE ms_ts(EXCLUDED.decided_at) END
                 ELSE CASE WHEN ug.member THEN NULL ELSE ms_ts(ug.decided_at) END
            END,
            (SELECT deleted_at FROM users WHERE id = ug.user_id),
            (SELECT deleted_at FROM groups WHERE id = ug.group_id)),
        updated_at = now()
    RETURNING ug.user_id, ug.group_id, ug.realm_id, ug.removed_at IS NULL AS is_member
)
SELECT up.group_id, up.user_id, up.realm_id, old.was_member, up.is_member
FROM up LEFT JOIN old ON old.user_id = up.user_id AND old.group_id = up.group_id
