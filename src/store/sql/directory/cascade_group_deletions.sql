-- Keycloak removes a group's subgroups with it: each group below a deleted one is deleted
-- at the earliest deletion along its ancestors, subgroups learnt about later included
-- ($1: the groups this transaction wrote). Depth is bounded against parent cycles that
-- out-of-order moves could leave for a moment.
WITH RECURSIVE tree AS (
    SELECT id FROM groups WHERE id = ANY($1::text[])
    UNION
    SELECT g.id FROM groups g JOIN tree t ON g.parent_id = t.id
),
chain AS (
    SELECT t.id, g.parent_id, g.deleted_at, 0 AS depth
    FROM tree t JOIN groups g ON g.id = t.id
    UNION ALL
    SELECT c.id, p.parent_id, p.deleted_at, c.depth + 1
    FROM chain c JOIN groups p ON p.id = c.parent_id
    WHERE c.depth < 64
),
earliest AS (
    SELECT id, min(deleted_at) AS deleted_at FROM chain GROUP BY id
)
UPDATE groups g SET deleted_at = e.deleted_at, updated_at = now()
FROM earliest e, groups x
WHERE g.id = e.id AND x.id = e.id AND e.deleted_at IS NOT NULL
  AND g.deleted_at IS DISTINCT FROM e.deleted_at
RETURNING g.id, g.realm_id, x.deleted_at IS NULL AS deleted_now
