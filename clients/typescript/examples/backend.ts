/**
 * A back end in a few lines: it ends its own sessions when Keycloak ends a user's session
 * or disables the user (the change feed), and calls an API on a user's behalf with an
 * access token from keycloak-sync (the token API) — it never holds a refresh token.
 *
 *   npm run build
 *   DATABASE_URL=postgres://…/keycloak_sync KEYCLOAK_SYNC_URL=http://127.0.0.1:8081 \
 *   KEYCLOAK_ISSUER=http://127.0.0.1:58080/realms/acme CLIENT_ID=backend CLIENT_SECRET=… \
 *   REALM=acme TOKEN_CLIENT_ID=web node dist/examples/backend.js
 *
 *   curl 'localhost:3000/me?user=<keycloak user id>'   # Keycloak's userinfo, as that user
 *
 * The feed position is kept in a file here; keep it in your own database, in the same
 * transaction as what you do with each change, and each change takes effect once.
 */

import { readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import postgres from "postgres";
import { GrantRevokedError, KeycloakSyncClient, NoTokenError, followChanges, postgresTypes } from "../src/index.js";

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const issuer = required("KEYCLOAK_ISSUER");
const realm = required("REALM");
const tokenClientId = required("TOKEN_CLIENT_ID");
const positionFile = process.env.POSITION_FILE ?? ".keycloak-sync-position";

// An instance for the follower (it takes a connection of its own for LISTEN); without
// array types, so a connection terminated while it starts cannot end the process
// (porsager/postgres#1223).
const sql = postgres(required("DATABASE_URL"), { types: postgresTypes, max: 2, fetch_types: false });
const sync = new KeycloakSyncClient({
  url: required("KEYCLOAK_SYNC_URL"),
  keycloak: { issuer, clientId: required("CLIENT_ID"), clientSecret: required("CLIENT_SECRET") },
});

/** The application's own sessions (in a real app: its session store). */
const appSessions = new Map<string, { userId: string }>();

function endAppSessions(userId: string, why: string) {
  for (const [id, session] of appSessions) {
    if (session.userId === userId) appSessions.delete(id);
  }
  console.log(`ended the app's sessions of ${userId}: ${why}`);
}

let from = 0n;
try {
  from = BigInt(readFileSync(positionFile, "utf8").trim());
} catch {
  // First start: from the beginning of the feed (it keeps changes.retention_days).
}

const following = await followChanges(sql, {
  from,
  onChange: async (change) => {
    switch (change.kind) {
      case "session_ended":
        if (change.userId) endAppSessions(change.userId, `session ${change.rowId} ended (${String(change.detail.reason)})`);
        break;
      case "user_disabled":
      case "user_deleted":
        endAppSessions(change.rowId, change.kind);
        break;
      default:
        break;
    }
    writeFileSync(positionFile, change.seq.toString());
  },
});

const server = createServer(async (request, response) => {
  const url = new URL(request.url ?? "/", "http://localhost");
  const userId = url.searchParams.get("user");
  if (url.pathname !== "/me" || !userId) {
    response.writeHead(404).end();
    return;
  }
  try {
    const { accessToken } = await sync.getAccessToken({ realm, userId, clientId: tokenClientId });
    const userinfo = await fetch(`${issuer}/protocol/openid-connect/userinfo`, {
      headers: { authorization: `Bearer ${accessToken}` },
      signal: AbortSignal.timeout(10_000),
    });
    response.writeHead(userinfo.status, { "content-type": "application/json" });
    response.end(await userinfo.text());
  } catch (error) {
    // No token, or Keycloak refused it: the user must sign in again.
    const signIn = error instanceof NoTokenError || error instanceof GrantRevokedError;
    response.writeHead(signIn ? 401 : 503, { "content-type": "application/json" });
    response.end(JSON.stringify({ error: signIn ? "sign_in_again" : "try_later", message: String(error) }));
  }
});
server.listen(Number(process.env.PORT ?? 3000), () => console.log(`listening on ${process.env.PORT ?? 3000}`));

async function shutdown() {
  server.close();
  await following.stop();
  await sql.end();
}
process.once("SIGTERM", shutdown);
process.once("SIGINT", shutdown);
