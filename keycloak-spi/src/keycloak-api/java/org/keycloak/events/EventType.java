package org.keycloak.events;

/** Compile-only declaration of the Keycloak type of the same name (never packaged); the
 *  real enum has many more values, which the provider handles by name. */
public enum EventType {
    LOGIN, LOGIN_ERROR, REGISTER, REGISTER_ERROR, LOGOUT, LOGOUT_ERROR, CODE_TO_TOKEN,
    REFRESH_TOKEN, UPDATE_PROFILE, UPDATE_EMAIL, VERIFY_EMAIL, DELETE_ACCOUNT, REVOKE_GRANT,
    USER_DISABLED_BY_PERMANENT_LOCKOUT, UPDATE_PASSWORD
}
