/**
 * The real Keycloak of `scripts/keycloak.sh` (KEYCLOAK_URL, KEYCLOAK_ADMIN_USER and
 * KEYCLOAK_ADMIN_PASSWORD from its `env`), driven through its own endpoints: a fresh realm
 * per test, logins through a client's token endpoint, logouts.
 */

import { randomUUID } from "node:crypto";
import { env } from "./support.js";

export const WEB_SECRET = "web-secret-ts";
export const BACKEND_SECRET = "backend-secret-ts";
/** keycloak-sync's own service account in the realm (realm ids through the Admin API). */
export const SYNC_SECRET = "sync-secret-ts";
export const PASSWORD = "Secret-pass-1";

export function keycloakUrl(): string {
  return env("KEYCLOAK_URL", "http://127.0.0.1:58080").replace(/\/+$/, "");
}

export interface Tokens {
  access: string;
  refresh: string;
  sessionId: string;
  userId: string;
}

async function form(url: string, fields: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(fields).toString(),
    signal: AbortSignal.timeout(60_000),
  });
  const text = await response.text();
  return { status: response.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

async function adminToken(): Promise<string> {
  const answer = await form(`${keycloakUrl()}/realms/master/protocol/openid-connect/token`, {
    grant_type: "password",
    client_id: "admin-cli",
    username: env("KEYCLOAK_ADMIN_USER", "admin"),
    password: env("KEYCLOAK_ADMIN_PASSWORD", "admin"),
  });
  if (answer.status !== 200) throw new Error(`Keycloak admin login: ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body.access_token as string;
}

export function claim(jwt: string, name: string): unknown {
  const payload = jwt.split(".")[1] ?? "";
  return (JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as Record<string, unknown>)[name];
}

/**
 * One test's realm: clients `web` (users log in to it), `backend` (the application's service
 * account) and `sync` (keycloak-sync's).
 */
export class Realm {
  readonly name: string;

  private constructor(name: string) {
    this.name = name;
  }

  static freshName(): string {
    return `ts-${randomUUID().replaceAll("-", "").slice(0, 12)}`;
  }

  get issuer(): string {
    return `${keycloakUrl()}/realms/${this.name}`;
  }

  /** Creates the realm `name` with the keycloak-sync event listener and its clients. */
  static async create(name: string): Promise<Realm> {
    const realm = new Realm(name);
    await realm.admin("POST", "/admin/realms", {
      realm: name,
      enabled: true,
      eventsEnabled: true,
      eventsListeners: ["jboss-logging", "keycloak-sync"],
      // Stored so a test can count refreshes (REFRESH_TOKEN is not stored by default).
      enabledEventTypes: ["LOGIN", "REFRESH_TOKEN", "REFRESH_TOKEN_ERROR", "LOGOUT"],
      // Refresh-token rotation, reuse 0: two refreshes with one token end the session.
      revokeRefreshToken: true,
      refreshTokenMaxReuse: 0,
      clients: [
        {
          clientId: "web",
          enabled: true,
          publicClient: false,
          secret: WEB_SECRET,
          directAccessGrantsEnabled: true,
          standardFlowEnabled: true,
          redirectUris: ["http://127.0.0.1/*"],
        },
        {
          clientId: "backend",
          enabled: true,
          publicClient: false,
          secret: BACKEND_SECRET,
          serviceAccountsEnabled: true,
          standardFlowEnabled: false,
          directAccessGrantsEnabled: false,
        },
        {
          clientId: "sync",
          enabled: true,
          publicClient: false,
          secret: SYNC_SECRET,
          serviceAccountsEnabled: true,
          standardFlowEnabled: false,
          directAccessGrantsEnabled: false,
        },
      ],
      users: [
        {
          username: "service-account-sync",
          enabled: true,
          serviceAccountClientId: "sync",
          clientRoles: { "realm-management": ["view-realm", "view-users"] },
        },
      ],
    });
    return realm;
  }

  async admin(method: string, path: string, body?: unknown): Promise<unknown> {
    const url = path.startsWith("/admin/") ? `${keycloakUrl()}${path}` : `${keycloakUrl()}/admin/realms/${this.name}${path}`;
    const response = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${await adminToken()}`, "content-type": "application/json" },
      body: body === undefined ? null : JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`Keycloak ${method} ${path}: ${response.status} ${text}`);
    return text ? (JSON.parse(text) as unknown) : undefined;
  }

  /** A user with a password; answers the user's id. */
  async createUser(username: string): Promise<string> {
    await this.admin("POST", "/users", {
      username,
      email: `${username}@example.com`,
      firstName: "Test",
      lastName: username,
      enabled: true,
      emailVerified: true,
      credentials: [{ type: "password", value: PASSWORD, temporary: false }],
    });
    const [user] = (await this.admin("GET", `/users?exact=true&username=${encodeURIComponent(username)}`)) as { id: string }[];
    if (!user) throw new Error(`user ${username} not found after creating it`);
    return user.id;
  }

  /** A login through `web` (password grant: what a code exchange answers, too). */
  async login(username: string): Promise<Tokens> {
    const answer = await form(`${this.issuer}/protocol/openid-connect/token`, {
      grant_type: "password",
      client_id: "web",
      client_secret: WEB_SECRET,
      username,
      password: PASSWORD,
      scope: "openid",
    });
    if (answer.status !== 200) throw new Error(`login ${username}: ${answer.status} ${JSON.stringify(answer.body)}`);
    const access = answer.body.access_token as string;
    return {
      access,
      refresh: answer.body.refresh_token as string,
      sessionId: String(claim(access, "sid")),
      userId: String(claim(access, "sub")),
    };
  }

  /** A refresh at Keycloak with `tokens.refresh`, as a process that kept it would make. */
  async refresh(tokens: Tokens): Promise<number> {
    const answer = await form(`${this.issuer}/protocol/openid-connect/token`, {
      grant_type: "refresh_token",
      client_id: "web",
      client_secret: WEB_SECRET,
      refresh_token: tokens.refresh,
    });
    return answer.status;
  }

  /** The back-channel logout an application's back end makes with the refresh token. */
  async logout(tokens: Tokens): Promise<void> {
    const answer = await form(`${this.issuer}/protocol/openid-connect/logout`, {
      client_id: "web",
      client_secret: WEB_SECRET,
      refresh_token: tokens.refresh,
    });
    if (answer.status !== 204) throw new Error(`logout: ${answer.status} ${JSON.stringify(answer.body)}`);
  }

  /** Keycloak's own stored events of `type` for the user. */
  async events(type: string, userId: string): Promise<number> {
    const events = (await this.admin("GET", `/events?type=${type}&user=${userId}&max=1000`)) as unknown[];
    return events.length;
  }

  async delete(): Promise<void> {
    await this.admin("DELETE", "").catch(() => undefined);
  }
}
