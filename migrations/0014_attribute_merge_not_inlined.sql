-- The attribute merge functions as PL/pgSQL: SQL functions are inlined into every
-- statement that calls them, and the user upsert then paid their planning on every
-- batch even though the merge runs only for the few rows with single attribute changes.
-- Same bodies, same results.
CREATE OR REPLACE FUNCTION newer_attribute_updates(a jsonb, b jsonb, after text)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF COALESCE(a, '{}') = '{}' AND COALESCE(b, '{}') = '{}' THEN
        RETURN '{}'::jsonb;
    END IF;
    RETURN (
        SELECT COALESCE(jsonb_object_agg(key, change), '{}'::jsonb)
        FROM (
            SELECT DISTINCT ON (key) key, change
            FROM (SELECT * FROM jsonb_each(COALESCE(a, '{}'))
                  UNION ALL
                  SELECT * FROM jsonb_each(COALESCE(b, '{}'))) AS e(key, change)
            WHERE (change ->> 'ver') COLLATE "C" > COALESCE(after, '') COLLATE "C"
            ORDER BY key, (change ->> 'ver') COLLATE "C" DESC
        ) AS newest);
END
$$;

CREATE OR REPLACE FUNCTION overlay_attributes(base jsonb, updates jsonb)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF updates = '{}' THEN
        RETURN base;
    END IF;
    RETURN (
        SELECT (COALESCE(base, '{}'::jsonb) - array_agg(key))
               || COALESCE(jsonb_object_agg(key, change -> 'value')
                               FILTER (WHERE jsonb_typeof(change -> 'value') = 'array'),
                           '{}'::jsonb)
        FROM jsonb_each(updates) AS u(key, change));
END
$$;
