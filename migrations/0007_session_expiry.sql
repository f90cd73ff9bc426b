-- Sessions that time out: Keycloak before 26.5 never says so, so keycloak-sync works out
-- when Keycloak would drop each session from its realm's policy.

ALTER TABLE user_sessions
    -- The latest event that refreshed the session in Keycloak (login, code exchange,
    -- token refresh, impersonation).
    ADD COLUMN last_activity_at timestamptz,
    -- When Keycloak would expire the session; null while the realm's policy is unknown.
    ADD COLUMN expires_at timestamptz,
    -- The LOGIN said `remember_me`: the realm's remember-me timeouts apply.
    ADD COLUMN remember_me boolean NOT NULL DEFAULT false,
    -- Bookkeeping: the end was inferred from `expires_at`, not reported by an event, so
    -- evidence of later activity may still move it.
    ADD COLUMN end_inferred boolean NOT NULL DEFAULT false;

UPDATE user_sessions SET last_activity_at = GREATEST(started_at, last_refresh_at);

CREATE INDEX user_sessions_open_expiry ON user_sessions (expires_at)
    WHERE ended_at IS NULL AND expires_at IS NOT NULL;
CREATE INDEX user_sessions_realm ON user_sessions (realm_id);

-- Bookkeeping: each realm's session timeouts as Keycloak enforces them (0 already turned
-- into Keycloak's default, remember-me values never below the regular ones).
CREATE TABLE realm_session_policies (
    realm_id                    text COLLATE "C" PRIMARY KEY,
    realm_name                  text,
    idle_secs                   bigint NOT NULL CHECK (idle_secs > 0),
    max_lifespan_secs           bigint NOT NULL CHECK (max_lifespan_secs > 0),
    idle_remember_me_secs       bigint NOT NULL CHECK (idle_remember_me_secs > 0),
    max_lifespan_remember_me_secs bigint NOT NULL CHECK (max_lifespan_remember_me_secs > 0),
    -- Keycloak's tolerance for a refresh not yet seen by every node.
    idle_grace_secs             bigint NOT NULL CHECK (idle_grace_secs >= 0),
    -- How far past its expiry a session must be before it is ended
    -- (`sessions.expiry_margin_secs`), so events a slow queue delays can still move it.
    expiry_margin_secs          bigint NOT NULL CHECK (expiry_margin_secs >= 0),
    source                      text NOT NULL CHECK (source IN ('admin_api', 'config')),
    -- An admin REALM UPDATE arrived since the policy was read: read it again.
    stale                       boolean NOT NULL DEFAULT false,
    read_at                     timestamptz NOT NULL DEFAULT now()
);

-- When Keycloak would drop a session: idle since its last activity (plus the grace
-- window) or its max lifespan since it started, whichever comes first.
CREATE FUNCTION session_expiry(started timestamptz, last_activity timestamptz,
                               remember_me boolean, p realm_session_policies)
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
    SELECT LEAST(
        GREATEST(started, last_activity) + make_interval(secs =>
            CASE WHEN remember_me THEN p.idle_remember_me_secs ELSE p.idle_secs END
            + p.idle_grace_secs),
        started + make_interval(secs =>
            CASE WHEN remember_me THEN p.max_lifespan_remember_me_secs
                 ELSE p.max_lifespan_secs END))
$$;

-- Bookkeeping: admin logouts of a whole realm (REALM ACTION logout-all), kept so that a
-- session or token learnt about later still ends.
CREATE TABLE realm_cutoffs (
    realm_id text COLLATE "C" NOT NULL,
    at       timestamptz NOT NULL,
    ver      text COLLATE "C" NOT NULL,
    PRIMARY KEY (realm_id, ver)
);
