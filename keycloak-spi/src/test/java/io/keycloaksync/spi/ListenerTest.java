package io.keycloaksync.spi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.keycloak.events.EventType;
import org.keycloak.events.admin.OperationType;
import org.keycloak.events.admin.ResourceType;

class ListenerTest {
    private final FakeKeycloak keycloak = new FakeKeycloak();
    private final List<Outgoing> handed = new ArrayList<>();

    private KeycloakSyncEventListener listener(Map<String, String> env) {
        SpiSettings settings = SpiSettings.from(null, env);
        return new KeycloakSyncEventListener(keycloak.session(), handed::addAll, settings);
    }

    @Test
    void eventsAreHandedOverOnlyAfterTheTransactionCommits() {
        KeycloakSyncEventListener listener = listener(Map.of());
        listener.onEvent(FakeKeycloak.userEvent(EventType.REGISTER, "u1", null, Map.of("username", "alice")));
        listener.onEvent(FakeKeycloak.userEvent(EventType.LOGIN, "u1", "s1", Map.of()));
        assertTrue(handed.isEmpty(), "nothing before the commit");
        assertEquals(1, keycloak.afterCompletion.size(), "one after-completion step per session");
        keycloak.commit();
        assertEquals(List.of("kc.acme.user.REGISTER", "kc.acme.user.LOGIN"),
                handed.stream().map(m -> m.routingKey).toList());
        assertEquals(0, keycloak.lookupsAfterCompletion.get(), "no realm look-up after the commit");
    }

    private KeycloakSyncEventListener withOutbox() {
        keycloak.jpa = true;
        SpiSettings settings = SpiSettings.from(null, Map.of());
        OutboxRelay relay = new OutboxRelay(settings, new PublisherStats(), null);
        return new KeycloakSyncEventListener(keycloak.session(), handed::addAll, settings, relay);
    }

    @Test
    void withTheOutboxEachEventIsARowOfTheTransactionAndNothingIsHandedOver() {
        KeycloakSyncEventListener listener = withOutbox();
        listener.onEvent(FakeKeycloak.userEvent(EventType.LOGIN, "u1", "s1", Map.of()));
        listener.onEvent(FakeKeycloak.adminEvent(ResourceType.USER, OperationType.UPDATE, "users/u1", "{}"), true);
        assertEquals(2, keycloak.persisted.size(), "written during the request, in its transaction");
        Outgoing login = ((OutboxEntity) keycloak.persisted.get(0)).toOutgoing();
        assertEquals("kc.acme.user.LOGIN", login.routingKey);
        assertEquals("user.LOGIN", login.type);
        keycloak.commit();
        assertTrue(handed.isEmpty(), "the relay publishes, not the direct path");
        assertFalse(keycloak.rollbackOnly);
    }

    @Test
    void anOutboxRowThatCannotBeWrittenRollsTheChangeBack() {
        KeycloakSyncEventListener listener = withOutbox();
        keycloak.persistFails = new IllegalStateException("database gone");
        // Keycloak logs and swallows a listener's exception: the rollback-only mark is what counts.
        org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class,
                () -> listener.onEvent(FakeKeycloak.userEvent(EventType.LOGIN, "u1", "s1", Map.of())));
        assertTrue(keycloak.rollbackOnly, "the Keycloak transaction is marked rollback-only");
        keycloak.rollback();
        assertTrue(handed.isEmpty());
    }

    @Test
    void withoutKeycloaksJpaStoreTheOutboxFallsBackToDirect() {
        KeycloakSyncEventListener listener = withOutbox();
        keycloak.jpa = false;
        listener.onEvent(FakeKeycloak.userEvent(EventType.LOGIN, "u1", "s1", Map.of()));
        keycloak.commit();
        assertEquals(1, handed.size());
        assertTrue(keycloak.persisted.isEmpty());
    }

    @Test
    void aRolledBackTransactionPublishesNothing() {
        KeycloakSyncEventListener listener = listener(Map.of());
        listener.onEvent(FakeKeycloak.userEvent(EventType.UPDATE_PROFILE, "u1", null, Map.of()));
        keycloak.rollback();
        assertTrue(handed.isEmpty());
    }

    @Test
    void withoutATransactionTheEventIsHandedOverAtOnce() {
        keycloak.transactionActive = false;
        listener(Map.of()).onEvent(FakeKeycloak.userEvent(EventType.LOGIN_ERROR, null, null, null));
        assertEquals(1, handed.size());
    }

    @Test
    void anEmptySessionContextFallsBackToTheRealmId() {
        keycloak.contextEmpty = true;
        keycloak.realms.clear();
        KeycloakSyncEventListener listener = listener(Map.of());
        listener.onEvent(FakeKeycloak.userEvent(EventType.LOGIN, "u1", "s1", Map.of()));
        keycloak.commit();
        assertEquals("kc." + FakeKeycloak.REALM_ID + ".user.LOGIN", handed.get(0).routingKey);
    }

    @Test
    void theRealmNameComesFromTheEventOrIsLookedUpDuringTheRequest() {
        keycloak.contextEmpty = true;
        KeycloakSyncEventListener listener = listener(Map.of());
        listener.onEvent(FakeKeycloak.userEvent(EventType.LOGIN, "u1", "s1", Map.of()));
        var named = FakeKeycloak.userEvent(EventType.LOGIN, "u2", "s2", Map.of());
        named.setRealmName("named.realm");
        listener.onEvent(named);
        keycloak.commit();
        assertEquals("kc.acme.user.LOGIN", handed.get(0).routingKey);
        assertEquals("kc.named_realm.user.LOGIN", handed.get(1).routingKey);
        assertEquals(1, keycloak.realmLookups.get());
    }

    @Test
    void idsComeFromKeycloakOrAreMadeOnce() {
        KeycloakSyncEventListener listener = listener(Map.of());
        var withId = FakeKeycloak.userEvent(EventType.LOGIN, "u1", "s1", Map.of());
        withId.setId("kc-event-id");
        listener.onEvent(withId);
        listener.onEvent(FakeKeycloak.userEvent(EventType.LOGIN, "u1", "s1", Map.of()));
        keycloak.commit();
        assertEquals("kc-event-id", handed.get(0).id);
        assertEquals(36, handed.get(1).id.length(), "a UUID");
    }

    @Test
    void filtersByRealmEventTypeAndAdminResource() {
        KeycloakSyncEventListener listener = listener(Map.of(
                "KEYCLOAK_SYNC_SPI_REALMS", "acme",
                "KEYCLOAK_SYNC_SPI_EVENT_TYPES", "LOGIN,LOGOUT",
                "KEYCLOAK_SYNC_SPI_ADMIN_RESOURCE_TYPES", "USER"));
        listener.onEvent(FakeKeycloak.userEvent(EventType.LOGIN, "u1", "s1", Map.of()));
        listener.onEvent(FakeKeycloak.userEvent(EventType.CODE_TO_TOKEN, "u1", "s1", Map.of()));
        var otherRealm = FakeKeycloak.userEvent(EventType.LOGIN, "u9", "s9", Map.of());
        otherRealm.setRealmName("other");
        listener.onEvent(otherRealm);
        listener.onEvent(FakeKeycloak.adminEvent(ResourceType.USER, OperationType.DELETE, "users/u1", null), true);
        listener.onEvent(FakeKeycloak.adminEvent(ResourceType.CLIENT, OperationType.CREATE, "clients/c1", "{}"), true);
        keycloak.commit();
        assertEquals(List.of("kc.acme.user.LOGIN", "kc.acme.admin.USER.DELETE"),
                handed.stream().map(m -> m.routingKey).toList());
    }

    @Test
    void includeRepresentationIsHonoured() {
        KeycloakSyncEventListener listener = listener(Map.of());
        listener.onEvent(FakeKeycloak.adminEvent(ResourceType.USER, OperationType.CREATE, "users/u1",
                "{\"username\":\"alice\"}"), false);
        keycloak.commit();
        assertFalse(handed.get(0).bodyText().contains("representation"));
    }

    @Test
    void representationsOnlyForTheResourceTypesTheDaemonReads() {
        KeycloakSyncEventListener listener = listener(Map.of());
        listener.onEvent(FakeKeycloak.adminEvent(ResourceType.CLIENT, OperationType.UPDATE, "clients/c1",
                "{\"clientId\":\"app\",\"secret\":\"abc\"}"), true);
        listener.onEvent(FakeKeycloak.adminEvent(ResourceType.GROUP_MEMBERSHIP, OperationType.CREATE,
                "users/u1/groups/g1", "{\"id\":\"g1\",\"name\":\"staff\"}"), true);
        listener.onEvent(FakeKeycloak.adminEvent(ResourceType.USER, OperationType.UPDATE, "users/u1",
                "{\"username\":\"alice\"}"), true);
        keycloak.commit();
        assertEquals(3, handed.size(), "the events themselves are all published");
        assertFalse(handed.get(0).bodyText().contains("representation"), handed.get(0).bodyText());
        assertTrue(handed.get(1).bodyText().contains("staff"), handed.get(1).bodyText());
        assertTrue(handed.get(2).bodyText().contains("alice"), handed.get(2).bodyText());

        handed.clear();
        KeycloakSyncEventListener everything = listener(Map.of("KEYCLOAK_SYNC_SPI_REPRESENTATION_RESOURCE_TYPES", "*"));
        everything.onEvent(FakeKeycloak.adminEvent(ResourceType.CLIENT, OperationType.UPDATE, "clients/c1",
                "{\"clientId\":\"app\",\"secret\":\"abc\"}"), true);
        keycloak.commit();
        String body = handed.get(0).bodyText();
        assertTrue(body.contains("representation") && body.contains("app"), body);
        assertFalse(body.contains("abc"), "secrets are stripped even when asked for: " + body);
    }
}
