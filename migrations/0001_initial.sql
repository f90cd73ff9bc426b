-- Tables applications read (GUIDE §3). Every statement is unqualified: the connection's
-- search_path selects the configured schema. Identifiers are opaque, so they compare
-- bytewise (COLLATE "C"): fast, and independent of the database's locale.

CREATE TABLE users (
    id                  text COLLATE "C" PRIMARY KEY,
    realm_id            text NOT NULL,
    username            text,
    email               text,
    first_name          text,
    last_name           text,
    email_verified      boolean,
    enabled             boolean,
    attributes          jsonb,
    created_at          timestamptz,
    last_login_at       timestamptz,
    login_count         bigint NOT NULL DEFAULT 0,
    last_login_error_at timestamptz,
    login_error_count   bigint NOT NULL DEFAULT 0,
    deleted_at          timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- Bookkeeping: the (time, event id) version of the value each profile field holds.
    username_ver        text COLLATE "C",
    email_ver           text COLLATE "C",
    first_name_ver      text COLLATE "C",
    last_name_ver       text COLLATE "C",
    email_verified_ver  text COLLATE "C",
    enabled_ver         text COLLATE "C",
    attributes_ver      text COLLATE "C"
) WITH (fillfactor = 70);  -- room for HOT updates: most events only bump counters
CREATE INDEX users_realm_username ON users (realm_id, username);
CREATE INDEX users_email ON users (lower(email));

CREATE TABLE user_sessions (
    id              text COLLATE "C" PRIMARY KEY,
    realm_id        text NOT NULL,
    user_id         text COLLATE "C",
    client_id       text,
    ip_address      text,
    started_at      timestamptz NOT NULL,
    last_refresh_at timestamptz,
    refresh_count   bigint NOT NULL DEFAULT 0,
    ended_at        timestamptz,
    end_reason      text CHECK (end_reason IN ('logout', 'admin', 'user_deleted', 'user_disabled', 'expired')),
    is_active       boolean GENERATED ALWAYS AS (ended_at IS NULL) STORED,
    -- Bookkeeping: versions of the first client/address seen and of the ending event.
    client_ver      text COLLATE "C",
    ip_ver          text COLLATE "C",
    end_ver         text COLLATE "C",
    CHECK ((ended_at IS NULL) = (end_reason IS NULL))
) WITH (fillfactor = 80);
CREATE INDEX user_sessions_user ON user_sessions (user_id, started_at);

-- Bookkeeping: user deletions and disablings, kept so that a session learnt about after
-- them still ends at the right time.
CREATE TABLE session_cutoffs (
    user_id text COLLATE "C" NOT NULL,
    at      timestamptz NOT NULL,
    reason  text NOT NULL CHECK (reason IN ('user_deleted', 'user_disabled')),
    ver     text COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, ver)
);

CREATE TABLE auth_vault (
    id          uuid PRIMARY KEY,
    realm_id    text NOT NULL,
    user_id     text COLLATE "C" NOT NULL,
    token_type  text NOT NULL CHECK (token_type IN ('refresh', 'offline')),
    session_id  text COLLATE "C",
    client_id   text,
    key_id      text NOT NULL,
    nonce       bytea NOT NULL,
    ciphertext  bytea NOT NULL,
    expires_at  timestamptz,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Bookkeeping: time and version of the token message the row holds.
    issued_at   timestamptz NOT NULL,
    issued_ver  text COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX auth_vault_one_refresh_per_user
    ON auth_vault (realm_id, user_id) WHERE token_type = 'refresh';
CREATE UNIQUE INDEX auth_vault_one_offline_per_grant
    ON auth_vault (realm_id, user_id, (coalesce(client_id, '')), (coalesce(session_id, '')))
    WHERE token_type = 'offline';
CREATE INDEX auth_vault_session ON auth_vault (session_id);
CREATE INDEX auth_vault_user ON auth_vault (user_id);
CREATE INDEX auth_vault_expires ON auth_vault (expires_at);
CREATE INDEX auth_vault_key ON auth_vault (key_id);

-- The inbox: an event id here has been applied (or ignored) and changes nothing again.
CREATE TABLE processed_events (
    event_id     text COLLATE "C" PRIMARY KEY,
    kind         text NOT NULL,
    type         text NOT NULL,
    realm_id     text NOT NULL,
    event_time   timestamptz NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    outcome      text NOT NULL CHECK (outcome IN ('applied', 'ignored'))
);
-- Append-ordered: a BRIN index serves pruning by age at almost no write cost.
CREATE INDEX processed_events_processed_at ON processed_events USING brin (processed_at);

-- Epoch milliseconds (as every event carries them) to timestamptz, exactly.
CREATE FUNCTION ms_ts(ms bigint) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT '1970-01-01 00:00:00+00'::timestamptz + ms * interval '1 millisecond' $$;
