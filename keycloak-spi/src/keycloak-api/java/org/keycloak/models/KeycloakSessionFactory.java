package org.keycloak.models;

/** Compile-only declaration of the Keycloak type of the same name (never packaged). */
public interface KeycloakSessionFactory {
    KeycloakSession create();
}
