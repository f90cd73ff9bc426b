/**
 * What the tests share: the local services of `scripts/services.sh` and the Keycloak of
 * `scripts/keycloak.sh` (their `env` exported), fresh databases, the keycloak-sync binary
 * (`KCS_BIN`, else the release or debug build of this repository) and its daemon.
 */

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import postgres from "postgres";

const here = dirname(fileURLToPath(import.meta.url));
/** The repository's root (this file runs from clients/typescript/dist/test). */
export const repo = resolve(here, "../../../..");

export function env(name: string, fallback?: string): string {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set: run eval "$(scripts/services.sh env)"`);
  return value;
}

export function binary(): string {
  const candidates = [
    process.env.KCS_BIN,
    join(repo, "target/release/keycloak-sync"),
    join(repo, "target/debug/keycloak-sync"),
  ];
  const found = candidates.find((path) => path !== undefined && existsSync(path));
  if (!found) throw new Error("no keycloak-sync binary: cargo build --release (or set KCS_BIN)");
  return found;
}

/** A new, empty database; `drop()` removes it. */
export async function freshDatabase(): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const admin = env("KCS_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:54329/postgres");
  const name = `kcs_test_ts_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const sql = postgres(admin, { max: 1, onnotice: () => undefined });
  await sql.unsafe(`CREATE DATABASE ${name}`);
  await sql.end();
  const url = admin.replace(/\/[^/]*$/, `/${name}`);
  return {
    url,
    name,
    async drop() {
      const sql = postgres(admin, { max: 1, onnotice: () => undefined });
      await sql.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await sql.end();
    },
  };
}

export interface LiveColumn {
  table_name: string;
  column_name: string;
  data_type: string;
  is_nullable: string;
}

/**
 * The schema `keycloak-sync migrate` creates, read from a fresh database (dropped after):
 * every column of schema `keycloak_sync`, and each table's primary-key columns in order.
 */
export async function liveSchema(): Promise<{ columns: LiveColumn[]; primaryKeys: Map<string, string[]> }> {
  const db = await freshDatabase();
  try {
    run(["migrate"], { KEYCLOAK_SYNC__DATABASE__URL: db.url });
    const sql = postgres(db.url, { max: 1 });
    try {
      const columns = await sql<LiveColumn[]>`
        SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
        WHERE table_schema = 'keycloak_sync'`;
      const keys = await sql<{ table_name: string; columns: string[] }[]>`
        SELECT c.conrelid::regclass::text AS table_name,
               array_agg(a.attname::text ORDER BY array_position(c.conkey, a.attnum)) AS columns
        FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
        WHERE c.contype = 'p' AND c.connamespace = 'keycloak_sync'::regnamespace
        GROUP BY c.conrelid`;
      const primaryKeys = new Map(keys.map((k) => [k.table_name.replace(/^keycloak_sync\./, ""), k.columns]));
      return { columns: [...columns], primaryKeys };
    } finally {
      await sql.end();
    }
  } finally {
    await db.drop();
  }
}

/** Runs `keycloak-sync <args>` to completion; throws with its output if it fails. */
export function run(args: string[], extraEnv: Record<string, string>, input?: string): string {
  const result = spawnSync(binary(), args, {
    env: { ...process.env, KEYCLOAK_SYNC__LOG__LEVEL: "warn", ...extraEnv },
    input,
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
  });
  if (result.status !== 0) {
    throw new Error(`keycloak-sync ${args.join(" ")} exited ${result.status}: ${result.stderr}`);
  }
  return result.stdout;
}

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
    server.on("error", reject);
  });
}

/** `keycloak-sync run` as a child process, its log in a file. */
export class Daemon {
  readonly child: ChildProcess;
  readonly log: string;
  readonly port: number;

  private constructor(child: ChildProcess, log: string, port: number) {
    this.child = child;
    this.log = log;
    this.port = port;
  }

  static async start(extraEnv: Record<string, string>): Promise<Daemon> {
    const port = await freePort();
    const log = join(tmpdir(), `kcs-ts-daemon-${randomUUID()}.log`);
    const out = openSync(log, "w");
    const id = randomUUID().slice(0, 8);
    const child = spawn(binary(), ["run"], {
      env: {
        ...process.env,
        KEYCLOAK_SYNC__HTTP__LISTEN: `127.0.0.1:${port}`,
        KEYCLOAK_SYNC__LOG__FORMAT: "json",
        KEYCLOAK_SYNC__AMQP__URL: env("KCS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:56729/%2f"),
        KEYCLOAK_SYNC__AMQP__QUEUE: `kcs-ts-${id}`,
        KEYCLOAK_SYNC__AMQP__EXCHANGE: `kcs-ts-${id}.events`,
        KEYCLOAK_SYNC__AMQP__DEAD_LETTER_EXCHANGE: `kcs-ts-${id}.dlx`,
        KEYCLOAK_SYNC__AMQP__DEAD_LETTER_QUEUE: `kcs-ts-${id}.dlq`,
        KEYCLOAK_SYNC__AMQP__RECONNECT_MAX_SECS: "2",
        ...extraEnv,
      },
      stdio: ["ignore", out, out],
    });
    const daemon = new Daemon(child, log, port);
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`keycloak-sync run exited: ${daemon.logText()}`);
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok).catch(() => false);
      if (ready) return daemon;
      await new Promise((r) => setTimeout(r, 250));
    }
    await daemon.stop();
    throw new Error(`keycloak-sync run not ready in 60 s: ${daemon.logText()}`);
  }

  logText(): string {
    return readFileSync(this.log, "utf8");
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGTERM");
    await exited;
  }
}

/** Polls `condition` until it holds or `withinMs` passes. */
export async function waitUntil(withinMs: number, condition: () => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return condition();
}
