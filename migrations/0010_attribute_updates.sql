-- Single attributes changed by events (UPDATE_PROFILE's `updated_<name>`), kept while they
-- are newer than the whole map a representation last set, so that `attributes` is last
-- writer wins per key whatever order the events arrive in. Bookkeeping:
-- {"<name>": {"value": ["…"] | null (removed), "ver": "<version>"}}.
ALTER TABLE users ADD COLUMN attribute_updates jsonb NOT NULL DEFAULT '{}';

-- The newest change per key of `a` and `b` among those newer than `after` (the whole map's
-- version): commutative, associative and idempotent, like every other merge.
CREATE FUNCTION newer_attribute_updates(a jsonb, b jsonb, after text)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN COALESCE(a, '{}') = '{}' AND COALESCE(b, '{}') = '{}' THEN '{}'::jsonb
        ELSE (
            SELECT COALESCE(jsonb_object_agg(key, change), '{}'::jsonb)
            FROM (
                SELECT DISTINCT ON (key) key, change
                FROM (SELECT * FROM jsonb_each(COALESCE(a, '{}'))
                      UNION ALL
                      SELECT * FROM jsonb_each(COALESCE(b, '{}'))) AS e(key, change)
                WHERE (change ->> 'ver') COLLATE "C" > COALESCE(after, '') COLLATE "C"
                ORDER BY key, (change ->> 'ver') COLLATE "C" DESC
            ) AS newest)
    END
$$;

-- `base` with each change applied: a key set to its values, or removed.
CREATE FUNCTION overlay_attributes(base jsonb, updates jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN updates = '{}' THEN base
        ELSE (
            SELECT (COALESCE(base, '{}'::jsonb) - array_agg(key))
                   || COALESCE(jsonb_object_agg(key, change -> 'value')
                                   FILTER (WHERE jsonb_typeof(change -> 'value') = 'array'),
                               '{}'::jsonb)
            FROM jsonb_each(updates) AS u(key, change))
    END
$$;
