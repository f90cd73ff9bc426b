/**
 * The token API of keycloak-sync (`api.listen`): a valid access token for a user, refreshed
 * by keycloak-sync when needed, so the application never holds a refresh token; and
 * storing the tokens of a login. The client authenticates with its own service account
 * (client credentials at Keycloak), keeps that token until shortly before it expires, runs
 * one request per token at a time in this process, retries only where the API says so
 * (`Retry-After`), and bounds every call by a timeout.
 */

import {
  BadResponseError,
  KeycloakSyncError,
  TimeoutError,
  UnauthenticatedError,
  errorFromAnswer,
} from "./errors.js";

export interface KeycloakSyncClientOptions {
  /** The token API's base URL, e.g. `http://keycloak-sync:8081`. */
  url: string;
  /** This application's own client in Keycloak (a service account, client credentials). */
  keycloak: {
    /** The realm's issuer, e.g. `https://sso.example.com/realms/acme`. */
    issuer: string;
    clientId: string;
    clientSecret: string;
  };
  /** Milliseconds each HTTP call may take (default 10 000). */
  timeoutMs?: number;
  /** Retries after a 503 that names a `Retry-After` (default 2). */
  maxRetries?: number;
  /** The longest `Retry-After` waited for; a longer one fails at once (default 10 000 ms). */
  maxRetryWaitMs?: number;
  /** A `fetch` of your own (tests, proxies); default the global one. */
  fetch?: typeof fetch;
}

export interface AccessTokenRequest {
  /** The realm's name. */
  realm: string;
  userId: string;
  /** The client the user logged in to (whose tokens the vault holds). */
  clientId: string;
  /** One session's token; default the user's newest. */
  sessionId?: string;
  /** The offline token instead of the refresh token. */
  offline?: boolean;
  /** Seconds the access token must still be valid (default 30). */
  minValiditySecs?: number;
}

export interface AccessToken {
  accessToken: string;
  expiresAt: Date;
  scope: string | null;
  sessionId: string | null;
  tokenType: "Bearer";
}

export interface StoreTokensRequest {
  realm: string;
  userId: string;
  clientId: string;
  /** The session the login began (the `sid` claim, or `session_state`). */
  sessionId?: string;
  /** The refresh token of the code exchange. */
  refreshToken?: string;
  /** The offline token (scope `offline_access`). */
  offlineToken?: string;
  /** When the stored token expires (`refresh_expires_in` after the exchange). */
  expiresAt?: Date;
  /** Metadata kept beside the token (no secrets). */
  metadata?: Record<string, unknown>;
}

export interface StoreResult {
  stored: boolean;
  /** Why the vault kept it out (user deleted or logged out, newer token held, …). */
  reason?: string;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** The service-account token is renewed this long before it expires (at most half its life). */
const RENEW_MARGIN_MS = 30_000;

interface CachedToken {
  value: string;
  renewAt: number;
}

export class KeycloakSyncClient {
  readonly #url: string;
  readonly #keycloak: KeycloakSyncClientOptions["keycloak"];
  readonly #timeoutMs: number;
  readonly #maxRetries: number;
  readonly #maxRetryWaitMs: number;
  readonly #fetch: typeof fetch;
  #serviceToken: CachedToken | undefined;
  #serviceTokenFlight: Promise<string> | undefined;
  readonly #flights = new Map<string, Promise<AccessToken>>();

  constructor(options: KeycloakSyncClientOptions) {
    if (!options.url) throw new TypeError("KeycloakSyncClient: url is required");
    const { issuer, clientId, clientSecret } = options.keycloak ?? {};
    if (!issuer || !clientId || !clientSecret) {
      throw new TypeError("KeycloakSyncClient: keycloak.issuer, clientId and clientSecret are required");
    }
    this.#url = options.url.replace(/\/+$/, "");
    this.#keycloak = { issuer: issuer.replace(/\/+$/, ""), clientId, clientSecret };
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#maxRetries = options.maxRetries ?? 2;
    this.#maxRetryWaitMs = options.maxRetryWaitMs ?? 10_000;
    this.#fetch = options.fetch ?? globalThis.fetch;
  }

  /**
   * A valid access token for the user: served from the vault, or refreshed at Keycloak by
   * keycloak-sync. Simultaneous calls for the same token share one request.
   * @throws NoTokenError, GrantRevokedError (log the user in again), ForbiddenError, …
   */
  getAccessToken(request: AccessTokenRequest): Promise<AccessToken> {
    const key = JSON.stringify([
      request.realm,
      request.userId,
      request.clientId,
      request.sessionId ?? null,
      request.offline ?? false,
      request.minValiditySecs ?? null,
    ]);
    const running = this.#flights.get(key);
    if (running) return running;
    const flight = this.#access(request).finally(() => this.#flights.delete(key));
    this.#flights.set(key, flight);
    return flight;
  }

  async #access(request: AccessTokenRequest): Promise<AccessToken> {
    const body: Record<string, unknown> = {
      realm: request.realm,
      userId: request.userId,
      clientId: request.clientId,
    };
    if (request.sessionId !== undefined) body.sessionId = request.sessionId;
    if (request.offline !== undefined) body.offline = request.offline;
    if (request.minValiditySecs !== undefined) body.minValiditySecs = request.minValiditySecs;
    const answer = await this.#call("POST", "/v1/tokens/access", body);
    const fields = answer as Record<string, unknown>;
    if (typeof fields.accessToken !== "string" || typeof fields.expiresAt !== "number") {
      throw new BadResponseError("bad_response", "POST /v1/tokens/access: the answer has no accessToken and expiresAt");
    }
    return {
      accessToken: fields.accessToken,
      expiresAt: new Date(fields.expiresAt),
      scope: typeof fields.scope === "string" ? fields.scope : null,
      sessionId: typeof fields.sessionId === "string" ? fields.sessionId : null,
      tokenType: "Bearer",
    };
  }

  /**
   * Stores the tokens of a login (after the authorization-code exchange): the refresh
   * and/or the offline token. Answers after keycloak-sync committed them.
   */
  async storeTokens(request: StoreTokensRequest): Promise<{ refresh?: StoreResult; offline?: StoreResult }> {
    if (request.refreshToken === undefined && request.offlineToken === undefined) {
      throw new TypeError("storeTokens: refreshToken or offlineToken is required");
    }
    const result: { refresh?: StoreResult; offline?: StoreResult } = {};
    for (const [tokenType, token] of [
      ["refresh", request.refreshToken],
      ["offline", request.offlineToken],
    ] as const) {
      if (token === undefined) continue;
      const body: Record<string, unknown> = {
        realm: request.realm,
        userId: request.userId,
        clientId: request.clientId,
        tokenType,
        token,
      };
      if (request.sessionId !== undefined) body.sessionId = request.sessionId;
      if (request.expiresAt !== undefined) body.expiresAt = request.expiresAt.getTime();
      if (request.metadata !== undefined) body.metadata = request.metadata;
      const answer = (await this.#call("PUT", "/v1/tokens", body)) as Record<string, unknown>;
      if (typeof answer.stored !== "boolean") {
        throw new BadResponseError("bad_response", "PUT /v1/tokens: the answer has no stored field");
      }
      result[tokenType] =
        typeof answer.reason === "string" ? { stored: answer.stored, reason: answer.reason } : { stored: answer.stored };
    }
    return result;
  }

  /** One API call: authenticated, timed out, retried only after a 503 with Retry-After. */
  async #call(method: string, path: string, body: unknown): Promise<unknown> {
    let renewed = false;
    for (let attempt = 0; ; attempt++) {
      const token = await this.#callerToken();
      const response = await this.#send(`${this.#url}${path}`, `${method} ${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      const answer = await readJson(response, `${method} ${path}`);
      if (response.ok) return answer;
      const retryAfter = retryAfterSecs(response.headers.get("retry-after"));
      const error = errorFromAnswer(response.status, answer, retryAfter);
      if (error instanceof UnauthenticatedError && !renewed) {
        // Our own token was refused (expired meanwhile, keys rotated): once with a new one.
        renewed = true;
        this.#serviceToken = undefined;
        continue;
      }
      const waitMs = retryAfter === undefined ? undefined : retryAfter * 1000;
      if (response.status === 503 && waitMs !== undefined && waitMs <= this.#maxRetryWaitMs && attempt < this.#maxRetries) {
        await new Promise((resolve) => setTimeout(resolve, waitMs));
        continue;
      }
      throw error;
    }
  }

  async #send(url: string, what: string, init: RequestInit): Promise<Response> {
    try {
      return await this.#fetch(url, { ...init, signal: AbortSignal.timeout(this.#timeoutMs) });
    } catch (error) {
      const name = (error as { name?: string }).name;
      if (name === "TimeoutError" || name === "AbortError") {
        throw new TimeoutError("timeout", `${what}: no answer within ${this.#timeoutMs} ms`);
      }
      throw new KeycloakSyncError("network", `${what}: ${(error as Error).message}`);
    }
  }

  /** This application's service-account token, from Keycloak (cached, one request at a time). */
  async #callerToken(): Promise<string> {
    const cached = this.#serviceToken;
    if (cached && Date.now() < cached.renewAt) return cached.value;
    this.#serviceTokenFlight ??= this.#fetchCallerToken().finally(() => {
      this.#serviceTokenFlight = undefined;
    });
    return this.#serviceTokenFlight;
  }

  async #fetchCallerToken(): Promise<string> {
    const url = `${this.#keycloak.issuer}/protocol/openid-connect/token`;
    const what = "Keycloak token endpoint (client credentials)";
    const basic = Buffer.from(
      `${encodeURIComponent(this.#keycloak.clientId)}:${encodeURIComponent(this.#keycloak.clientSecret)}`,
    ).toString("base64");
    const response = await this.#send(url, what, {
      method: "POST",
      headers: { authorization: `Basic ${basic}`, "content-type": "application/x-www-form-urlencoded" },
      body: "grant_type=client_credentials",
    });
    const answer = (await readJson(response, what)) as Record<string, unknown>;
    if (!response.ok) {
      const code = typeof answer.error === "string" ? answer.error : `HTTP ${response.status}`;
      throw new UnauthenticatedError("unauthenticated", `${what}: ${code}`, response.status);
    }
    if (typeof answer.access_token !== "string" || typeof answer.expires_in !== "number") {
      throw new BadResponseError("bad_response", `${what}: no access_token and expires_in`);
    }
    const lifeMs = answer.expires_in * 1000;
    this.#serviceToken = {
      value: answer.access_token,
      renewAt: Date.now() + lifeMs - Math.min(RENEW_MARGIN_MS, lifeMs / 2),
    };
    return answer.access_token;
  }
}

async function readJson(response: Response, what: string): Promise<unknown> {
  const text = await response.text();
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // The body may hold anything: named by size, never quoted.
    throw new BadResponseError(
      "bad_response",
      `${what}: answered ${response.status} with ${text.length} bytes that are not JSON`,
      response.status,
    );
  }
}

function retryAfterSecs(header: string | null): number | undefined {
  if (header === null) return undefined;
  const secs = Number(header.trim());
  return Number.isFinite(secs) && secs >= 0 ? secs : undefined;
}
