/**
 * The package as an application gets it: `npm install --install-links <this folder>` into a
 * fresh directory copies what `files` publishes (not a link to this checkout) and installs
 * its dependencies there; a strict TypeScript consumer compiles against the declarations,
 * a wrong use of them does not, and the compiled consumer runs.
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { repo } from "./support.js";

const pkg = join(repo, "clients/typescript");
const tsc = join(pkg, "node_modules/.bin/tsc");

function sh(command: string, args: string[], cwd: string) {
  return spawnSync(command, args, { cwd, encoding: "utf8", env: { ...process.env, npm_config_update_notifier: "false" } });
}

const CONSUMER = `
import postgres from "postgres";
import {
  KeycloakSyncClient, NoTokenError, followChanges, postgresTypes, tables,
  type Change, type User, type UserSession,
} from "@keycloak-sync/client";

export function describe(change: Change): string {
  switch (change.kind) {
    case "session_ended": {
      const table: "user_sessions" = change.tableName;
      return table + " " + change.rowId;
    }
    case "user_disabled":
      return "user " + change.rowId;
    default:
      return change.kind;
  }
}

export function active(sessions: UserSession[], user: User): number {
  return sessions.filter((s) => s.user_id === user.id && s.ended_at === null).length + Number(user.login_count);
}

const client = new KeycloakSyncClient({
  url: "http://127.0.0.1:1",
  keycloak: { issuer: "http://127.0.0.1:1/realms/acme", clientId: "backend", clientSecret: "s" },
});
const sql = postgres("postgres://nobody@127.0.0.1:1/none", { types: postgresTypes });
console.log(JSON.stringify({
  client: typeof client.getAccessToken,
  follow: typeof followChanges,
  error: new NoTokenError("no_token", "none", 404) instanceof Error,
  users: Object.keys(tables.users).length > 5,
}));
await sql.end();
`;

const WRONG = `
import type { Change, User } from "@keycloak-sync/client";
export function wrong(change: Change, user: User): string {
  if (change.kind === "session_ended") {
    const table: "users" = change.tableName;
    return table;
  }
  const count: string = user.login_count;
  return count;
}
`;

const TSCONFIG = JSON.stringify({
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    strict: true,
    skipLibCheck: false,
    types: ["node"],
    typeRoots: [join(pkg, "node_modules/@types")],
    outDir: "out",
  },
  files: ["consumer.ts"],
});

test("installs into a fresh application and type-checks and runs there", () => {
  const app = mkdtempSync(join(tmpdir(), "kcs-ts-app-"));
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", version: "1.0.0", type: "module", private: true }));
  const install = sh("npm", ["install", "--no-audit", "--no-fund", "--install-links", pkg], app);
  assert.equal(install.status, 0, install.stderr);
  const installed = join(app, "node_modules/@keycloak-sync/client");
  assert.ok(!lstatSync(installed).isSymbolicLink(), "a copy, as from a registry");
  assert.ok(existsSync(join(installed, "dist/src/index.d.ts")), "declarations published");
  assert.ok(existsSync(join(installed, "prisma/keycloak-sync.prisma")), "the Prisma fragment published");
  assert.ok(!existsSync(join(installed, "dist/test")), "tests not published");
  assert.ok(existsSync(join(app, "node_modules/postgres")), "its dependency installed beside it");

  writeFileSync(join(app, "consumer.ts"), CONSUMER);
  writeFileSync(join(app, "tsconfig.json"), TSCONFIG);
  const compiled = sh(tsc, ["-p", "tsconfig.json"], app);
  assert.equal(compiled.status, 0, compiled.stdout + compiled.stderr);
  const ran = sh("node", ["out/consumer.js"], app);
  assert.equal(ran.status, 0, ran.stderr);
  assert.deepEqual(JSON.parse(ran.stdout), { client: "function", follow: "function", error: true, users: true });

  writeFileSync(join(app, "consumer.ts"), WRONG);
  const refused = sh(tsc, ["-p", "tsconfig.json", "--noEmit"], app);
  assert.notEqual(refused.status, 0, "a wrong table for a kind and a bigint as a string do not compile");
  assert.match(refused.stdout, /"user_sessions"' is not assignable to type '"users"'/);
  assert.match(refused.stdout, /'bigint' is not assignable to type 'string'/);
});
