package io.keycloaksync.spi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import io.micrometer.core.instrument.Metrics;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import org.junit.jupiter.api.Test;

class MetricsTest {
    @Test
    void theCountersAreMetersOfTheGlobalRegistryUntilUnregistered() {
        SimpleMeterRegistry registry = new SimpleMeterRegistry();
        Metrics.addRegistry(registry);
        try {
            PublisherStats stats = new PublisherStats();
            KeycloakMetrics metrics = new KeycloakMetrics();
            metrics.register(stats);
            stats.outbox(3, 2_500);
            stats.relayed(7);
            stats.outboxRelaying(true);
            assertEquals(3.0, registry.get("keycloak.sync.outbox.depth").gauge().value());
            assertEquals(2.5, registry.get("keycloak.sync.outbox.oldest.age").gauge().value());
            assertEquals(7.0, registry.get("keycloak.sync.outbox.relayed").functionCounter().count());
            assertEquals(1.0, registry.get("keycloak.sync.outbox.relaying").gauge().value());
            metrics.unregister();
            assertNull(Metrics.globalRegistry.find("keycloak.sync.outbox.depth").gauge(), "removed on close");
        } finally {
            Metrics.removeRegistry(registry);
        }
    }
}
