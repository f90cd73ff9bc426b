-- The change feed's commit step, one round trip: the lock that orders the feed (held until
-- the commit, so seqs become visible in commit order), the changes with their seqs, and
-- their notifications — listed in seq order, split so that no payload reaches Postgres's
-- 8000-byte limit: entries of at most 1000 bytes, a new notification every 6000 bytes
-- (an entry longer than 1000 bytes stays in its range but out of the list; the reader
-- finds it in `changes`).
WITH locked AS MATERIALIZED (
    SELECT pg_advisory_xact_lock($1)
),
inserted AS (
    INSERT INTO changes (seq, table_name, row_id, user_id, kind, detail)
    SELECT nextval('changes_seq'), n.table_name, n.row_id, n.user_id, n.kind, n.detail::jsonb
    FROM locked,
         UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
             AS n(table_name, row_id, user_id, kind, detail)
    RETURNING seq, table_name, row_id, user_id, kind, detail
),
entries AS (
    SELECT seq, json_build_object('seq', seq, 'table', table_name, 'row_id', row_id,
                                  'user_id', user_id, 'kind', kind, 'detail', detail)::text AS entry
    FROM inserted
),
numbered AS (
    SELECT seq, CASE WHEN length(entry) <= 1000 THEN entry END AS entry,
        (sum(LEAST(length(entry), 1000) + 1) OVER (ORDER BY seq) - 1) / 6000 AS part
    FROM entries
)
SELECT count(pg_notify($7, payload))
FROM (
    SELECT json_build_object(
               'from', min(seq), 'to', max(seq),
               'changes', COALESCE(json_agg(entry::json ORDER BY seq)
                                       FILTER (WHERE entry IS NOT NULL), '[]'))::text AS payload
    FROM numbered
    GROUP BY part
    ORDER BY part
) notifications
