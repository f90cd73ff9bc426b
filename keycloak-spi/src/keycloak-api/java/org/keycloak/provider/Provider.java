package org.keycloak.provider;

/** Compile-only declaration of the Keycloak type of the same name (never packaged). */
public interface Provider {
    void close();
}
