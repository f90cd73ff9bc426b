-- The change feed: what each commit changed, for applications to follow. `seq` is taken
-- from `changes_seq` under a transaction-level lock held until the commit (store/feed.rs),
-- so every reader sees seqs in commit order: a seq that becomes visible later is always
-- larger than every seq visible now. Rolled-back transactions leave gaps, never
-- out-of-order rows. Public, like users and sessions.
CREATE SEQUENCE changes_seq;

CREATE TABLE changes (
    seq        bigint PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    -- `table` is a reserved word in SQL.
    table_name text NOT NULL,
    row_id     text NOT NULL,
    user_id    text,
    kind       text NOT NULL,
    detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX changes_at ON changes USING brin (at);
