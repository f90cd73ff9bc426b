package io.keycloaksync.spi;

import org.jboss.logging.Logger;
import org.keycloak.connections.jpa.JpaConnectionProvider;
import org.keycloak.models.KeycloakSession;

/** Writing to the outbox, within whatever transaction the session has. */
final class Outbox {
    private static final Logger LOG = Logger.getLogger(Outbox.class);
    private static volatile boolean warnedUnavailable;

    private Outbox() {
    }

    /** Whether the session has Keycloak's JPA store (the outbox lives there); said once if not. */
    static boolean available(KeycloakSession session) {
        if (session != null && session.getProvider(JpaConnectionProvider.class) != null) {
            return true;
        }
        if (!warnedUnavailable) {
            warnedUnavailable = true;
            LOG.warn("keycloak-sync: delivery is outbox but this Keycloak session has no JPA store; events are"
                    + " delivered directly (memory, then the spool)");
        }
        return false;
    }

    /**
     * Adds the event to the session's transaction. Keycloak logs and swallows a listener's
     * exception, so a failure here also marks the transaction rollback-only: never a
     * committed change without its event.
     */
    static void write(KeycloakSession session, Outgoing message) {
        try {
            session.getProvider(JpaConnectionProvider.class).getEntityManager()
                    .persist(new OutboxEntity(message, System.currentTimeMillis()));
        } catch (RuntimeException e) {
            LOG.errorf("keycloak-sync: cannot write event %s (%s) to the outbox; the transaction is rolled back: %s",
                    message.id, message.type, BrokerLink.describe(e));
            session.getTransactionManager().setRollbackOnly();
            throw e;
        }
    }
}
