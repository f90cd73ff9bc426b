/**
 * followChanges against the real Postgres and the changes keycloak-sync itself writes
 * (`keycloak-sync replay` of a sampled history): a burst of thousands delivered once and
 * in order; the feed followed across killed connections (`pg_terminate_backend`) without a
 * gap or a repeat; a handler that throws sees its change again, and nothing after it first.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import postgres from "postgres";
import { followChanges, type Change, type Following } from "../src/index.js";
import { freshDatabase, run, waitUntil } from "./support.js";

async function changeCount(url: string): Promise<number> {
  const sql = postgres(url, { max: 1 });
  const [row] = await sql<{ n: string }[]>`SELECT count(*)::text AS n FROM keycloak_sync.changes`;
  await sql.end();
  return Number(row?.n ?? 0);
}

function history(events: number, seed: number): string {
  return run(["sample", "--events", String(events), "--users", String(Math.max(1, Math.floor(events / 40))), "--seed", String(seed)], {});
}

function assertInOrderOnce(seen: Change[]) {
  for (let i = 1; i < seen.length; i++) {
    assert.ok(seen[i - 1]!.seq < seen[i]!.seq, `seq ${seen[i]!.seq} after ${seen[i - 1]!.seq}`);
  }
}

test("a burst of thousands of changes is delivered once and in order", async () => {
  const db = await freshDatabase();
  const sql = postgres(db.url, { max: 4, onnotice: () => undefined });
  let following: Following | undefined;
  try {
    run(["migrate"], { KEYCLOAK_SYNC__DATABASE__URL: db.url });
    const seen: Change[] = [];
    following = await followChanges(sql, { from: 0, onChange: (c) => void seen.push(c) });
    run(["replay", "--no-migrate", "-"], { KEYCLOAK_SYNC__DATABASE__URL: db.url }, history(8000, 7));
    const total = await changeCount(db.url);
    assert.ok(total > 2000, `the history made ${total} changes`);
    assert.ok(await waitUntil(30_000, async () => seen.length >= total), `${seen.length} of ${total}`);
    await following.stop();
    assert.equal(seen.length, total);
    assertInOrderOnce(seen);
    assert.equal(following.position(), seen.at(-1)!.seq);
    const kinds = new Set(seen.map((c) => c.kind));
    assert.ok(kinds.has("user_created") && kinds.has("session_started"), [...kinds].join(","));
    const created = seen.find((c) => c.kind === "user_created");
    assert.equal(created?.tableName, "users");
    assert.ok(created?.at instanceof Date);
  } finally {
    await following?.stop();
    await sql.end({ timeout: 5 });
    await db.drop();
  }
});

test("the follower survives killed connections without a gap or a repeat", async () => {
  const db = await freshDatabase();
  // fetch_types: false, as the README asks of a follower's instance: postgres.js 3.4 lets a
  // connection terminated while it fetches array types escape as an unhandled rejection
  // (porsager/postgres#1223), which ends a Node process.
  const sql = postgres(db.url, {
    max: 2,
    fetch_types: false,
    onnotice: () => undefined,
    connection: { application_name: "kcs-ts-follower" },
  });
  const killer = postgres(db.url, { max: 1 });
  let following: Following | undefined;
  try {
    run(["migrate"], { KEYCLOAK_SYNC__DATABASE__URL: db.url });
    // Start from a position in the middle of an earlier history: only what follows comes.
    run(["replay", "--no-migrate", "-"], { KEYCLOAK_SYNC__DATABASE__URL: db.url }, history(400, 1));
    const before = await changeCount(db.url);
    const seen: Change[] = [];
    const errors: unknown[] = [];
    following = await followChanges(sql, {
      from: before,
      onChange: (c) => void seen.push(c),
      onError: (e) => errors.push(e),
      // No polling to fall back on: only the reconnection's own read finds the gap.
      pollIntervalMs: 600_000,
    });
    const followerConnections = async () => {
      const [row] = await killer<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE application_name = 'kcs-ts-follower' AND datname = current_database()`;
      return row?.n ?? 0;
    };
    for (let round = 0; round < 3; round++) {
      assert.ok(await waitUntil(20_000, async () => (await followerConnections()) >= 1), "the follower is connected");
      const [killed] = await killer<{ n: number }[]>`SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
        WHERE application_name = 'kcs-ts-follower' AND datname = current_database()`;
      assert.ok((killed?.n ?? 0) >= 1, "the follower's connections were killed");
      // Written while the follower is reconnecting: its notifications are lost with it.
      run(["replay", "--no-migrate", "-"], { KEYCLOAK_SYNC__DATABASE__URL: db.url }, history(300, 100 + round));
      const now = await changeCount(db.url);
      assert.ok(
        await waitUntil(30_000, async () => seen.length >= now - before),
        `round ${round}: ${seen.length} of ${now - before} after the kill`,
      );
    }
    const total = await changeCount(db.url);
    await new Promise((r) => setTimeout(r, 500));
    await following.stop();
    assert.equal(seen.length, total - before, "each change once");
    assert.equal(seen[0]!.seq, BigInt(before + 1));
    assertInOrderOnce(seen);
  } finally {
    await following?.stop();
    await killer.end();
    await sql.end({ timeout: 5 });
    await db.drop();
  }
});

test("a change whose handler throws is delivered again, and none after it before", async () => {
  const db = await freshDatabase();
  const sql = postgres(db.url, { max: 2, onnotice: () => undefined });
  let following: Following | undefined;
  try {
    run(["migrate"], { KEYCLOAK_SYNC__DATABASE__URL: db.url });
    run(["replay", "--no-migrate", "-"], { KEYCLOAK_SYNC__DATABASE__URL: db.url }, history(200, 3));
    const total = await changeCount(db.url);
    const attempts = new Map<bigint, number>();
    const seen: bigint[] = [];
    const errors: unknown[] = [];
    following = await followChanges(sql, {
      from: 0,
      onError: (e) => errors.push(e),
      onChange: async (c) => {
        const n = (attempts.get(c.seq) ?? 0) + 1;
        attempts.set(c.seq, n);
        if (c.seq === 5n && n < 3) throw new Error("the application's database is down");
        seen.push(c.seq);
      },
    });
    assert.ok(await waitUntil(30_000, async () => seen.length >= total), `${seen.length} of ${total}`);
    await following.stop();
    assert.equal(attempts.get(5n), 3);
    assert.equal(errors.length, 2);
    assert.deepEqual(seen, Array.from({ length: total }, (_, i) => BigInt(i + 1)));
  } finally {
    await following?.stop();
    await sql.end({ timeout: 5 });
    await db.drop();
  }
});
