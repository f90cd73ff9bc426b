-- The Admin API side: which users still need reading whole, and backfill progress.

-- Bookkeeping: the newest version at which the whole profile was read from Keycloak.
ALTER TABLE users ADD COLUMN read_ver text COLLATE "C";

-- Users whose profile an event left incomplete, read from Keycloak in the background.
-- One row per user (so requests deduplicate); `ver` is the newest event that asked.
CREATE TABLE enrichment_queue (
    user_id         text COLLATE "C" PRIMARY KEY,
    realm_id        text NOT NULL,
    ver             text COLLATE "C" NOT NULL,
    enqueued_at     timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text
);
CREATE INDEX enrichment_queue_due ON enrichment_queue (next_attempt_at);

-- Where each backfill window got to, so an interrupted run resumes. `until_ms` -1: open.
CREATE TABLE backfill_checkpoints (
    realm       text NOT NULL,
    stream      text NOT NULL CHECK (stream IN ('events', 'admin-events')),
    since_ms    bigint NOT NULL,
    until_ms    bigint NOT NULL,
    next_first  bigint NOT NULL DEFAULT 0,
    fetched     bigint NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (realm, stream, since_ms, until_ms)
);
