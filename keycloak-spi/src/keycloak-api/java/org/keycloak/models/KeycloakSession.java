package org.keycloak.models;

/** Compile-only declaration of the Keycloak type of the same name (never packaged); only
 *  the methods the provider calls. */
public interface KeycloakSession {
    KeycloakContext getContext();

    KeycloakTransactionManager getTransactionManager();

    RealmProvider realms();
}
