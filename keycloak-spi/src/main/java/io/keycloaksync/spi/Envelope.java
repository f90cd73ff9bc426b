package io.keycloaksync.spi;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.util.Iterator;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import org.keycloak.events.Event;
import org.keycloak.events.admin.AdminEvent;
import org.keycloak.events.admin.AuthDetails;

/** Keycloak events as the keycloak-sync envelope, schema 1, with their routing keys. */
public final class Envelope {
    static final ObjectMapper JSON = new ObjectMapper();

    private Envelope() {
    }

    /** A user event; {@code id} and {@code realmName} are resolved by the caller. */
    public static Outgoing user(Event event, String id, String realmName) {
        String type = event.getType() == null ? "UNKNOWN" : event.getType().name();
        ObjectNode node = header("user", id, event.getTime(), event.getRealmId(), realmName);
        node.put("type", type);
        node.put("clientId", event.getClientId());
        node.put("userId", event.getUserId());
        node.put("sessionId", event.getSessionId());
        node.put("ipAddress", event.getIpAddress());
        node.put("error", event.getError());
        node.set("details", details(event.getDetails()));
        String routingKey = "kc." + part(realmName) + ".user." + part(type);
        return new Outgoing(id, event.getTime(), routingKey, "user." + type, bytes(node));
    }

    /** An admin event; its representation only with {@code includeRepresentation}. */
    public static Outgoing admin(AdminEvent event, String id, String realmName, boolean includeRepresentation,
            Map<String, String> details) {
        String resource = resourceType(event);
        String operation = event.getOperationType() == null ? "UNKNOWN" : event.getOperationType().name();
        ObjectNode node = header("admin", id, event.getTime(), event.getRealmId(), realmName);
        ObjectNode auth = node.putObject("authDetails");
        AuthDetails authDetails = event.getAuthDetails();
        if (authDetails != null) {
            auth.put("realmId", authDetails.getRealmId());
            auth.put("clientId", authDetails.getClientId());
            auth.put("userId", authDetails.getUserId());
            auth.put("ipAddress", authDetails.getIpAddress());
        }
        node.put("resourceType", resource);
        node.put("operationType", operation);
        node.put("resourcePath", event.getResourcePath());
        if (includeRepresentation && event.getRepresentation() != null) {
            String representation = withoutCredentials(event.getRepresentation());
            if (representation != null) {
                node.put("representation", representation);
            }
        }
        node.put("error", event.getError());
        node.set("details", details(details));
        String routingKey = "kc." + part(realmName) + ".admin." + part(resource) + "." + part(operation);
        return new Outgoing(id, event.getTime(), routingKey, "admin." + resource + "." + operation, bytes(node));
    }

    /**
     * Keys whose values are credentials wherever they appear. Keycloak records the request body of
     * a user creation as its representation, initial passwords ({@code credentials[].value})
     * included; clients and identity providers carry secrets.
     */
    static final Set<String> CREDENTIAL_KEYS = Set.of("credentials", "password", "secret", "clientsecret",
            "secretdata", "credentialdata", "privatekey", "hashedsaltedvalue");

    /**
     * The representation without credentials, or null when it is not JSON (then nothing of it
     * is published: what it holds cannot be checked).
     */
    static String withoutCredentials(String representation) {
        try {
            JsonNode tree = JSON.readTree(representation);
            if (tree == null) {
                return null;
            }
            strip(tree);
            return JSON.writeValueAsString(tree);
        } catch (IOException notJson) {
            return null;
        }
    }

    private static void strip(JsonNode node) {
        if (node.isObject()) {
            Iterator<Map.Entry<String, JsonNode>> fields = node.properties().iterator();
            while (fields.hasNext()) {
                Map.Entry<String, JsonNode> field = fields.next();
                if (CREDENTIAL_KEYS.contains(field.getKey().toLowerCase(Locale.ROOT))) {
                    fields.remove();
                } else {
                    strip(field.getValue());
                }
            }
        } else if (node.isArray()) {
            node.forEach(Envelope::strip);
        }
    }

    /** The fields every envelope starts with. */
    private static ObjectNode header(String kind, String id, long time, String realmId, String realmName) {
        ObjectNode node = JSON.createObjectNode();
        node.put("schema", 1);
        node.put("kind", kind);
        node.put("id", id);
        node.put("time", time);
        node.put("realmId", realmId);
        node.put("realmName", realmName);
        return node;
    }

    /** The resource type as Keycloak names it (custom resource types have no enum value). */
    static String resourceType(AdminEvent event) {
        String text = event.getResourceTypeAsString();
        if (text != null) {
            return text;
        }
        return event.getResourceType() == null ? "UNKNOWN" : event.getResourceType().name();
    }

    /** A routing-key word: dots would split it, so they become underscores. */
    static String part(String text) {
        if (text == null || text.isEmpty()) {
            return "unknown";
        }
        return text.replace('.', '_');
    }

    private static ObjectNode details(Map<String, String> details) {
        ObjectNode node = JSON.createObjectNode();
        if (details != null) {
            TreeMap<String, String> sorted = new TreeMap<>();
            details.forEach((key, value) -> {
                if (key != null) {
                    sorted.put(key, value);
                }
            });
            sorted.forEach(node::put);
        }
        return node;
    }

    private static byte[] bytes(ObjectNode node) {
        try {
            return JSON.writeValueAsBytes(node);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot serialise an event envelope", e);
        }
    }
}
