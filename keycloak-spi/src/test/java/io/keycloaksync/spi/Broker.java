package io.keycloaksync.spi;

import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;
import com.rabbitmq.client.GetResponse;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

/** The real RabbitMQ of the test run (KCS_TEST_AMQP_URL), with names of one test's own. */
final class Broker implements AutoCloseable {
    static final String URL = System.getenv().getOrDefault("KCS_TEST_AMQP_URL",
            "amqp://guest:guest@127.0.0.1:56729/%2f");

    final String exchange = "kcs-spi-test-" + UUID.randomUUID() + ".events";
    final String queue = "kcs-spi-test-" + UUID.randomUUID();
    private final Connection connection;
    final Channel channel;

    Broker() throws Exception {
        ConnectionFactory factory = new ConnectionFactory();
        factory.setUri(URL);
        connection = factory.newConnection("keycloak-spi-test");
        channel = connection.createChannel();
        channel.exchangeDeclare(exchange, "topic", true);
        channel.queueDeclare(queue, true, false, true, null);
        channel.queueBind(queue, exchange, "kc.#");
    }

    static URI uri() {
        return URI.create(URL);
    }

    /** The factory's environment: this broker (or {@code amqpUri}) and a fresh spool. */
    Map<String, String> env(String amqpUri, Path spool) {
        Map<String, String> env = new HashMap<>();
        env.put("KEYCLOAK_SYNC_SPI_AMQP_URI", amqpUri);
        env.put("KEYCLOAK_SYNC_SPI_EXCHANGE", exchange);
        env.put("KEYCLOAK_SYNC_SPI_SPOOL_DIR", spool.toString());
        env.put("KEYCLOAK_SYNC_SPI_CONFIRM_TIMEOUT_MILLIS", "2000");
        env.put("KEYCLOAK_SYNC_SPI_SHUTDOWN_GRACE_MILLIS", "2000");
        return env;
    }

    /** The broker's URL with its port moved to {@code port} (a proxy in front of it). */
    static String via(int port) {
        URI real = uri();
        return real.getScheme() + "://" + real.getRawUserInfo() + "@127.0.0.1:" + port + real.getRawPath();
    }

    static final class Received {
        final String routingKey;
        final AMQP.BasicProperties properties;
        final String body;

        Received(String routingKey, AMQP.BasicProperties properties, byte[] body) {
            this.routingKey = routingKey;
            this.properties = properties;
            this.body = new String(body, java.nio.charset.StandardCharsets.UTF_8);
        }
    }

    /** Takes messages until {@code count} arrived or {@code millis} passed. */
    List<Received> take(int count, long millis) throws Exception {
        List<Received> out = new ArrayList<>();
        long deadline = System.currentTimeMillis() + millis;
        while (out.size() < count && System.currentTimeMillis() < deadline) {
            GetResponse response = channel.basicGet(queue, true);
            if (response == null) {
                Thread.sleep(20);
                continue;
            }
            out.add(new Received(response.getEnvelope().getRoutingKey(), response.getProps(), response.getBody()));
        }
        return out;
    }

    static Path tempSpool() throws Exception {
        return Files.createTempDirectory("kcs-spool-");
    }

    @Override
    public void close() throws Exception {
        try {
            channel.queueDelete(queue);
            channel.exchangeDelete(exchange);
        } finally {
            connection.close();
        }
    }
}
