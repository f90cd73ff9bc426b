-- `vault import` runs: where each stopped (the last user of the last page applied) and
-- what it counted, so an interrupted import resumes. Bookkeeping.
CREATE TABLE vault_imports (
    import_id   text PRIMARY KEY,
    after_realm text,
    after_user  text,
    counts      jsonb NOT NULL DEFAULT '{}',
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
