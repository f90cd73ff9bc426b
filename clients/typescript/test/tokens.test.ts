/**
 * KeycloakSyncClient end to end: the real Keycloak (with the keycloak-sync provider), the
 * real RabbitMQ and Postgres, and `keycloak-sync run` with its token API. A user logs in to
 * `web`; the application (client `backend`) stores the refresh token and asks for access
 * tokens; keycloak-sync refreshes at Keycloak once however many calls arrive together; the
 * user's logout reaches the vault through the queue and the token is no longer served.
 */

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  ForbiddenError,
  GrantRevokedError,
  InvalidRequestError,
  KeycloakSyncClient,
  NoTokenError,
  UnauthenticatedError,
} from "../src/index.js";
import { BACKEND_SECRET, Realm, SYNC_SECRET, WEB_SECRET, claim, keycloakUrl } from "./keycloak.js";
import { Daemon, freePort, freshDatabase, waitUntil } from "./support.js";

const VAULT_KEYS = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

let realm: Realm;
let daemon: Daemon;
let apiUrl: string;
let dropDb: () => Promise<void>;

before(async () => {
  const name = Realm.freshName();
  const db = await freshDatabase();
  dropDb = db.drop;
  const apiPort = await freePort();
  apiUrl = `http://127.0.0.1:${apiPort}`;
  // The daemon binds its queue to the realm's events before the realm exists, so none of
  // them is ever unroutable.
  daemon = await Daemon.start({
    KEYCLOAK_SYNC__DATABASE__URL: db.url,
    KEYCLOAK_SYNC__AMQP__EXCHANGE: "keycloak.events",
    KEYCLOAK_SYNC__AMQP__BINDING_KEY: `kc.${name}.#`,
    KEYCLOAK_SYNC__KEYCLOAK__URL: keycloakUrl(),
    KEYCLOAK_SYNC__KEYCLOAK__REALMS: name,
    KEYCLOAK_SYNC__KEYCLOAK__CLIENT_ID: "sync",
    KEYCLOAK_SYNC__KEYCLOAK__CLIENT_SECRET: SYNC_SECRET,
    KEYCLOAK_SYNC__API__LISTEN: `127.0.0.1:${apiPort}`,
    KEYCLOAK_SYNC__API__CALLERS: JSON.stringify([{ realm: name, client_id: "backend", read: ["web"], store: ["web"] }]),
    KEYCLOAK_SYNC__API__CLIENTS: JSON.stringify([{ realm: name, client_id: "web", secret: WEB_SECRET }]),
    KEYCLOAK_SYNC__VAULT__KEYS: VAULT_KEYS,
    KEYCLOAK_SYNC__VAULT__ACTIVE_KEY: "k1",
  });
  realm = await Realm.create(name);
});

after(async () => {
  await daemon?.stop();
  await realm?.delete();
  await dropDb?.();
});

/** The client, and how many requests it sent to the token API. */
function client(secret = BACKEND_SECRET): { sync: KeycloakSyncClient; apiCalls: () => number } {
  let calls = 0;
  const counting: typeof fetch = (input, init) => {
    if (String(input).startsWith(apiUrl)) calls++;
    return fetch(input, init);
  };
  const sync = new KeycloakSyncClient({
    url: apiUrl,
    keycloak: { issuer: realm.issuer, clientId: "backend", clientSecret: secret },
    fetch: counting,
  });
  return { sync, apiCalls: () => calls };
}

/** A new user logs in to `web`, and `sync` stores the login's refresh token. */
async function loggedInAndStored(username: string, sync: KeycloakSyncClient, metadata?: Record<string, unknown>) {
  const userId = await realm.createUser(username);
  const login = await realm.login(username);
  assert.equal(login.userId, userId);
  const stored = await sync.storeTokens({
    realm: realm.name,
    userId,
    clientId: "web",
    sessionId: login.sessionId,
    refreshToken: login.refresh,
    ...(metadata === undefined ? {} : { metadata }),
  });
  assert.deepEqual(stored, { refresh: { stored: true } });
  return { userId, login };
}

test("stored after login, access tokens come back: one refresh for many callers, none while fresh", async () => {
  const { sync, apiCalls } = client();
  const { userId, login } = await loggedInAndStored("ada", sync, { app: "ts-test" });

  // Asking for more validity than Keycloak's lifespan gives forces a refresh: 20 calls at
  // once in this process are one API request and one refresh at Keycloak.
  const answers = await Promise.all(
    Array.from({ length: 20 }, () =>
      sync.getAccessToken({ realm: realm.name, userId, clientId: "web", minValiditySecs: 86_400 }),
    ),
  );
  assert.equal(apiCalls(), 2, "one store and one access request");
  assert.equal(new Set(answers.map((a) => a.accessToken)).size, 1);
  const first = answers[0]!;
  assert.notEqual(first.accessToken, login.access, "a refreshed token, not the login's");
  assert.equal(claim(first.accessToken, "sub"), userId);
  assert.equal(claim(first.accessToken, "azp"), "web");
  assert.equal(first.sessionId, login.sessionId);
  assert.equal(first.tokenType, "Bearer");
  assert.ok(first.expiresAt.getTime() > Date.now(), `expires ${first.expiresAt.toISOString()}`);
  assert.equal(await realm.events("REFRESH_TOKEN", userId), 1, "Keycloak saw one refresh");

  // Fresh enough: served from the vault, no refresh at Keycloak.
  const again = await sync.getAccessToken({ realm: realm.name, userId, clientId: "web", minValiditySecs: 10 });
  assert.equal(again.accessToken, first.accessToken);
  assert.equal(await realm.events("REFRESH_TOKEN", userId), 1);

  // The user logs out at Keycloak: the LOGOUT event ends the session in the vault.
  await realm.logout(login);
  const gone = await waitUntil(60_000, async () => {
    try {
      await sync.getAccessToken({ realm: realm.name, userId, clientId: "web" });
      return false;
    } catch (error) {
      return error instanceof NoTokenError;
    }
  });
  assert.ok(gone, "after the logout the API answers no_token");
  await assert.rejects(sync.getAccessToken({ realm: realm.name, userId, clientId: "web" }), (error: unknown) => {
    assert.ok(error instanceof NoTokenError);
    assert.equal(error.status, 404);
    assert.equal(error.code, "no_token");
    return true;
  });
});

test("what the caller may not do, and what it got wrong, are typed errors", async () => {
  const userId = await realm.createUser("grace");
  const { sync } = client();
  await assert.rejects(
    sync.getAccessToken({ realm: realm.name, userId, clientId: "mobile" }),
    (error: unknown) => error instanceof ForbiddenError && error.status === 403,
  );
  await assert.rejects(
    sync.getAccessToken({ realm: realm.name, userId: "", clientId: "web" }),
    (error: unknown) => error instanceof InvalidRequestError && /userId/.test(error.message),
  );
  await assert.rejects(
    sync.getAccessToken({ realm: realm.name, userId, clientId: "web" }),
    (error: unknown) => error instanceof NoTokenError,
  );
  const { sync: wrongSecret, apiCalls } = client("not-the-secret");
  await assert.rejects(
    wrongSecret.getAccessToken({ realm: realm.name, userId, clientId: "web" }),
    (error: unknown) => error instanceof UnauthenticatedError && !error.message.includes("not-the-secret"),
  );
  assert.equal(apiCalls(), 0, "no API call without a service-account token");
});

test("a token someone else already rotated is refused by Keycloak: GrantRevokedError, then gone", async () => {
  const { sync } = client();
  const { userId, login } = await loggedInAndStored("linus", sync);
  // A process that still keeps the refresh token uses it: with rotation, the vault's copy is
  // now spent, and its reuse makes Keycloak end the session.
  assert.equal(await realm.refresh(login), 200);
  const ask = { realm: realm.name, userId, clientId: "web", minValiditySecs: 86_400 };
  await assert.rejects(sync.getAccessToken(ask), (error: unknown) => {
    assert.ok(error instanceof GrantRevokedError, String(error));
    assert.equal(error.status, 409);
    assert.ok(!error.message.includes(login.refresh));
    return true;
  });
  await assert.rejects(sync.getAccessToken(ask), (error: unknown) => error instanceof NoTokenError);
});
