/**
 * Following keycloak-sync's change feed (`changes` + NOTIFY) with postgres.js: LISTEN on a
 * dedicated connection, catch up from a position by `seq`, hand each change to the
 * application once and in order, and survive dropped connections. The `changes` table is
 * the record and a notification only says "there is more": nothing is missed when a
 * notification is lost with its connection, because every (re)connection reads again from
 * the position.
 *
 * Give it a postgres.js instance of its own created with `fetch_types: false`: postgres.js
 * 3.4 lets a connection terminated while it fetches array types escape as an unhandled
 * rejection (porsager/postgres#1223), and the follower reads no arrays.
 */

import type { Sql } from "postgres";
import type { JsonValue } from "./tables.js";

/** What a change says happened (`changes.kind`). */
export type ChangeKind =
  | "user_created"
  | "user_updated"
  | "user_disabled"
  | "user_deleted"
  | "session_started"
  | "session_ended"
  | "token_stored"
  | "token_revoked"
  | "group_member_added"
  | "group_member_removed"
  | "role_granted"
  | "role_revoked"
  | "organization_member_added"
  | "organization_member_removed"
  | "group_deleted"
  | "role_deleted"
  | "organization_deleted";

/** The public table each kind of change is about. */
export interface ChangeTables {
  user_created: "users";
  user_updated: "users";
  user_disabled: "users";
  user_deleted: "users";
  session_started: "user_sessions";
  session_ended: "user_sessions";
  token_stored: "auth_vault";
  token_revoked: "auth_vault";
  group_member_added: "user_groups";
  group_member_removed: "user_groups";
  role_granted: "user_roles";
  role_revoked: "user_roles";
  organization_member_added: "organization_members";
  organization_member_removed: "organization_members";
  group_deleted: "groups";
  role_deleted: "roles";
  organization_deleted: "organizations";
}

/** One change, typed by `kind` (narrow with `switch (change.kind)`). */
export type Change = {
  [K in ChangeKind]: {
    seq: bigint;
    at: Date;
    kind: K;
    tableName: ChangeTables[K];
    rowId: string;
    userId: string | null;
    detail: Record<string, JsonValue>;
  };
}[ChangeKind];

export interface FollowOptions {
  /** The last `seq` already handled (0 for everything); changes after it are delivered. */
  from: bigint | number | string;
  /** Called once per change, in `seq` order, awaited: the position moves only after it resolves. */
  onChange: (change: Change) => void | Promise<void>;
  /** `changes.channel` of keycloak-sync (default `keycloak_sync`). */
  channel?: string;
  /** `database.schema` of keycloak-sync (default `keycloak_sync`). */
  schema?: string;
  /** Changes read per query (default 500). */
  batchSize?: number;
  /** Reads again this often even without a notification (default 30 000 ms). */
  pollIntervalMs?: number;
  /**
   * A failed read or a throwing `onChange` (default: `console.error`). The change is tried
   * again after a pause: `onChange` may see a change again only if it threw for it.
   */
  onError?: (error: unknown) => void;
}

export interface Following {
  /** Stops listening; resolves once the change being handled (if any) is done. */
  stop(): Promise<void>;
  /** The `seq` of the last change handled. */
  position(): bigint;
}

const MAX_PAUSE_MS = 5_000;

export async function followChanges(sql: Sql<any>, options: FollowOptions): Promise<Following> {
  const channel = options.channel ?? "keycloak_sync";
  const schema = options.schema ?? "keycloak_sync";
  const batchSize = options.batchSize ?? 500;
  const onError = options.onError ?? ((error: unknown) => console.error("keycloak-sync followChanges:", error));
  let position = BigInt(options.from);
  let stopped = false;
  let wanted = true;
  let wake: (() => void) | undefined;
  const nudge = () => {
    wanted = true;
    wake?.();
  };
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });

  // LISTEN before the first read: a change committed between the two is not missed.
  // postgres.js listens on a connection of its own, reconnects and listens again after a
  // drop, and calls the third argument each time it listens: read again then.
  const listening = await sql.listen(channel, nudge, nudge);

  const pump = (async () => {
    let pause = 100;
    while (!stopped) {
      if (!wanted) {
        await sleep(options.pollIntervalMs ?? 30_000);
        wanted = true;
        continue;
      }
      wanted = false;
      try {
        for (;;) {
          const rows = await sql<
            { seq_text: string; at: Date; table_name: string; row_id: string; user_id: string | null; kind: string; detail: Record<string, JsonValue> }[]
          >`SELECT seq::text AS seq_text, at, table_name, row_id, user_id, kind, detail
            FROM ${sql(schema)}.changes WHERE seq > ${position.toString()}::int8
            ORDER BY seq LIMIT ${batchSize}`;
          for (const row of rows) {
            if (stopped) return;
            const change = {
              seq: BigInt(row.seq_text),
              at: row.at,
              kind: row.kind,
              tableName: row.table_name,
              rowId: row.row_id,
              userId: row.user_id,
              detail: row.detail ?? {},
            } as Change;
            await options.onChange(change);
            position = change.seq;
          }
          if (rows.length < batchSize) break;
        }
        pause = 100;
      } catch (error) {
        if (stopped) return;
        onError(error);
        wanted = true;
        await sleep(pause);
        pause = Math.min(pause * 2, MAX_PAUSE_MS);
      }
    }
  })();

  return {
    async stop() {
      stopped = true;
      wake?.();
      await listening.unlisten().catch(() => undefined);
      await pump;
    },
    position: () => position,
  };
}
