/**
 * The public tables keycloak-sync keeps (schema `keycloak_sync` by default), as row types
 * for `postgres` (postgres.js) queries. Each table is described once at run time (column,
 * Postgres type, nullable) and its row type derived from that, so a test can compare the
 * description with the live schema after `keycloak-sync migrate`: a migration cannot
 * drift from these types unnoticed. Columns keycloak-sync keeps for its own bookkeeping
 * (`*_ver`, `decided_at`, …) are left out: read them at your own risk.
 *
 * `int8` columns are `bigint`: create postgres.js with `types: { bigint: postgres.BigInt }`
 * (see {@link postgresTypes}) — without it they arrive as strings.
 */

export type PgType = "text" | "bool" | "int8" | "timestamptz" | "jsonb";

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

interface Column {
  readonly type: PgType;
  readonly nullable: boolean;
}

type JsOf<T extends PgType> = T extends "text"
  ? string
  : T extends "bool"
    ? boolean
    : T extends "int8"
      ? bigint
      : T extends "timestamptz"
        ? Date
        : JsonValue;

/** The row type a table description stands for. */
export type RowOf<S extends Record<string, Column>> = {
  -readonly [K in keyof S]: S[K]["nullable"] extends true ? JsOf<S[K]["type"]> | null : JsOf<S[K]["type"]>;
};

const c = <T extends PgType, N extends boolean>(type: T, nullable: N) => ({ type, nullable }) as const;
const text = c("text", false);
const textNull = c("text", true);
const boolNull = c("bool", true);
const bool = c("bool", false);
const int8 = c("int8", false);
const at = c("timestamptz", false);
const atNull = c("timestamptz", true);

/** Every public table: its columns, Postgres types and nullability. */
export const tables = {
  users: {
    id: text,
    realm_id: text,
    username: textNull,
    email: textNull,
    first_name: textNull,
    last_name: textNull,
    email_verified: boolNull,
    enabled: boolNull,
    attributes: c("jsonb", true),
    created_at: atNull,
    last_login_at: atNull,
    login_count: int8,
    last_login_error_at: atNull,
    login_error_count: int8,
    deleted_at: atNull,
    updated_at: at,
  },
  user_sessions: {
    id: text,
    realm_id: text,
    user_id: textNull,
    client_id: textNull,
    ip_address: textNull,
    started_at: at,
    last_refresh_at: atNull,
    refresh_count: int8,
    ended_at: atNull,
    end_reason: textNull,
    is_active: boolNull,
    last_activity_at: atNull,
    expires_at: atNull,
    remember_me: bool,
    end_inferred: bool,
    offline_only: bool,
  },
  groups: {
    id: text,
    realm_id: text,
    name: textNull,
    path: textNull,
    parent_id: textNull,
    deleted_at: atNull,
    updated_at: at,
  },
  user_groups: {
    user_id: text,
    group_id: text,
    realm_id: text,
    member: bool,
    member_since: atNull,
    removed_at: atNull,
    updated_at: at,
  },
  roles: {
    id: text,
    realm_id: text,
    client_id: textNull,
    name: textNull,
    composite: boolNull,
    deleted_at: atNull,
    updated_at: at,
  },
  user_roles: {
    user_id: text,
    role_id: text,
    realm_id: text,
    client_id: textNull,
    role_name: textNull,
    direct: bool,
    effective: boolNull,
    updated_at: at,
  },
  organizations: {
    id: text,
    realm_id: text,
    name: textNull,
    alias: textNull,
    deleted_at: atNull,
    updated_at: at,
  },
  organization_members: {
    organization_id: text,
    user_id: text,
    realm_id: text,
    member: bool,
    member_since: atNull,
    removed_at: atNull,
    updated_at: at,
  },
  changes: {
    seq: int8,
    at: at,
    table_name: text,
    row_id: text,
    user_id: textNull,
    kind: text,
    detail: c("jsonb", false),
  },
} as const;

export type TableName = keyof typeof tables;

/** A user as Keycloak last told it; `deleted_at` set once deleted. */
export type User = RowOf<typeof tables.users>;
/** A session: live while `ended_at` is null (and `expires_at` not past). */
export type UserSession = RowOf<typeof tables.user_sessions>;
export type Group = RowOf<typeof tables.groups>;
/** Membership of a user in a group (`member` false once removed). */
export type UserGroup = RowOf<typeof tables.user_groups>;
export type Role = RowOf<typeof tables.roles>;
/** A role of a user: `direct` granted to the user, `effective` through groups or composites. */
export type UserRole = RowOf<typeof tables.user_roles>;
export type Organization = RowOf<typeof tables.organizations>;
export type OrganizationMember = RowOf<typeof tables.organization_members>;
/** A row of the change feed as stored (see `Change` for the typed form). */
export type ChangeRow = RowOf<typeof tables.changes>;
