package io.keycloaksync.spi;

import java.util.List;
import org.keycloak.Config;
import org.keycloak.connections.jpa.entityprovider.JpaEntityProvider;
import org.keycloak.connections.jpa.entityprovider.JpaEntityProviderFactory;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;

/**
 * The outbox's tables in Keycloak's own database: its entities join Keycloak's persistence
 * unit, and its Liquibase changelog runs with Keycloak's at start (created once, upgraded by
 * new change sets, never rewritten).
 */
public final class OutboxEntityProvider implements JpaEntityProvider, JpaEntityProviderFactory {
    public static final String ID = "keycloak-sync-outbox";
    static final String CHANGELOG = "META-INF/keycloak-sync-outbox-changelog.xml";

    @Override
    public List<Class<?>> getEntities() {
        return List.of(OutboxEntity.class, OutboxRelayEntity.class);
    }

    @Override
    public String getChangelogLocation() {
        return CHANGELOG;
    }

    @Override
    public String getFactoryId() {
        return ID;
    }

    @Override
    public JpaEntityProvider create(KeycloakSession session) {
        return this;
    }

    @Override
    public void init(Config.Scope config) {
        // Nothing to configure.
    }

    @Override
    public void postInit(KeycloakSessionFactory factory) {
        // Nothing to start.
    }

    @Override
    public void close() {
        // Stateless.
    }

    @Override
    public String getId() {
        return ID;
    }
}
