package io.keycloaksync.spi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.keycloak.events.EventListenerProvider;
import org.keycloak.events.EventType;

/** The provider against a real RabbitMQ; outages through a proxy that only this test uses. */
class RabbitPublisherTest {
    private static void waitFor(String what, long millis, java.util.function.BooleanSupplier condition)
            throws InterruptedException {
        long deadline = System.currentTimeMillis() + millis;
        while (!condition.getAsBoolean()) {
            if (System.currentTimeMillis() > deadline) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(20);
        }
    }

    /** Sends one committed LOGIN numbered {@code n}; returns the nanoseconds the request thread spent. */
    private static long login(FakeKeycloak keycloak, EventListenerProvider listener, int n) {
        long started = System.nanoTime();
        listener.onEvent(FakeKeycloak.userEvent(EventType.LOGIN, "u" + n, "s" + n, Map.of("seq", Integer.toString(n))));
        keycloak.commit();
        return System.nanoTime() - started;
    }

    private static List<Integer> sequence(List<Broker.Received> received) throws Exception {
        List<Integer> out = new ArrayList<>();
        for (Broker.Received message : received) {
            out.add(Envelope.JSON.readTree(message.body).get("details").get("seq").asInt());
        }
        return out;
    }

    private static List<Integer> range(int from, int to) {
        List<Integer> out = new ArrayList<>();
        for (int i = from; i < to; i++) {
            out.add(i);
        }
        return out;
    }

    @Test
    void committedEventsArriveWithEveryPropertyAndRolledBackOnesNever() throws Exception {
        try (Broker broker = new Broker()) {
            var factory = new KeycloakSyncEventListenerFactory(broker.env(Broker.URL, Broker.tempSpool()));
            factory.init(null);
            FakeKeycloak keycloak = new FakeKeycloak();
            EventListenerProvider listener = factory.create(keycloak.session());

            listener.onEvent(FakeKeycloak.userEvent(EventType.UPDATE_PROFILE, "u1", null, Map.of("seq", "0")));
            keycloak.rollback();
            login(keycloak, listener, 1);

            List<Broker.Received> received = broker.take(1, 10_000);
            assertEquals(1, received.size());
            Broker.Received message = received.get(0);
            assertEquals("kc.acme.user.LOGIN", message.routingKey);
            assertEquals(2, message.properties.getDeliveryMode());
            assertEquals("application/json", message.properties.getContentType());
            assertEquals("user.LOGIN", message.properties.getType());
            assertEquals("keycloak-sync-spi", message.properties.getAppId());
            // The broker checked it against the connection's user.
            assertEquals("guest", message.properties.getUserId());
            JsonNode body = Envelope.JSON.readTree(message.body);
            assertEquals(body.get("id").asText(), message.properties.getMessageId());
            assertEquals(body.get("time").asLong() / 1000, message.properties.getTimestamp().getTime() / 1000);
            assertEquals("1", body.get("details").get("seq").asText());

            assertTrue(broker.take(1, 500).isEmpty(), "the rolled-back event never arrives");
            waitFor("the confirm to be counted", 5_000, () -> factory.stats().getConfirmed() == 1);
            factory.close();
        }
    }

    @Test
    void duringABrokerOutageNothingBlocksAndEverythingArrivesInOrderAfterwards() throws Exception {
        try (Broker broker = new Broker(); TcpProxy proxy = new TcpProxy("127.0.0.1", Broker.uri().getPort())) {
            var factory = new KeycloakSyncEventListenerFactory(broker.env(Broker.via(proxy.port()), Broker.tempSpool()));
            factory.init(null);
            FakeKeycloak keycloak = new FakeKeycloak();
            EventListenerProvider listener = factory.create(keycloak.session());
            login(keycloak, listener, 0);
            assertEquals(1, broker.take(1, 10_000).size());
            // The message is in the queue before its confirm is back: cut before the confirm
            // and the publisher rightly keeps event 0 too (at least once), 501 in the spool.
            waitFor("the confirm of event 0", 5_000, () -> factory.stats().getConfirmed() == 1);

            proxy.cut();
            long slowest = 0;
            for (int n = 1; n <= 500; n++) {
                slowest = Math.max(slowest, login(keycloak, listener, n));
            }
            assertTrue(slowest < 50_000_000L, "a request thread waited " + slowest / 1_000 + " µs");
            waitFor("the events to reach the spool", 20_000, () -> factory.stats().getSpoolRecords() == 500);
            assertTrue(broker.take(1, 200).isEmpty());

            proxy.restore();
            List<Broker.Received> received = broker.take(500, 60_000);
            assertEquals(range(1, 501), sequence(received), "all of them, in order");
            waitFor("the spool to empty", 10_000, () -> factory.stats().getSpoolRecords() == 0);
            factory.close();
        }
    }

    @Test
    void losingTheNodeInUseMovesToTheNextAddressAndResendsWhatWasNotConfirmed() throws Exception {
        int port = Broker.uri().getPort();
        try (Broker broker = new Broker(); TcpProxy first = new TcpProxy("127.0.0.1", port);
                TcpProxy second = new TcpProxy("127.0.0.1", port)) {
            Map<String, String> env = broker.env(Broker.via(first.port()), Broker.tempSpool());
            env.put("KEYCLOAK_SYNC_SPI_AMQP_ADDRESSES", "127.0.0.1:" + first.port() + ",127.0.0.1:" + second.port());
            var factory = new KeycloakSyncEventListenerFactory(env);
            factory.init(null);
            FakeKeycloak keycloak = new FakeKeycloak();
            EventListenerProvider listener = factory.create(keycloak.session());
            login(keycloak, listener, 0);
            assertEquals(range(0, 1), sequence(broker.take(1, 10_000)));

            // The node in use goes away while events keep coming: they wait in the spool
            // and reach the broker through the second address, none lost, in order.
            first.cut();
            for (int n = 1; n <= 300; n++) {
                login(keycloak, listener, n);
            }
            List<Broker.Received> received = broker.take(300, 60_000);
            List<Integer> sequence = sequence(received);
            // Anything whose confirm was lost with the first node may come twice (the
            // daemon's inbox absorbs it); nothing may be missing or out of order.
            List<Integer> distinct = new ArrayList<>(new java.util.LinkedHashSet<>(sequence));
            while (distinct.size() < 300) {
                List<Broker.Received> more = broker.take(1, 10_000);
                assertTrue(!more.isEmpty(), "events missing after the failover: got " + distinct.size());
                sequence.addAll(sequence(more));
                distinct = new ArrayList<>(new java.util.LinkedHashSet<>(sequence));
            }
            assertEquals(range(1, 301), distinct);
            waitFor("the spool to empty", 10_000, () -> factory.stats().getSpoolRecords() == 0);
            assertTrue(factory.stats().isConnected());
            factory.close();
        }
    }

    @Test
    void aRestartedProviderResumesANonEmptySpool() throws Exception {
        Path spool = Broker.tempSpool();
        try (Broker broker = new Broker(); TcpProxy proxy = new TcpProxy("127.0.0.1", Broker.uri().getPort())) {
            proxy.cut();
            var first = new KeycloakSyncEventListenerFactory(broker.env(Broker.via(proxy.port()), spool));
            first.init(null);
            FakeKeycloak keycloak = new FakeKeycloak();
            EventListenerProvider listener = first.create(keycloak.session());
            for (int n = 0; n < 300; n++) {
                login(keycloak, listener, n);
            }
            first.close();
            assertTrue(broker.take(1, 200).isEmpty());

            proxy.restore();
            var second = new KeycloakSyncEventListenerFactory(broker.env(Broker.via(proxy.port()), spool));
            second.init(null);
            second.publisher();
            List<Broker.Received> received = broker.take(300, 60_000);
            assertEquals(range(0, 300), sequence(received));
            waitFor("the spool to empty", 10_000, () -> second.stats().getSpoolRecords() == 0);
            second.close();
        }
    }

    @Test
    void unroutableEventsAreNoticedAndKeptUntilAQueueIsBound() throws Exception {
        try (Broker broker = new Broker()) {
            broker.channel.queueUnbind(broker.queue, broker.exchange, "kc.#");
            var factory = new KeycloakSyncEventListenerFactory(broker.env(Broker.URL, Broker.tempSpool()));
            factory.init(null);
            FakeKeycloak keycloak = new FakeKeycloak();
            login(keycloak, factory.create(keycloak.session()), 7);
            waitFor("the return to be noticed", 10_000, () -> factory.stats().getReturned() >= 1);
            waitFor("the returned event to be spooled", 5_000, () -> factory.stats().getSpoolRecords() == 1);

            broker.channel.queueBind(broker.queue, broker.exchange, "kc.#");
            List<Broker.Received> received = broker.take(1, 20_000);
            assertEquals(List.of(7), sequence(received));
            factory.close();
        }
    }
}
