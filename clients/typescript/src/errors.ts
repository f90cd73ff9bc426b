/**
 * Errors of the token API, one class per `error` code it answers with, so callers can
 * `catch (e) { if (e instanceof GrantRevokedError) … }`. Messages never hold a token.
 */

/** Any failure of a keycloak-sync call. */
export class KeycloakSyncError extends Error {
  /** The API's `error` code, or this client's own (`timeout`, `bad_response`, `network`). */
  readonly code: string;
  /** The HTTP status, when the API answered. */
  readonly status: number | undefined;
  /** Seconds the API asked to wait before trying again (`Retry-After`). */
  readonly retryAfterSecs: number | undefined;

  constructor(code: string, message: string, status?: number, retryAfterSecs?: number) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.retryAfterSecs = retryAfterSecs;
  }
}

/** 400 `invalid_request`: a field of the request is wrong (the message names it). */
export class InvalidRequestError extends KeycloakSyncError {}
/** 401 `unauthenticated`: this client's service-account token was refused. */
export class UnauthenticatedError extends KeycloakSyncError {}
/** 403 `forbidden`: the caller's grant (`[[api.callers]]`) does not name that client. */
export class ForbiddenError extends KeycloakSyncError {}
/** 404 `no_token`: the vault holds no live token of that user for that client. */
export class NoTokenError extends KeycloakSyncError {}
/**
 * 409 `grant_revoked`: Keycloak refused the stored token (session ended, token revoked or
 * reused); it left the vault. The user must log in again.
 */
export class GrantRevokedError extends KeycloakSyncError {}
/** 503 (`keycloak_unavailable`, `unavailable`): Keycloak or the database is unreachable. */
export class UnavailableError extends KeycloakSyncError {}
/** No answer within the call's timeout. */
export class TimeoutError extends KeycloakSyncError {}
/** The answer was not what the API sends (not JSON, an unknown shape, a 5xx without a body). */
export class BadResponseError extends KeycloakSyncError {}

const BY_CODE: Record<string, new (code: string, message: string, status?: number, retryAfterSecs?: number) => KeycloakSyncError> = {
  invalid_request: InvalidRequestError,
  unauthenticated: UnauthenticatedError,
  forbidden: ForbiddenError,
  no_token: NoTokenError,
  grant_revoked: GrantRevokedError,
  keycloak_unavailable: UnavailableError,
  unavailable: UnavailableError,
};

/** The error an API answer with `status` and body `{error, message}` stands for. */
export function errorFromAnswer(
  status: number,
  body: unknown,
  retryAfterSecs: number | undefined,
): KeycloakSyncError {
  const fields = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {};
  const code = typeof fields.error === "string" ? fields.error : undefined;
  const message = typeof fields.message === "string" ? fields.message : `HTTP ${status}`;
  if (code === undefined) {
    return new BadResponseError("bad_response", `the API answered ${status} without an error code`, status, retryAfterSecs);
  }
  const Kind = BY_CODE[code] ?? (status === 503 ? UnavailableError : KeycloakSyncError);
  return new Kind(code, message, status, retryAfterSecs);
}
