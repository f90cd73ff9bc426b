/**
 * What a real server cannot be made to answer on demand: a token API (and a Keycloak token
 * endpoint) that answers garbage, a 500, nothing at all, or a 503 with Retry-After. Each is
 * a typed error, and the client retries only where the answer says so: no retry storm.
 */

import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import {
  BadResponseError,
  GrantRevokedError,
  KeycloakSyncClient,
  TimeoutError,
  UnavailableError,
  UnauthenticatedError,
} from "../src/index.js";

type Handler = (request: IncomingMessage, response: ServerResponse) => void;

/** One HTTP server playing both Keycloak's token endpoint and the token API. */
let server: ReturnType<typeof createServer>;
let base: string;
let api: Handler;
let apiRequests = 0;
let tokenRequests = 0;
const SECRET_TOKEN = "eyJ.secret-access-token.sig";

before(async () => {
  server = createServer((request, response) => {
    if (request.url?.endsWith("/protocol/openid-connect/token")) {
      tokenRequests++;
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify({ access_token: "caller-token", expires_in: 300, token_type: "Bearer" }));
      return;
    }
    apiRequests++;
    api(request, response);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

function client(options: { timeoutMs?: number; maxRetryWaitMs?: number } = {}): KeycloakSyncClient {
  apiRequests = 0;
  tokenRequests = 0;
  return new KeycloakSyncClient({
    url: base,
    keycloak: { issuer: `${base}/realms/acme`, clientId: "backend", clientSecret: "s3cret" },
    ...options,
  });
}

const request = { realm: "acme", userId: "u1", clientId: "web" };

function json(status: number, body: unknown, headers: Record<string, string> = {}): Handler {
  return (_request, response) => {
    response.writeHead(status, { "content-type": "application/json", ...headers });
    response.end(JSON.stringify(body));
  };
}

test("an answer that is not JSON is a BadResponseError naming its size, not its text", async () => {
  api = (_request, response) => {
    response.writeHead(200, { "content-type": "text/html" });
    response.end(`<html>proxy error ${SECRET_TOKEN}</html>`);
  };
  const sync = client();
  await assert.rejects(sync.getAccessToken(request), (error: unknown) => {
    assert.ok(error instanceof BadResponseError, String(error));
    assert.equal(error.status, 200);
    assert.match(error.message, /not JSON/);
    assert.ok(!error.message.includes(SECRET_TOKEN));
    return true;
  });
  assert.equal(apiRequests, 1, "not retried");
});

test("a 500 is a BadResponseError and is not retried", async () => {
  api = json(500, { oops: true });
  const sync = client();
  await assert.rejects(sync.getAccessToken(request), (error: unknown) => error instanceof BadResponseError && error.status === 500);
  assert.equal(apiRequests, 1);
});

test("no answer within the timeout is a TimeoutError, once", async () => {
  api = () => undefined; // never answers
  const sync = client({ timeoutMs: 300 });
  const started = Date.now();
  await assert.rejects(sync.getAccessToken(request), (error: unknown) => error instanceof TimeoutError);
  assert.ok(Date.now() - started < 3_000, "bounded by the timeout");
  assert.equal(apiRequests, 1);
});

test("a 503 with Retry-After is retried after the wait, at most twice", async () => {
  api = json(503, { error: "keycloak_unavailable", message: "Keycloak did not answer" }, { "retry-after": "1" });
  const sync = client();
  const started = Date.now();
  await assert.rejects(sync.getAccessToken(request), (error: unknown) => {
    assert.ok(error instanceof UnavailableError);
    assert.equal(error.retryAfterSecs, 1);
    return true;
  });
  assert.equal(apiRequests, 3, "the first try and two retries");
  assert.ok(Date.now() - started >= 2_000, "each retry waited Retry-After");

  let calls = 0;
  api = (request, response) => {
    calls++;
    (calls === 1 ? json(503, { error: "keycloak_unavailable", message: "down" }, { "retry-after": "0" }) : json(200, {
      accessToken: SECRET_TOKEN,
      expiresAt: Date.now() + 300_000,
      scope: "openid",
      sessionId: "s1",
      tokenType: "Bearer",
    }))(request, response);
  };
  const recovered = await client().getAccessToken(request);
  assert.equal(recovered.accessToken, SECRET_TOKEN);
  assert.equal(calls, 2);
});

test("a Retry-After longer than the client waits fails at once; a 503 without one is not retried", async () => {
  api = json(503, { error: "keycloak_unavailable", message: "down" }, { "retry-after": "120" });
  await assert.rejects(client({ maxRetryWaitMs: 5_000 }).getAccessToken(request), (error: unknown) => error instanceof UnavailableError);
  assert.equal(apiRequests, 1);
  api = json(503, { error: "unavailable", message: "database down" });
  await assert.rejects(client().getAccessToken(request), (error: unknown) => error instanceof UnavailableError);
  assert.equal(apiRequests, 1);
});

test("409 grant_revoked is a GrantRevokedError; many callers of one token send one request", async () => {
  api = json(409, { error: "grant_revoked", message: "Keycloak refused the stored token" });
  const sync = client();
  const results = await Promise.allSettled(Array.from({ length: 10 }, () => sync.getAccessToken(request)));
  assert.ok(results.every((r) => r.status === "rejected" && r.reason instanceof GrantRevokedError));
  assert.equal(apiRequests, 1, "single flight in the process");
  assert.equal(tokenRequests, 1, "one service-account token");
});

test("a refused service-account token is renewed once, then the error stands", async () => {
  api = json(401, { error: "unauthenticated", message: "the token expired" });
  const sync = client();
  await assert.rejects(sync.getAccessToken(request), (error: unknown) => error instanceof UnauthenticatedError);
  assert.equal(apiRequests, 2);
  assert.equal(tokenRequests, 2);
});
