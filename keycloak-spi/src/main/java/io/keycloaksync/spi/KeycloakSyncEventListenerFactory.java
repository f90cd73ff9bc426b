package io.keycloaksync.spi;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.List;
import java.util.Map;
import org.jboss.logging.Logger;
import org.keycloak.Config;
import org.keycloak.events.EventListenerProvider;
import org.keycloak.events.EventListenerProviderFactory;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.provider.ProviderConfigProperty;

/** The {@code keycloak-sync} event listener: one publisher (thread, connection, spool) per Keycloak node. */
public final class KeycloakSyncEventListenerFactory implements EventListenerProviderFactory {
    public static final String ID = "keycloak-sync";
    private static final Logger LOG = Logger.getLogger(KeycloakSyncEventListenerFactory.class);

    private final Map<String, String> env;
    private final PublisherStats stats = new PublisherStats();
    private final KeycloakMetrics metrics = new KeycloakMetrics();
    private SpiSettings settings;
    private volatile Publisher publisher;
    private volatile OutboxRelay relay;

    public KeycloakSyncEventListenerFactory() {
        this(System.getenv());
    }

    /** With another environment, for tests. */
    public KeycloakSyncEventListenerFactory(Map<String, String> env) {
        this.env = env;
    }

    @Override
    public void init(Config.Scope config) {
        settings = SpiSettings.from(config == null ? null : config::get, env);
        LOG.infof("keycloak-sync event listener: %s", settings);
    }

    @Override
    public void postInit(KeycloakSessionFactory factory) {
        publisher();
        metrics.register(stats);
        if (factory != null) {
            // Always started: with direct delivery it drains what an earlier outbox run left.
            OutboxRelay started = new OutboxRelay(settings, stats, factory);
            started.start();
            relay = started;
            started.wake();
        }
    }

    /** Starts the publisher on first use; a spool that cannot be opened stops Keycloak's start-up. */
    public Publisher publisher() {
        // Every Keycloak session asks: once started, no lock is taken.
        Publisher started = publisher;
        return started != null ? started : startPublisher();
    }

    private synchronized Publisher startPublisher() {
        if (publisher == null) {
            if (settings == null) {
                init(null);
            }
            Publisher created;
            try {
                created = new Publisher(settings, stats);
            } catch (IOException e) {
                throw new UncheckedIOException("keycloak-sync: cannot open the spool in " + settings.spoolDir, e);
            }
            stats.register();
            created.start();
            publisher = created;
        }
        return publisher;
    }

    public PublisherStats stats() {
        return stats;
    }

    @Override
    public EventListenerProvider create(KeycloakSession session) {
        return new KeycloakSyncEventListener(session, publisher(), settings, relay);
    }

    @Override
    public synchronized void close() {
        if (relay != null) {
            relay.close();
            relay = null;
        }
        if (publisher != null) {
            publisher.close();
            publisher = null;
        }
        stats.unregister();
        metrics.unregister();
    }

    /** The options with their help and defaults, as Keycloak's configuration guide lists providers' options. */
    @Override
    public List<ProviderConfigProperty> getConfigMetadata() {
        return SpiOptions.metadata();
    }

    @Override
    public String getId() {
        return ID;
    }
}
