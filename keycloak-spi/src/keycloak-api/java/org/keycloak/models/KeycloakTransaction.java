package org.keycloak.models;

/** Compile-only declaration of the Keycloak type of the same name (never packaged). */
public interface KeycloakTransaction {
    void begin();

    void commit();

    void rollback();

    void setRollbackOnly();

    boolean getRollbackOnly();

    boolean isActive();
}
