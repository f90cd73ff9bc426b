package io.keycloaksync.spi;

import java.nio.file.Files;
import java.util.Map;
import org.keycloak.events.EventListenerProvider;
import org.keycloak.events.EventType;
import org.keycloak.events.admin.AdminEvent;
import org.keycloak.events.admin.OperationType;
import org.keycloak.events.admin.ResourceType;

/**
 * Publishes one user's scripted session history through the provider, each event in its
 * own committed Keycloak transaction: register, login, profile update, admin update,
 * logout, admin delete. Used by the cross-language end-to-end test:
 * {@code java … ScriptedHistory AMQP_URI EXCHANGE}.
 */
public final class ScriptedHistory {
    public static final long T0 = 1_732_270_000_000L;

    private ScriptedHistory() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: ScriptedHistory AMQP_URI EXCHANGE");
            System.exit(2);
        }
        var factory = new KeycloakSyncEventListenerFactory(Map.of(
                "KEYCLOAK_SYNC_SPI_AMQP_URI", args[0],
                "KEYCLOAK_SYNC_SPI_EXCHANGE", args[1],
                "KEYCLOAK_SYNC_SPI_SPOOL_DIR", Files.createTempDirectory("kcs-e2e-spool-").toString()));
        factory.init(null);
        FakeKeycloak keycloak = new FakeKeycloak();
        EventListenerProvider listener = factory.create(keycloak.session());

        var register = FakeKeycloak.userEvent(EventType.REGISTER, "u1", null,
                Map.of("username", "alice", "email", "alice@example.com", "register_method", "form"));
        register.setTime(T0);
        listener.onEvent(register);
        keycloak.commit();

        var login = FakeKeycloak.userEvent(EventType.LOGIN, "u1", "s1", Map.of("username", "alice"));
        login.setTime(T0 + 1_000);
        listener.onEvent(login);
        keycloak.commit();

        var profile = FakeKeycloak.userEvent(EventType.UPDATE_PROFILE, "u1", null,
                Map.of("updated_first_name", "Alice", "previous_first_name", ""));
        profile.setTime(T0 + 2_000);
        listener.onEvent(profile);
        keycloak.commit();

        AdminEvent update = FakeKeycloak.adminEvent(ResourceType.USER, OperationType.UPDATE, "users/u1",
                "{\"id\":\"u1\",\"username\":\"alice\",\"lastName\":\"Liddell\",\"emailVerified\":true,\"enabled\":true}");
        update.setTime(T0 + 3_000);
        listener.onEvent(update, true);
        keycloak.commit();

        var logout = FakeKeycloak.userEvent(EventType.LOGOUT, "u1", "s1", Map.of("redirect_uri", "https://app/"));
        logout.setTime(T0 + 4_000);
        listener.onEvent(logout);
        keycloak.commit();

        AdminEvent delete = FakeKeycloak.adminEvent(ResourceType.USER, OperationType.DELETE, "users/u1", null);
        delete.setTime(T0 + 5_000);
        listener.onEvent(delete, true);
        keycloak.commit();

        long deadline = System.currentTimeMillis() + 30_000;
        while (factory.stats().getConfirmed() < 6 && System.currentTimeMillis() < deadline) {
            Thread.sleep(20);
        }
        long confirmed = factory.stats().getConfirmed();
        factory.close();
        System.out.println("published " + confirmed + " events");
        System.exit(confirmed == 6 ? 0 : 1);
    }
}
