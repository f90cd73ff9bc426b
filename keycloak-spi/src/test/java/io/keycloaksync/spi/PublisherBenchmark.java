package io.keycloaksync.spi;

import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;
import java.nio.file.Files;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.UUID;
import org.keycloak.events.EventListenerProvider;
import org.keycloak.events.EventType;

/**
 * What a login costs the request thread (onEvent + after-commit hand-over), and the
 * sustained publish rate with confirms, for confirm batches of 1 and of the default size:
 * {@code keycloak-spi/build.sh bench [EVENTS]}.
 */
public final class PublisherBenchmark {
    private PublisherBenchmark() {
    }

    public static void main(String[] args) throws Exception {
        int events = args.length > 0 ? Integer.parseInt(args[0]) : 50_000;
        String url = Broker.URL;
        for (String batch : new String[] {"1", "200"}) {
            run(url, events, batch);
        }
    }

    private static void run(String url, int events, String batchSize) throws Exception {
        String exchange = "kcs-bench-" + UUID.randomUUID();
        ConnectionFactory factory = new ConnectionFactory();
        factory.setUri(url);
        try (Connection connection = factory.newConnection("keycloak-spi-bench")) {
            Channel channel = connection.createChannel();
            channel.exchangeDeclare(exchange, "topic", true);
            String queue = channel.queueDeclare("", true, false, false, null).getQueue();
            channel.queueBind(queue, exchange, "kc.#");

            Map<String, String> env = new HashMap<>();
            env.put("KEYCLOAK_SYNC_SPI_AMQP_URI", url);
            env.put("KEYCLOAK_SYNC_SPI_EXCHANGE", exchange);
            env.put("KEYCLOAK_SYNC_SPI_BATCH_SIZE", batchSize);
            env.put("KEYCLOAK_SYNC_SPI_QUEUE_CAPACITY", Integer.toString(events + 1));
            env.put("KEYCLOAK_SYNC_SPI_SPOOL_DIR", Files.createTempDirectory("kcs-bench-spool-").toString());
            var provider = new KeycloakSyncEventListenerFactory(env);
            provider.init(null);
            provider.publisher();
            FakeKeycloak keycloak = new FakeKeycloak();
            EventListenerProvider listener = provider.create(keycloak.session());
            while (!provider.stats().isConnected()) {
                Thread.sleep(10);
            }
            // Warm-up, not measured.
            for (int i = 0; i < 2_000; i++) {
                listener.onEvent(FakeKeycloak.userEvent(EventType.LOGIN, "u" + i, "s" + i, Map.of()));
                keycloak.commit();
            }
            while (provider.stats().getConfirmed() < 2_000) {
                Thread.sleep(5);
            }

            long[] nanos = new long[events];
            long started = System.nanoTime();
            for (int i = 0; i < events; i++) {
                var event = FakeKeycloak.userEvent(EventType.LOGIN, "u" + i, "s" + i, Map.of("username", "user" + i));
                long t = System.nanoTime();
                listener.onEvent(event);
                keycloak.commit();
                nanos[i] = System.nanoTime() - t;
            }
            long target = 2_000L + events;
            while (provider.stats().getConfirmed() < target) {
                Thread.sleep(1);
            }
            double seconds = (System.nanoTime() - started) / 1e9;
            Arrays.sort(nanos);
            System.out.printf("confirm batch %s: %d events, request thread p50 %.1f µs, p99 %.1f µs, max %.1f µs;"
                    + " published and confirmed in %.2f s = %.0f events/s (spooled %d)%n", batchSize, events,
                    nanos[events / 2] / 1e3, nanos[(int) (events * 0.99)] / 1e3, nanos[events - 1] / 1e3, seconds,
                    events / seconds, provider.stats().getSpooled());
            provider.close();
            channel.queueDelete(queue);
            channel.exchangeDelete(exchange);
        }
    }
}
