package io.keycloaksync.spi;

import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Date;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;
import org.jboss.logging.Logger;

/**
 * One connection and confirm-mode channel to RabbitMQ, owned by one thread: connects on
 * demand with a growing pause between failed attempts, and publishes batches of persistent,
 * mandatory messages, waiting for their confirms.
 */
final class BrokerLink {
    private static final Logger LOG = Logger.getLogger(BrokerLink.class);
    private static final long MAX_RECONNECT_MILLIS = 30_000;
    /** How long events the broker returned as unroutable wait before they are tried again. */
    static final long RETURNED_RETRY_MILLIS = 5_000;

    private final SpiSettings settings;
    private final AmqpConnector connector;
    /** Where unconfirmed events wait, for the log: "the spool in …", "the outbox". */
    private final String fallback;
    private final Consumer<Boolean> onConnected;
    private final Set<String> returned = ConcurrentHashMap.newKeySet();
    private Connection connection;
    private Channel channel;
    private long reconnectDelay = 500;
    private long nextConnectAt;
    private boolean warnedDown;

    BrokerLink(SpiSettings settings, String fallback, Consumer<Boolean> onConnected) {
        this.settings = settings;
        this.connector = new AmqpConnector(settings);
        this.fallback = fallback;
        this.onConnected = onConnected;
    }

    /** What became of a batch. */
    static final class Delivery {
        final boolean ok;
        /** Confirmed but returned as unroutable (no queue bound for their routing keys). */
        final List<Outgoing> returned;

        private Delivery(boolean ok, List<Outgoing> returned) {
            this.ok = ok;
            this.returned = returned;
        }

        static Delivery delivered(List<Outgoing> returned) {
            return new Delivery(true, returned);
        }

        static final Delivery FAILED = new Delivery(false, Collections.emptyList());
    }

    /** Whether the channel is open, trying to open it unless still pausing after a failure. */
    boolean connected() {
        if (channel != null && channel.isOpen()) {
            return true;
        }
        if (System.currentTimeMillis() < nextConnectAt) {
            return false;
        }
        try {
            connection = connector.connect();
            channel = connection.createChannel();
            channel.confirmSelect();
            if (settings.declareExchange) {
                channel.exchangeDeclare(settings.exchange, "topic", true);
            }
            channel.addReturnListener((code, text, exchange, routingKey, properties, body) -> {
                if (properties != null && properties.getMessageId() != null) {
                    returned.add(properties.getMessageId());
                }
            });
            reconnectDelay = 500;
            onConnected.accept(true);
            LOG.infof("keycloak-sync: publishing to %s (node %s), exchange %s", settings.redactedUri(),
                    connector.connectedTo(), settings.exchange);
            warnedDown = false;
            return true;
        } catch (Exception e) {
            disconnect();
            nextConnectAt = System.currentTimeMillis() + reconnectDelay;
            if (!warnedDown) {
                LOG.warnf("keycloak-sync: cannot reach RabbitMQ at %s (%s); events wait in %s until it is back",
                        settings.redactedUri(), describe(e), fallback);
                warnedDown = true;
            } else {
                LOG.debugf("keycloak-sync: RabbitMQ still unreachable (%s)", describe(e));
            }
            reconnectDelay = Math.min(reconnectDelay * 2, MAX_RECONNECT_MILLIS);
            return false;
        }
    }

    /** Publishes a batch and waits for its confirms; call only when {@link #connected()}. */
    Delivery publish(List<Outgoing> batch) {
        returned.clear();
        try {
            for (Outgoing message : batch) {
                channel.basicPublish(settings.exchange, message.routingKey, true, properties(message), message.body);
            }
            channel.waitForConfirmsOrDie(settings.confirmTimeoutMillis);
        } catch (Exception e) {
            // Which of the batch the broker took is unknown: all of it is kept, and a
            // duplicate is absorbed downstream by its id.
            LOG.warnf("keycloak-sync: %d events not confirmed (%s); they are kept in %s", batch.size(), describe(e),
                    fallback);
            disconnect();
            return Delivery.FAILED;
        }
        if (returned.isEmpty()) {
            return Delivery.delivered(Collections.emptyList());
        }
        List<Outgoing> unroutable = new ArrayList<>();
        for (Outgoing message : batch) {
            if (returned.contains(message.id)) {
                unroutable.add(message);
            }
        }
        LOG.errorf("keycloak-sync: %d events unroutable on exchange %s (first routing key %s): no queue is bound;"
                + " they are kept in %s and retried", unroutable.size(), settings.exchange,
                unroutable.isEmpty() ? "?" : unroutable.get(0).routingKey, fallback);
        return Delivery.delivered(unroutable);
    }

    private AMQP.BasicProperties properties(Outgoing message) {
        return new AMQP.BasicProperties.Builder()
                .deliveryMode(2)
                .contentType("application/json")
                .messageId(message.id)
                .timestamp(new Date(message.time))
                .type(message.type)
                .appId("keycloak-sync-spi")
                // RabbitMQ checks it against the connection's user, so consumers can tell
                // who published (keycloak-sync's amqp.event_publishers).
                .userId(brokerUser(settings.amqpUri))
                .build();
    }

    /** The user the connection logs in as: the URI's user info, as the AMQP client reads it. */
    static String brokerUser(java.net.URI uri) {
        String info = uri.getRawUserInfo();
        if (info == null || info.isEmpty()) {
            return "guest";
        }
        int colon = info.indexOf(':');
        String user = colon < 0 ? info : info.substring(0, colon);
        return java.net.URLDecoder.decode(user, java.nio.charset.StandardCharsets.UTF_8);
    }

    /** Whether the channel is open now (no attempt to connect). */
    boolean isOpen() {
        return channel != null && channel.isOpen();
    }

    void disconnect() {
        onConnected.accept(false);
        Channel oldChannel = channel;
        Connection oldConnection = connection;
        channel = null;
        connection = null;
        try {
            if (oldChannel != null && oldChannel.isOpen()) {
                oldChannel.abort();
            }
        } catch (Exception | LinkageError ignored) {
            // Closing a broken channel: nothing to do.
        }
        try {
            if (oldConnection != null) {
                oldConnection.abort(1_000);
            }
        } catch (RuntimeException | LinkageError ignored) {
            // As above.
        }
    }

    /** The exception and its causes, one line (amqp-client wraps the broker's reason). */
    static String describe(Throwable e) {
        StringBuilder text = new StringBuilder();
        for (Throwable cause = e; cause != null && text.length() < 400; cause = cause.getCause()) {
            if (text.length() > 0) {
                text.append(" <- ");
            }
            text.append(cause.getClass().getSimpleName());
            if (cause.getMessage() != null) {
                text.append(": ").append(cause.getMessage());
            }
        }
        return text.toString();
    }
}
