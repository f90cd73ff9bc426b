-- Users the batch leaves incomplete and that were not read whole since: one row per user,
-- the newest asking version kept.
INSERT INTO enrichment_queue AS q (user_id, realm_id, ver)
SELECT n.user_id, u.realm_id, n.ver
FROM {rows}
JOIN users u ON u.id = n.user_id
WHERE u.deleted_at IS NULL
  AND (u.read_ver IS NULL OR (n.if_read_before AND u.read_ver < n.ver))
ORDER BY n.user_id
ON CONFLICT (user_id) DO UPDATE SET ver = EXCLUDED.ver
WHERE q.ver < EXCLUDED.ver
