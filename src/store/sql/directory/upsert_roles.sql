-- Roles: name and composite last writer wins per field, deletion the earliest. A role
-- deleted by name before its id was known is deleted when it appears.
WITH n AS (
    SELECT n.*, (
        SELECT min(d.deleted_at) FROM role_name_deletions d
        WHERE d.realm_id = n.realm_id AND d.client_id = COALESCE(n.client_id, '')
          AND d.name = n.name AND version_ms(n.name_ver) <= d.deleted_at
    ) AS name_deleted_at
    FROM {rows}
),
old AS (
    SELECT r.id, r.deleted_at AS was_deleted_at
    FROM roles r JOIN n ON n.id = r.id
),
up AS (
    INSERT INTO roles AS r (id, realm_id, client_id, name, name_ver, composite,
        composite_ver, deleted_at)
    SELECT n.id, n.realm_id, n.client_id, n.name, n.name_ver, n.composite, n.composite_ver,
        LEAST(ms_ts(n.deleted_at), ms_ts(n.name_deleted_at))
    FROM n
    ON CONFLICT (id) DO UPDATE SET
        client_id = COALESCE(r.client_id, EXCLUDED.client_id),
        {last_writer_wins},
        deleted_at = LEAST(r.deleted_at, EXCLUDED.deleted_at),
        updated_at = now()
    RETURNING r.id, xmax = 0 AS created, r.deleted_at
)
-- deleted_now: for the feed; moved: the deletion is new or earlier, so what hangs on the
-- row ends (again) at it.
SELECT up.id, up.created,
    up.deleted_at IS NOT NULL AND old.was_deleted_at IS NULL AS deleted_now,
    up.deleted_at IS DISTINCT FROM old.was_deleted_at AS moved
FROM up LEFT JOIN old ON old.id = up.id
