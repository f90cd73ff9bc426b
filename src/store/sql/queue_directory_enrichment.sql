-- Users whose groups and effective roles an admin event changed without saying how: the
-- user named (kind 'user'), the members of a group and of its subgroups, which inherit its
-- role mappings ('group'), a role's holders ('role_id', or 'role_name' within its
-- container). One row per user, the newest asking version kept; users read whole since
-- are left alone.
WITH RECURSIVE n AS (SELECT * FROM {rows}),
subtree (group_id, ver) AS (
    SELECT n.key COLLATE "C", n.ver FROM n WHERE n.kind = 'group'
    UNION
    SELECT g.id, t.ver FROM subtree t JOIN groups g ON g.parent_id = t.group_id
),
affected AS (
    SELECT n.key AS user_id, n.ver FROM n WHERE n.kind = 'user'
    UNION ALL
    SELECT ug.user_id, t.ver
    FROM subtree t JOIN user_groups ug ON ug.group_id = t.group_id AND ug.member
    UNION ALL
    SELECT ur.user_id, n.ver
    FROM n JOIN user_roles ur ON n.kind = 'role_id' AND ur.role_id = n.key
    WHERE ur.direct_granted OR ur.effective
    UNION ALL
    SELECT ur.user_id, n.ver
    FROM n
    JOIN roles r ON n.kind = 'role_name' AND r.realm_id = n.realm_id
        AND r.client_id IS NOT DISTINCT FROM n.client_id AND r.name = n.key
    JOIN user_roles ur ON ur.role_id = r.id
    WHERE ur.direct_granted OR ur.effective
),
newest AS (SELECT user_id, max(ver) AS ver FROM affected GROUP BY user_id)
INSERT INTO enrichment_queue AS q (user_id, realm_id, ver)
SELECT a.user_id, u.realm_id, a.ver
FROM newest a JOIN users u ON u.id = a.user_id
WHERE u.deleted_at IS NULL AND (u.read_ver IS NULL OR u.read_ver < a.ver)
ORDER BY a.user_id
ON CONFLICT (user_id) DO UPDATE SET ver = EXCLUDED.ver
WHERE q.ver < EXCLUDED.ver
