-- Organizations: name and alias last writer wins per field, deletion the earliest.
WITH n AS (SELECT * FROM {rows}),
old AS (
    SELECT o.id, o.deleted_at AS was_deleted_at
    FROM organizations o JOIN n ON n.id = o.id
),
up AS (
    INSERT INTO organizations AS o (id, realm_id, name, name_ver, alias, alias_ver, deleted_at)
    SELECT n.id, n.realm_id, n.name, n.name_ver, n.alias, n.alias_ver, ms_ts(n.deleted_at)
    FROM n
    ON CONFLICT (id) DO UPDATE SET
        {last_writer_wins},
        deleted_at = LEAST(o.deleted_at, EXCLUDED.deleted_at),
        updated_at = now()
    RETURNING o.id, xmax = 0 AS created, o.deleted_at
)
-- deleted_now: for the feed; moved: the deletion is new or earlier, so what hangs on the
-- row ends (again) at it.
SELECT up.id, up.created,
    up.deleted_at IS NOT NULL AND old.was_deleted_at IS NULL AS deleted_now,
    up.deleted_at IS DISTINCT FROM old.was_deleted_at AS moved
FROM up LEFT JOIN old ON old.id = up.id
