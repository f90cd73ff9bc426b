-- What applications authorize with: groups, roles and organizations, and who belongs to
-- or holds them. Public, like users and sessions.
--
-- Each membership (or role grant) row keeps the verdict of the latest event about it, by
-- (time, event id) version: `member`/`direct_granted`, `decided_at` (its time) and `ver`.
-- The public columns are functions of that verdict and of the deletion times of what the
-- row hangs on (the user, the group, the role, the organization), recomputed whenever
-- either changes, so the rows are the same whatever order the events come in.

CREATE TABLE groups (
    id          text COLLATE "C" PRIMARY KEY,
    realm_id    text NOT NULL,
    name        text,
    path        text,
    parent_id   text COLLATE "C",
    deleted_at  timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Bookkeeping: the version of each value (last writer wins per field).
    name_ver    text COLLATE "C",
    path_ver    text COLLATE "C",
    parent_ver  text COLLATE "C"
);
CREATE INDEX groups_parent ON groups (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE user_groups (
    user_id      text COLLATE "C" NOT NULL,
    group_id     text COLLATE "C" NOT NULL,
    realm_id     text NOT NULL,
    member_since timestamptz,
    removed_at   timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    member       boolean NOT NULL,
    decided_at   bigint NOT NULL,
    ver          text COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, group_id)
);
CREATE INDEX user_groups_group ON user_groups (group_id);

CREATE TABLE roles (
    id          text COLLATE "C" PRIMARY KEY,
    realm_id    text NOT NULL,
    -- The client's id (not its clientId) for a client role, null for a realm role.
    client_id   text COLLATE "C",
    name        text,
    composite   boolean,
    deleted_at  timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    name_ver      text COLLATE "C",
    composite_ver text COLLATE "C"
);
-- Keycloak deletes roles by name (`roles/{name}`, `clients/{id}/roles/{name}`).
CREATE INDEX roles_by_name ON roles (realm_id, client_id, name);

-- A role deleted by name before anything told its id: later-learnt grants from before
-- the deletion must not bring it back.
CREATE TABLE role_name_deletions (
    realm_id    text NOT NULL,
    client_id   text COLLATE "C" NOT NULL,  -- '' for realm roles
    name        text NOT NULL,
    deleted_at  bigint NOT NULL,
    PRIMARY KEY (realm_id, client_id, name)
);

CREATE TABLE user_roles (
    user_id        text COLLATE "C" NOT NULL,
    role_id        text COLLATE "C" NOT NULL,
    realm_id       text NOT NULL,
    client_id      text COLLATE "C",
    role_name      text,
    -- Mapped to the user itself.
    direct         boolean NOT NULL DEFAULT false,
    -- Held at all (directly, through a group, a composite or the default roles), as the
    -- Admin API computes it; null until read.
    effective      boolean,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    direct_granted boolean,
    decided_at     bigint,
    ver            text COLLATE "C",
    effective_ver  text COLLATE "C",
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX user_roles_role ON user_roles (role_id);

CREATE TABLE organizations (
    id          text COLLATE "C" PRIMARY KEY,
    realm_id    text NOT NULL,
    name        text,
    alias       text,
    deleted_at  timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    name_ver    text COLLATE "C",
    alias_ver   text COLLATE "C"
);

CREATE TABLE organization_members (
    organization_id text COLLATE "C" NOT NULL,
    user_id         text COLLATE "C" NOT NULL,
    realm_id        text NOT NULL,
    member_since    timestamptz,
    removed_at      timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    member          boolean NOT NULL,
    decided_at      bigint NOT NULL,
    ver             text COLLATE "C" NOT NULL,
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX organization_members_user ON organization_members (user_id);

-- The time (epoch ms) of a version `1<time:15>:<event id>` (core::plan::Version).
CREATE FUNCTION version_ms(ver text) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT substr(ver, 2, 15)::bigint $$;

-- Organization members added by username whose user is not known yet (the add arrived
-- before the user): kept with their verdict until a user of that name is written.
CREATE TABLE organization_members_pending (
    organization_id text COLLATE "C" NOT NULL,
    realm_id        text NOT NULL,
    username        text NOT NULL,
    member          boolean NOT NULL,
    decided_at      bigint NOT NULL,
    ver             text COLLATE "C" NOT NULL,
    since           bigint,
    PRIMARY KEY (organization_id, realm_id, username)
);
