package io.keycloaksync.spi;

import jakarta.persistence.EntityManager;
import java.lang.reflect.Proxy;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import org.keycloak.connections.jpa.JpaConnectionProvider;
import org.keycloak.events.Event;
import org.keycloak.events.EventType;
import org.keycloak.events.admin.AdminEvent;
import org.keycloak.events.admin.AuthDetails;
import org.keycloak.events.admin.OperationType;
import org.keycloak.events.admin.ResourceType;
import org.keycloak.models.KeycloakContext;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakTransaction;
import org.keycloak.models.KeycloakTransactionManager;
import org.keycloak.models.RealmModel;
import org.keycloak.models.RealmProvider;

/**
 * A Keycloak session as the provider sees one: a transaction manager that runs the
 * after-completion transactions on commit or rollback, a context realm, and a realm
 * provider that counts its look-ups. Built from dynamic proxies, so it fits the real
 * Keycloak interfaces as well as the compile-only declarations.
 */
final class FakeKeycloak {
    static final String REALM_ID = "0c6f5d2e-realm";

    final List<KeycloakTransaction> afterCompletion = new ArrayList<>();
    final AtomicInteger realmLookups = new AtomicInteger();
    final AtomicInteger lookupsAfterCompletion = new AtomicInteger();
    boolean transactionActive = true;
    boolean contextEmpty;
    boolean completing;
    final Map<String, String> realms = new HashMap<>(Map.of(REALM_ID, "acme"));
    /** Whether the session has Keycloak's JPA store (where the outbox lives). */
    boolean jpa;
    /** What the entity manager was given to persist. */
    final List<Object> persisted = new ArrayList<>();
    /** Thrown by persist when set. */
    RuntimeException persistFails;
    boolean rollbackOnly;

    KeycloakSession session() {
        KeycloakTransactionManager manager = proxy(KeycloakTransactionManager.class, (method, args) -> {
            switch (method) {
                case "enlistAfterCompletion":
                    KeycloakTransaction tx = (KeycloakTransaction) args[0];
                    if (transactionActive && !tx.isActive()) {
                        tx.begin();
                    }
                    afterCompletion.add(tx);
                    return null;
                case "isActive":
                    return transactionActive;
                case "setRollbackOnly":
                    rollbackOnly = true;
                    return null;
                default:
                    return null;
            }
        });
        EntityManager entities = proxy(EntityManager.class, (method, args) -> {
            if ("persist".equals(method)) {
                if (persistFails != null) {
                    throw persistFails;
                }
                persisted.add(args[0]);
            }
            return null;
        });
        JpaConnectionProvider jpaProvider = proxy(JpaConnectionProvider.class,
                (method, args) -> "getEntityManager".equals(method) ? entities : null);
        RealmModel contextRealm = realm(REALM_ID, "acme");
        KeycloakContext context = proxy(KeycloakContext.class, (method, args) -> contextEmpty ? null : contextRealm);
        RealmProvider provider = proxy(RealmProvider.class, (method, args) -> {
            realmLookups.incrementAndGet();
            if (completing) {
                lookupsAfterCompletion.incrementAndGet();
            }
            String name = realms.get((String) args[0]);
            return name == null ? null : realm((String) args[0], name);
        });
        return proxy(KeycloakSession.class, (method, args) -> {
            switch (method) {
                case "getTransactionManager":
                    return manager;
                case "getContext":
                    return context;
                case "realms":
                    return provider;
                case "getProvider":
                    return jpa && args[0] == JpaConnectionProvider.class ? jpaProvider : null;
                default:
                    return null;
            }
        });
    }

    void commit() {
        complete(KeycloakTransaction::commit);
    }

    void rollback() {
        complete(KeycloakTransaction::rollback);
    }

    /** Ends the request's transaction as Keycloak does: the after-completion steps run. */
    private void complete(java.util.function.Consumer<KeycloakTransaction> outcome) {
        completing = true;
        try {
            afterCompletion.forEach(outcome);
        } finally {
            afterCompletion.clear();
            completing = false;
        }
    }

    static RealmModel realm(String id, String name) {
        return proxy(RealmModel.class, (method, args) -> "getId".equals(method) ? id : name);
    }

    interface Handler {
        Object handle(String method, Object[] args);
    }

    @SuppressWarnings("unchecked")
    static <T> T proxy(Class<T> type, Handler handler) {
        return (T) Proxy.newProxyInstance(type.getClassLoader(), new Class<?>[] {type}, (self, method, args) -> {
            switch (method.getName()) {
                case "toString":
                    return "fake " + type.getSimpleName();
                case "hashCode":
                    return System.identityHashCode(self);
                case "equals":
                    return self == args[0];
                default:
                    return handler.handle(method.getName(), args);
            }
        });
    }

    static Event userEvent(EventType type, String userId, String sessionId, Map<String, String> details) {
        Event event = new Event();
        event.setTime(1_732_270_000_123L);
        event.setType(type);
        event.setRealmId(REALM_ID);
        event.setClientId("web-app");
        event.setUserId(userId);
        event.setSessionId(sessionId);
        event.setIpAddress("203.0.113.7");
        event.setDetails(details);
        return event;
    }

    static AdminEvent adminEvent(ResourceType resource, OperationType operation, String path, String representation) {
        AdminEvent event = new AdminEvent();
        event.setTime(1_732_270_000_456L);
        event.setRealmId(REALM_ID);
        AuthDetails auth = new AuthDetails();
        auth.setRealmId("master-id");
        auth.setClientId("admin-cli");
        auth.setUserId("admin-user");
        auth.setIpAddress("10.0.0.1");
        event.setAuthDetails(auth);
        event.setResourceType(resource);
        event.setOperationType(operation);
        event.setResourcePath(path);
        event.setRepresentation(representation);
        return event;
    }
}
