-- A reconcile run holds its realm by a lease (renewed with each page of users) and keeps
-- the ids Keycloak listed under its run id: no session-level lock or temporary table,
-- which a connection pooler in transaction mode cannot keep. Bookkeeping.
CREATE TABLE reconcile_leases (
    realm_id   text COLLATE "C" PRIMARY KEY,
    run_id     text COLLATE "C" NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE UNLOGGED TABLE reconcile_listed (
    run_id text COLLATE "C" NOT NULL,
    id     text COLLATE "C" NOT NULL,
    PRIMARY KEY (run_id, id)
);
