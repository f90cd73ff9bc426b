package io.keycloaksync.spi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.rabbitmq.client.Address;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class SettingsTest {
    @Test
    void spiOptionsWinOverTheEnvironmentWhichWinsOverDefaults() {
        Map<String, String> scope = Map.of("exchange", "from.scope");
        Map<String, String> env = Map.of("KEYCLOAK_SYNC_SPI_EXCHANGE", "from.env",
                "KEYCLOAK_SYNC_SPI_QUEUE_CAPACITY", "42");
        SpiSettings settings = SpiSettings.from(scope::get, env);
        assertEquals("from.scope", settings.exchange);
        assertEquals(42, settings.queueCapacity);
        assertEquals(200, settings.batchSize);
        assertEquals(SpiSettings.FullPolicy.BLOCK, settings.spoolFullPolicy);
        assertEquals("KEYCLOAK_SYNC_SPI_SPOOL_MAX_BYTES", SpiSettings.envName("spoolMaxBytes"));
        assertEquals("spool-max-bytes", SpiSettings.optionName("spoolMaxBytes"));
    }

    @Test
    void invalidValuesNameTheOptionAndItsVariable() {
        var error = assertThrows(IllegalArgumentException.class,
                () -> SpiSettings.from(null, Map.of("KEYCLOAK_SYNC_SPI_BATCH_SIZE", "lots")));
        assertTrue(error.getMessage().contains("batch-size") && error.getMessage().contains("KEYCLOAK_SYNC_SPI_BATCH_SIZE"),
                error.getMessage());
        var policy = assertThrows(IllegalArgumentException.class,
                () -> SpiSettings.from(null, Map.of("KEYCLOAK_SYNC_SPI_SPOOL_FULL_POLICY", "panic")));
        assertTrue(policy.getMessage().contains("block or drop-oldest"), policy.getMessage());
        var delivery = assertThrows(IllegalArgumentException.class,
                () -> SpiSettings.from(null, Map.of("KEYCLOAK_SYNC_SPI_DELIVERY", "pigeon")));
        assertTrue(delivery.getMessage().contains("delivery") && delivery.getMessage().contains("outbox or direct")
                && delivery.getMessage().contains("pigeon"), delivery.getMessage());
        assertEquals(SpiSettings.Delivery.OUTBOX, SpiSettings.from(null, Map.of()).delivery, "the default");
        assertEquals(SpiSettings.Delivery.DIRECT,
                SpiSettings.from(null, Map.of("KEYCLOAK_SYNC_SPI_DELIVERY", "Direct")).delivery);
        var scheme = assertThrows(IllegalArgumentException.class,
                () -> SpiSettings.from(null, Map.of("KEYCLOAK_SYNC_SPI_AMQP_URI", "http://user:hunter2@mq/")));
        assertFalse(scheme.getMessage().contains("hunter2"), scheme.getMessage());
    }

    @Test
    void theAddressListTakesPortsFromTheUriSchemeAndRefusesGarbage() {
        SpiSettings single = SpiSettings.from(null, Map.of("KEYCLOAK_SYNC_SPI_AMQP_URI", "amqps://u:p@mq1/prod"));
        assertEquals(List.of(new Address("mq1", 5671)), single.amqpAddresses);
        SpiSettings cluster = SpiSettings.from(null, Map.of(
                "KEYCLOAK_SYNC_SPI_AMQP_URI", "amqp://u:p@mq1:5673/prod",
                "KEYCLOAK_SYNC_SPI_AMQP_ADDRESSES", "mq1, mq2:5680 ,[::1]:5690"));
        assertEquals(List.of(new Address("mq1", 5673), new Address("mq2", 5680), new Address("[::1]", 5690)),
                cluster.amqpAddresses);
        var error = assertThrows(IllegalArgumentException.class, () -> SpiSettings.from(null,
                Map.of("KEYCLOAK_SYNC_SPI_AMQP_ADDRESSES", "mq1:5672,mq2:http")));
        assertTrue(error.getMessage().contains("amqp-addresses (KEYCLOAK_SYNC_SPI_AMQP_ADDRESSES)"), error.getMessage());
        assertTrue(error.getMessage().contains("mq2:http"), error.getMessage());
    }

    @Test
    void keycloakListsEveryOptionWithHelpAndTheSecretsAsSecrets() {
        var metadata = new KeycloakSyncEventListenerFactory(Map.of()).getConfigMetadata();
        assertEquals(SpiSettings.OPTIONS, metadata.stream().map(p -> p.getName()).toList());
        for (var property : metadata) {
            assertTrue(property.getHelpText().contains(SpiSettings.envName(property.getName())), property.getName());
            assertEquals(property.getName().toLowerCase(java.util.Locale.ROOT).contains("password")
                    || property.getName().equals("amqpUri"), property.isSecret(), property.getName());
        }
    }

    @Test
    void theReadmeDocumentsEveryOptionWithItsVariable() throws java.io.IOException {
        String readme = java.nio.file.Files.readString(java.nio.file.Path.of("README.md"));
        for (String option : SpiSettings.OPTIONS) {
            String row = "| `" + SpiSettings.optionName(option) + "` | `" + SpiSettings.envName(option) + "` |";
            assertTrue(readme.contains(row), "README.md lacks " + row);
        }
    }

    @Test
    void passwordsAreNeverShown() {
        SpiSettings settings = SpiSettings.from(null, Map.of(
                "KEYCLOAK_SYNC_SPI_AMQP_URI", "amqps://sync:hunter2@mq.example.com:5671/prod",
                "KEYCLOAK_SYNC_SPI_TRUST_STORE_PASSWORD", "changeit-secret"));
        String shown = settings.toString();
        assertFalse(shown.contains("hunter2"), shown);
        assertFalse(shown.contains("changeit-secret"), shown);
        assertTrue(shown.contains("amqps://sync:***@mq.example.com:5671/prod"), shown);
    }

    @Test
    void theSpoolIsNeverInTheSharedTemporaryDirectory() {
        String home = System.getProperty("kc.home.dir");
        try {
            System.clearProperty("kc.home.dir");
            SpiSettings outside = SpiSettings.from(null, Map.of());
            assertEquals(null, outside.spoolDir, "no default outside Keycloak");
            var refused = assertThrows(IllegalArgumentException.class, outside::requireSpoolDir);
            assertTrue(refused.getMessage().contains("spool-dir")
                    && refused.getMessage().contains("KEYCLOAK_SYNC_SPI_SPOOL_DIR"), refused.getMessage());
            var publisher = assertThrows(IllegalArgumentException.class,
                    () -> new Publisher(outside, new PublisherStats()));
            assertTrue(publisher.getMessage().contains("spool-dir"), "the publisher refuses to start");

            System.setProperty("kc.home.dir", "/opt/keycloak");
            assertEquals(java.nio.file.Path.of("/opt/keycloak/data/keycloak-sync-spool"),
                    SpiSettings.from(null, Map.of()).requireSpoolDir());
        } finally {
            if (home == null) {
                System.clearProperty("kc.home.dir");
            } else {
                System.setProperty("kc.home.dir", home);
            }
        }
    }
}
