package org.keycloak.models;

/** Compile-only declaration of the Keycloak type of the same name (never packaged). */
public interface RealmModel {
    String getId();

    String getName();
}
