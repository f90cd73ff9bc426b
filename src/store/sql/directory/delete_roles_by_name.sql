-- Roles deleted by name: remembered (for roles learnt about later) and applied to the
-- roles known under that name in that container from before the deletion (a role made
-- again under the same name afterwards has a new id and later events). A batch may carry
-- several deletions of one name: each role takes the first at or after its naming.
WITH n AS (SELECT * FROM {rows}),
remembered AS (
    INSERT INTO role_name_deletions AS d (realm_id, client_id, name, deleted_at)
    SELECT n.realm_id, COALESCE(n.client_id, ''), n.name, n.at FROM n
    ON CONFLICT DO NOTHING
),
due AS (
    SELECT r.id, min(n.at) AS at
    FROM n JOIN roles r
      ON r.realm_id = n.realm_id AND r.client_id IS NOT DISTINCT FROM n.client_id
     AND r.name = n.name AND version_ms(r.name_ver) <= n.at
    GROUP BY r.id
)
UPDATE roles r SET deleted_at = LEAST(r.deleted_at, ms_ts(d.at)), updated_at = now()
FROM due d, roles x
WHERE r.id = d.id AND x.id = r.id
  AND (r.deleted_at IS NULL OR r.deleted_at > ms_ts(d.at))
RETURNING r.id, x.deleted_at IS NULL AS deleted_now
