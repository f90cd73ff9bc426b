package io.keycloaksync.spi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.keycloak.events.Event;
import org.keycloak.events.EventType;
import org.keycloak.events.admin.AdminEvent;
import org.keycloak.events.admin.OperationType;
import org.keycloak.events.admin.ResourceType;

class EnvelopeTest {
    private static JsonNode json(Outgoing message) throws IOException {
        return Envelope.JSON.readTree(message.body);
    }

    @Test
    void userEventsCarryEveryFieldAndTheirRoutingKey() throws IOException {
        Event event = FakeKeycloak.userEvent(EventType.LOGIN, "8d2b-user", "a41e-session",
                Map.of("username", "alice", "auth_method", "openid-connect"));
        Outgoing message = Envelope.user(event, "3f1d-id", "acme");
        assertEquals("kc.acme.user.LOGIN", message.routingKey);
        assertEquals("user.LOGIN", message.type);
        assertEquals("3f1d-id", message.id);
        JsonNode body = json(message);
        assertEquals(1, body.get("schema").asInt());
        assertEquals("user", body.get("kind").asText());
        assertEquals("3f1d-id", body.get("id").asText());
        assertEquals(1_732_270_000_123L, body.get("time").asLong());
        assertEquals(FakeKeycloak.REALM_ID, body.get("realmId").asText());
        assertEquals("acme", body.get("realmName").asText());
        assertEquals("LOGIN", body.get("type").asText());
        assertEquals("web-app", body.get("clientId").asText());
        assertEquals("8d2b-user", body.get("userId").asText());
        assertEquals("a41e-session", body.get("sessionId").asText());
        assertEquals("203.0.113.7", body.get("ipAddress").asText());
        assertTrue(body.get("error").isNull());
        assertEquals("alice", body.get("details").get("username").asText());
        assertFalse(message.bodyText().contains("\n"), "compact JSON: one spool line");
    }

    @Test
    void errorEventsAndEventsWithoutClientKeepTheirShape() throws IOException {
        Event event = FakeKeycloak.userEvent(EventType.LOGIN_ERROR, null, null, null);
        event.setClientId(null);
        event.setError("user_not_found");
        Outgoing message = Envelope.user(event, "e1", "acme");
        assertEquals("kc.acme.user.LOGIN_ERROR", message.routingKey);
        JsonNode body = json(message);
        assertEquals("user_not_found", body.get("error").asText());
        assertTrue(body.get("clientId").isNull());
        assertTrue(body.get("userId").isNull());
        assertEquals(0, body.get("details").size());
    }

    @Test
    void dotsInRealmNamesDoNotSplitTheRoutingKey() throws IOException {
        Event event = FakeKeycloak.userEvent(EventType.REGISTER, "u", null, Map.of("username", "bob"));
        Outgoing message = Envelope.user(event, "e2", "my.company.realm");
        assertEquals("kc.my_company_realm.user.REGISTER", message.routingKey);
        assertEquals("my.company.realm", json(message).get("realmName").asText());
        assertEquals("kc.unknown.user.REGISTER", Envelope.user(event, "e3", null).routingKey);
    }

    @Test
    void adminEventsWithAndWithoutRepresentation() throws IOException {
        String representation = "{\"id\":\"8d2b\",\"username\":\"alice\",\"enabled\":false}";
        AdminEvent event = FakeKeycloak.adminEvent(ResourceType.USER, OperationType.UPDATE, "users/8d2b",
                representation);
        Outgoing with = Envelope.admin(event, "a1", "acme", true, Map.of("note", "x"));
        assertEquals("kc.acme.admin.USER.UPDATE", with.routingKey);
        assertEquals("admin.USER.UPDATE", with.type);
        JsonNode body = json(with);
        assertEquals("admin", body.get("kind").asText());
        assertEquals("USER", body.get("resourceType").asText());
        assertEquals("UPDATE", body.get("operationType").asText());
        assertEquals("users/8d2b", body.get("resourcePath").asText());
        assertEquals(representation, body.get("representation").asText(), "a JSON string, as Keycloak gives it");
        assertEquals("admin-cli", body.get("authDetails").get("clientId").asText());
        assertEquals("x", body.get("details").get("note").asText());

        Outgoing without = Envelope.admin(event, "a2", "acme", false, null);
        assertFalse(json(without).has("representation"));

        AdminEvent session = FakeKeycloak.adminEvent(ResourceType.USER_SESSION, OperationType.DELETE,
                "users/8d2b/sessions/s1", null);
        assertEquals("kc.acme.admin.USER_SESSION.DELETE", Envelope.admin(session, "a3", "acme", true, null).routingKey);
    }

    @Test
    void credentialsNeverLeaveKeycloakInARepresentation() throws IOException {
        // UsersResource.createUser records the request body: initial passwords included.
        String created = "{\"username\":\"alice\",\"enabled\":true,\"attributes\":{\"value\":[\"kept\"]},"
                + "\"credentials\":[{\"type\":\"password\",\"value\":\"hunter2\",\"temporary\":false}],"
                + "\"federatedIdentities\":[{\"identityProvider\":\"corp\",\"Secret\":\"s3cr3t\"}]}";
        AdminEvent event = FakeKeycloak.adminEvent(ResourceType.USER, OperationType.CREATE, "users/u1", created);
        String body = Envelope.admin(event, "e1", "acme", true, null).bodyText();
        assertFalse(body.contains("hunter2"), body);
        assertFalse(body.contains("s3cr3t"), body);
        JsonNode representation = Envelope.JSON.readTree(json(Envelope.admin(event, "e1", "acme", true, null))
                .get("representation").asText());
        assertEquals("alice", representation.get("username").asText());
        assertFalse(representation.has("credentials"));
        assertEquals("kept", representation.get("attributes").get("value").get(0).asText(),
                "an attribute named value is data, not a credential");

        AdminEvent notJson = FakeKeycloak.adminEvent(ResourceType.USER, OperationType.UPDATE, "users/u1",
                "password=hunter2");
        String dropped = Envelope.admin(notJson, "e2", "acme", true, null).bodyText();
        assertFalse(dropped.contains("hunter2"), "what cannot be checked is not published: " + dropped);
        assertFalse(json(Envelope.admin(notJson, "e2", "acme", true, null)).has("representation"));
    }
}
