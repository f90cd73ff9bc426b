/**
 * The row types against the live schema: after `keycloak-sync migrate`, every described
 * column exists with its Postgres type and nullability, and every column of a public
 * table is either described or named here as keycloak-sync's own bookkeeping. A
 * migration that adds, drops or changes a column fails this test until the types follow.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { tables } from "../src/index.js";
import { liveSchema } from "./support.js";

/** Columns of the public tables that applications should not read (versions, decisions). */
const BOOKKEEPING: Record<string, string[]> = {
  users: [
    "username_ver",
    "email_ver",
    "first_name_ver",
    "last_name_ver",
    "email_verified_ver",
    "enabled_ver",
    "attributes_ver",
    "read_ver",
    "attribute_updates",
    "change_flags",
  ],
  user_sessions: ["client_ver", "ip_ver", "end_ver"],
  groups: ["name_ver", "path_ver", "parent_ver"],
  user_groups: ["decided_at", "ver"],
  roles: ["name_ver", "composite_ver"],
  user_roles: ["direct_granted", "decided_at", "ver", "effective_ver"],
  organizations: ["name_ver", "alias_ver"],
  organization_members: ["decided_at", "ver"],
  changes: [],
};

const PG_TYPE: Record<string, string> = {
  text: "text",
  boolean: "bool",
  bigint: "int8",
  "timestamp with time zone": "timestamptz",
  jsonb: "jsonb",
};

test("the row types match the schema keycloak-sync migrate creates", async () => {
  const { columns } = await liveSchema();
  const problems: string[] = [];
  for (const [table, described] of Object.entries(tables)) {
    const live = columns.filter((c) => c.table_name === table);
    assert.ok(live.length > 0, `table ${table} is missing`);
    for (const [name, column] of Object.entries(described)) {
      const found = live.find((c) => c.column_name === name);
      if (!found) {
        problems.push(`${table}.${name}: described, not in the schema`);
        continue;
      }
      const type = PG_TYPE[found.data_type] ?? found.data_type;
      if (type !== column.type) problems.push(`${table}.${name}: ${type} in the schema, ${column.type} described`);
      const nullable = found.is_nullable === "YES";
      if (nullable !== column.nullable) {
        problems.push(`${table}.${name}: ${nullable ? "nullable" : "not null"} in the schema`);
      }
    }
    for (const { column_name } of live) {
      if (!(column_name in described) && !BOOKKEEPING[table]?.includes(column_name)) {
        problems.push(`${table}.${column_name}: in the schema, neither described nor bookkeeping`);
      }
    }
  }
  assert.deepEqual(problems, []);
});
