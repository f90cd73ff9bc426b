package io.keycloaksync.spi;

import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Metrics;
import java.util.ArrayList;
import java.util.List;
import java.util.function.ToDoubleFunction;
import org.jboss.logging.Logger;

/**
 * The provider's counters on Keycloak's own metrics endpoint ({@code /metrics} on the
 * management port, with {@code --metrics-enabled=true}): Micrometer meters in the global
 * registry Keycloak's Quarkus exports, named {@code keycloak_sync_*} there. Outside Keycloak,
 * or without Micrometer, nothing is registered and the MBean stays the only view.
 */
final class KeycloakMetrics {
    private static final Logger LOG = Logger.getLogger(KeycloakMetrics.class);

    private final List<Meter> meters = new ArrayList<>();

    void register(PublisherStats stats) {
        try {
            MeterRegistry registry = Metrics.globalRegistry;
            gauge(registry, "keycloak.sync.outbox.depth", "Rows in the outbox (all nodes'), measured every 5 s",
                    stats, s -> s.getOutboxDepth());
            meters.add(Gauge.builder("keycloak.sync.outbox.oldest.age", stats, s -> s.getOutboxOldestAgeMillis() / 1000.0)
                    .description("Age of the oldest row in the outbox, 0 when it is empty").baseUnit("seconds")
                    .register(registry));
            gauge(registry, "keycloak.sync.outbox.relaying", "1 when this node held the relay claim at its last round",
                    stats, s -> s.isOutboxRelaying() ? 1 : 0);
            counter(registry, "keycloak.sync.outbox.relayed", "Outbox rows this node published and deleted", stats,
                    s -> s.getOutboxRelayed());
            counter(registry, "keycloak.sync.published", "Events the direct publisher had confirmed", stats,
                    s -> s.getConfirmed());
            counter(registry, "keycloak.sync.returned", "Events returned unroutable", stats, s -> s.getReturned());
            counter(registry, "keycloak.sync.dropped", "Events lost by the direct publisher (spool full or unwritable)",
                    stats, s -> s.getDropped());
            gauge(registry, "keycloak.sync.spool.records", "Events in the direct publisher's disk spool", stats,
                    s -> s.getSpoolRecords());
        } catch (LinkageError | RuntimeException e) {
            LOG.debugf("keycloak-sync: no Micrometer registry (%s); counters over JMX only", e.toString());
        }
    }

    private void gauge(MeterRegistry registry, String name, String help, PublisherStats stats,
            ToDoubleFunction<PublisherStats> value) {
        meters.add(Gauge.builder(name, stats, value).description(help).register(registry));
    }

    private void counter(MeterRegistry registry, String name, String help, PublisherStats stats,
            ToDoubleFunction<PublisherStats> value) {
        meters.add(FunctionCounter.builder(name, stats, value).description(help).register(registry));
    }

    void unregister() {
        try {
            for (Meter meter : meters) {
                Metrics.globalRegistry.remove(meter);
            }
        } catch (LinkageError | RuntimeException e) {
            LOG.debugf("keycloak-sync: removing meters: %s", e.toString());
        }
        meters.clear();
    }
}
