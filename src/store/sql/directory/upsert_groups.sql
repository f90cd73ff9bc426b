-- Groups: names, paths and parents last writer wins per field, deletion the earliest.
-- Returns each row with whether it is new and whether this statement deleted it.
WITH n AS (SELECT * FROM {rows}),
old AS (
    SELECT g.id, g.deleted_at AS was_deleted_at
    FROM groups g JOIN n ON n.id = g.id
),
up AS (
    INSERT INTO groups AS g (id, realm_id, name, name_ver, path, path_ver, parent_id,
        parent_ver, deleted_at)
    SELECT n.id, n.realm_id, n.name, n.name_ver, n.path, n.path_ver, n.parent_id,
        n.parent_ver, ms_ts(n.deleted_at)
    FROM n
    ON CONFLICT (id) DO UPDATE SET
        {last_writer_wins},
        deleted_at = LEAST(g.deleted_at, EXCLUDED.deleted_at),
        updated_at = now()
    RETURNING g.id, xmax = 0 AS created, g.deleted_at
)
-- deleted_now: for the feed; moved: the deletion is new or earlier, so what hangs on the
-- row ends (again) at it.
SELECT up.id, up.created,
    up.deleted_at IS NOT NULL AND old.was_deleted_at IS NULL AS deleted_now,
    up.deleted_at IS DISTINCT FROM old.was_deleted_at AS moved
FROM up LEFT JOIN old ON old.id = up.id
