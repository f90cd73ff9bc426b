package io.keycloaksync.spi;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.jboss.logging.Logger;
import org.keycloak.events.Event;
import org.keycloak.events.EventListenerProvider;
import org.keycloak.events.admin.AdminEvent;
import org.keycloak.models.AbstractKeycloakTransaction;
import org.keycloak.models.KeycloakContext;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakTransactionManager;
import org.keycloak.models.RealmModel;
import org.keycloak.models.utils.KeycloakModelUtils;

/**
 * One per Keycloak session. Events are turned into envelopes at once — every realm or model
 * look-up happens here, during the request. With the outbox, each is written to Keycloak's
 * database in the request's own transaction (it exists if and only if the change
 * committed) and the relay is woken after the commit; directly, they are held until the
 * transaction commits and then handed to the publisher; a rollback drops them either way.
 */
public final class KeycloakSyncEventListener implements EventListenerProvider {
    private static final Logger LOG = Logger.getLogger(KeycloakSyncEventListener.class);

    private final KeycloakSession session;
    private final EventSink publisher;
    private final SpiSettings settings;
    /** Null: direct delivery only. */
    private final OutboxRelay relay;
    private final List<Outgoing> pending = new ArrayList<>();
    private final Map<String, String> realmNames = new HashMap<>();
    private boolean enlisted;
    private boolean wroteOutbox;

    public KeycloakSyncEventListener(KeycloakSession session, EventSink publisher, SpiSettings settings) {
        this(session, publisher, settings, null);
    }

    KeycloakSyncEventListener(KeycloakSession session, EventSink publisher, SpiSettings settings, OutboxRelay relay) {
        this.session = session;
        this.publisher = publisher;
        this.settings = settings;
        this.relay = settings.delivery == SpiSettings.Delivery.OUTBOX ? relay : null;
    }

    @Override
    public void onEvent(Event event) {
        String realmName = realmName(event.getRealmId(), event.getRealmName());
        String type = event.getType() == null ? "UNKNOWN" : event.getType().name();
        if (!settings.wantsRealm(realmName) || !settings.wantsEventType(type)) {
            return;
        }
        hand(Envelope.user(event, idOf(event.getId()), realmName));
    }

    @Override
    public void onEvent(AdminEvent event, boolean includeRepresentation) {
        String realmName = realmName(event.getRealmId(), event.getRealmName());
        if (!settings.wantsRealm(realmName) || !settings.wantsAdminResource(Envelope.resourceType(event))) {
            return;
        }
        boolean representation = includeRepresentation && settings.wantsRepresentation(Envelope.resourceType(event));
        hand(Envelope.admin(event, idOf(event.getId()), realmName, representation, event.getDetails()));
    }

    private void hand(Outgoing message) {
        KeycloakTransactionManager transactions = session == null ? null : session.getTransactionManager();
        if (relay != null && Outbox.available(session)) {
            if (transactions != null && transactions.isActive()) {
                Outbox.write(session, message);
                wroteOutbox = true;
                enlist(transactions);
            } else {
                // No transaction of the request (a background task): one of its own.
                KeycloakModelUtils.runJobInTransaction(session.getKeycloakSessionFactory(),
                        own -> Outbox.write(own, message));
                relay.wake();
            }
            return;
        }
        if (transactions == null || !transactions.isActive()) {
            // No transaction to wait for: the event stands as it is.
            publisher.submit(List.of(message));
            return;
        }
        pending.add(message);
        enlist(transactions);
    }

    private void enlist(KeycloakTransactionManager transactions) {
        if (!enlisted) {
            transactions.enlistAfterCompletion(new AfterCompletion());
            enlisted = true;
        }
    }

    /**
     * Keycloak's id where it set one (the id its event store keeps, from 26.2), else a fresh
     * one, fixed from here on.
     */
    private static String idOf(String fromEvent) {
        return fromEvent != null && !fromEvent.isEmpty() ? fromEvent : UUID.randomUUID().toString();
    }

    /** The event's realm name, else looked up by id during the request (never after the commit). */
    private String realmName(String realmId, String fromEvent) {
        if (fromEvent != null) {
            return fromEvent;
        }
        if (realmId == null) {
            return null;
        }
        return realmNames.computeIfAbsent(realmId, this::lookUpRealmName);
    }

    private String lookUpRealmName(String realmId) {
        try {
            KeycloakContext context = session == null ? null : session.getContext();
            RealmModel current = context == null ? null : context.getRealm();
            if (current != null && realmId.equals(current.getId())) {
                return current.getName();
            }
            RealmModel realm = session == null || session.realms() == null ? null : session.realms().getRealm(realmId);
            if (realm != null) {
                return realm.getName();
            }
        } catch (RuntimeException e) {
            LOG.debugf("keycloak-sync: realm %s not found by id (%s); its id stands in for its name", realmId,
                    e.toString());
        }
        return realmId;
    }

    @Override
    public void close() {
        // Pending events belong to the after-completion step, which Keycloak always runs.
    }

    /**
     * Runs after Keycloak's own transaction: wakes the relay for the rows the commit wrote,
     * hands direct events over on commit, drops them on rollback.
     */
    private final class AfterCompletion extends AbstractKeycloakTransaction {
        @Override
        protected void commitImpl() {
            enlisted = false;
            if (wroteOutbox) {
                wroteOutbox = false;
                relay.wake();
            }
            if (!pending.isEmpty()) {
                publisher.submit(new ArrayList<>(pending));
                pending.clear();
            }
        }

        @Override
        protected void rollbackImpl() {
            enlisted = false;
            wroteOutbox = false;
            if (!pending.isEmpty()) {
                LOG.debugf("keycloak-sync: transaction rolled back; %d events not published", pending.size());
                pending.clear();
            }
        }
    }
}
