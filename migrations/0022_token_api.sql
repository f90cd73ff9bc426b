-- The token API (`POST /v1/tokens/access`): the access token Keycloak last issued for a
-- stored refresh or offline token is kept sealed beside it (token_type 'access', one per
-- source token, `source_id`), so every replica serves it without another refresh.
ALTER TABLE auth_vault DROP CONSTRAINT auth_vault_token_type_check;
ALTER TABLE auth_vault ADD CONSTRAINT auth_vault_token_type_check
    CHECK (token_type IN ('refresh', 'offline', 'access'));
ALTER TABLE auth_vault ADD COLUMN source_id uuid REFERENCES auth_vault (id) ON DELETE CASCADE;
ALTER TABLE auth_vault ADD CONSTRAINT auth_vault_access_has_source
    CHECK ((token_type = 'access') = (source_id IS NOT NULL));
CREATE UNIQUE INDEX auth_vault_one_access_per_source ON auth_vault (source_id)
    WHERE token_type = 'access';

-- One refresh in flight per source token across replicas: a lease taken with one
-- statement and given back after the refresh's own commit; no transaction stays open
-- across the call to Keycloak, so it holds behind a transaction-mode pooler. A replica
-- that dies leaves a lease that simply runs out.
CREATE TABLE token_refresh_leases (
    token_id uuid PRIMARY KEY,
    holder   text NOT NULL,
    until    timestamptz NOT NULL
);

-- Who asked for what, and what came of it; never a token.
CREATE TABLE token_audit (
    at        timestamptz NOT NULL DEFAULT now(),
    caller    text NOT NULL,
    realm_id  text,
    user_id   text,
    client_id text,
    action    text NOT NULL CHECK (action IN ('read', 'store')),
    outcome   text NOT NULL
);
CREATE INDEX token_audit_at ON token_audit USING brin (at);
