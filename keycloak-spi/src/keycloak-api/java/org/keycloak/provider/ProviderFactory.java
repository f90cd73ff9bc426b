package org.keycloak.provider;

import org.keycloak.Config;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;

/** Compile-only declaration of the Keycloak type of the same name (never packaged). */
public interface ProviderFactory<T extends Provider> {
    T create(KeycloakSession session);

    void init(Config.Scope config);

    void postInit(KeycloakSessionFactory factory);

    void close();

    String getId();

    default int order() {
        return 0;
    }
}
