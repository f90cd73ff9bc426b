package org.keycloak.models;

/** Compile-only declaration of the Keycloak type of the same name (never packaged). */
public interface KeycloakTransactionManager extends KeycloakTransaction {
    void enlist(KeycloakTransaction transaction);

    void enlistAfterCompletion(KeycloakTransaction transaction);

    void enlistPrepare(KeycloakTransaction transaction);
}
