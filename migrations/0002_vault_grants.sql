-- Bookkeeping: REVOKE_GRANT events, so an offline token older than the revocation that
-- arrives after it is still refused.
CREATE TABLE grant_revocations (
    user_id   text COLLATE "C" NOT NULL,
    client_id text COLLATE "C" NOT NULL,
    at        timestamptz NOT NULL,
    PRIMARY KEY (user_id, client_id, at)
);
