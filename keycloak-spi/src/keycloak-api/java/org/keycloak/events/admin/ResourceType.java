package org.keycloak.events.admin;

/** Compile-only declaration of the Keycloak type of the same name (never packaged). */
public enum ResourceType {
    REALM, USER, GROUP, GROUP_MEMBERSHIP, CLIENT, CLIENT_ROLE, REALM_ROLE, REALM_ROLE_MAPPING,
    CLIENT_ROLE_MAPPING, USER_SESSION, USER_LOGIN_FAILURE, USER_FEDERATION_PROVIDER, CUSTOM
}
