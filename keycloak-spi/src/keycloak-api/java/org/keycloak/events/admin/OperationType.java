package org.keycloak.events.admin;

/** Compile-only declaration of the Keycloak type of the same name (never packaged). */
public enum OperationType {
    CREATE, UPDATE, DELETE, ACTION
}
