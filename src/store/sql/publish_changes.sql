-- The change feed's rows and notifications, after `feed.rs` took the feed's lock and
-- reserved the seqs $1 .. $1 + n - 1 (the lock is held until the commit, so seqs become
-- visible in commit order). The payloads ($8) were built from the same changes.
WITH inserted AS (
    INSERT INTO changes (seq, table_name, row_id, user_id, kind, detail)
    SELECT $1 + n.i - 1, n.table_name, n.row_id, n.user_id, n.kind, n.detail::jsonb
    FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
        WITH ORDINALITY AS n(table_name, row_id, user_id, kind, detail, i)
)
SELECT count(pg_notify($7, p)) FROM UNNEST($8::text[]) AS p
