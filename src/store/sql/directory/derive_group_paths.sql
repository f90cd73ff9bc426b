-- Paths follow names: a group whose place is known all the way up (each ancestor's name and
-- parent, ending at a top-level group) is at its ancestors' names joined, so renaming or
-- moving a group moves its subgroups' paths too ($1: the groups this transaction wrote;
-- their subgroups are derived again with them). Where the place is not known, the path
-- stays as last reported. Depth is bounded against parent cycles.
WITH RECURSIVE tree AS (
    SELECT id FROM groups WHERE id = ANY($1::text[])
    UNION
    SELECT g.id FROM groups g JOIN tree t ON g.parent_id = t.id
),
chain AS (
    SELECT t.id, g.name, g.parent_id, g.parent_ver, 0 AS depth
    FROM tree t JOIN groups g ON g.id = t.id
    UNION ALL
    SELECT c.id, p.name, p.parent_id, p.parent_ver, c.depth + 1
    FROM chain c JOIN groups p ON p.id = c.parent_id
    WHERE c.depth < 64
),
derived AS (
    SELECT id, '/' || string_agg(name, '/' ORDER BY depth DESC) AS path
    FROM chain
    GROUP BY id
    HAVING bool_and(name IS NOT NULL AND parent_ver IS NOT NULL)
       AND bool_or(parent_id IS NULL)
)
UPDATE groups g SET path = d.path, updated_at = now()
FROM derived d
WHERE g.id = d.id AND g.path IS DISTINCT FROM d.path
