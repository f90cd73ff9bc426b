-- Roles deleted by name: remembered (for roles learnt about later) and applied to the
-- roles known under that name in that container from before the deletion (a role made
-- again under the same name afterwards has a new id and later events).
WITH n AS (SELECT * FROM {rows}),
remembered AS (
    INSERT INTO role_name_deletions AS d (realm_id, client_id, name, deleted_at)
    SELECT n.realm_id, COALESCE(n.client_id, ''), n.name, n.at FROM n
    ON CONFLICT DO NOTHING
)
UPDATE roles r SET deleted_at = LEAST(r.deleted_at, ms_ts(n.at)), updated_at = now()
FROM n, roles x
WHERE x.id = r.id
  AND r.realm_id = n.realm_id AND r.client_id IS NOT DISTINCT FROM n.client_id
  AND r.name = n.name AND version_ms(r.name_ver) <= n.at
  AND (r.deleted_at IS NULL OR r.deleted_at > ms_ts(n.at))
RETURNING r.id, x.deleted_at IS NULL AS deleted_now
