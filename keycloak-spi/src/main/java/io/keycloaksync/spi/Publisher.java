package io.keycloaksync.spi;

import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Date;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.jboss.logging.Logger;

/**
 * The one background thread that talks to RabbitMQ, with its own connection and channel.
 *
 * <p>Request threads only {@link #submit}: an offer to a bounded in-memory queue, or, when
 * it is full, an append to the disk spool. The thread publishes persistent, mandatory
 * messages with publisher confirms; whatever is not confirmed (broker unreachable, negative
 * confirm, confirm timeout, returned as unroutable) goes to the spool. While the spool holds
 * anything, new events are appended behind it, so they reach the broker in order once it is
 * back; spooled events are removed only after their confirms.
 */
public final class Publisher implements EventSink, AutoCloseable {
    private static final Logger LOG = Logger.getLogger(Publisher.class);
    private static final long MAX_RECONNECT_MILLIS = 30_000;
    private static final long SYNC_EVERY_MILLIS = 200;
    private static final long RETURNED_RETRY_MILLIS = 5_000;

    private final SpiSettings settings;
    private final PublisherStats stats;
    private final AmqpConnector connector;
    private final ArrayBlockingQueue<Outgoing> queue;
    private final Spool spool;
    private final Thread thread;
    private final Object overflow = new Object();
    private final Set<String> returned = ConcurrentHashMap.newKeySet();

    private volatile boolean running = true;
    private Connection connection;
    private Channel channel;
    private long reconnectDelay = 500;
    private long nextConnectAt;
    private long retryReturnedAt;
    private boolean warnedDown;

    public Publisher(SpiSettings settings, PublisherStats stats) throws IOException {
        this.settings = settings;
        this.stats = stats;
        this.connector = new AmqpConnector(settings);
        this.queue = new ArrayBlockingQueue<>(settings.queueCapacity);
        this.spool = new Spool(settings.requireSpoolDir(), settings.spoolMaxBytes, settings.spoolFullPolicy,
                settings.spoolBlockMillis, stats);
        stats.queueDepth(queue::size);
        this.thread = new Thread(this::run, "keycloak-sync-publisher");
        this.thread.setDaemon(true);
    }

    public void start() {
        thread.start();
    }

    /** Hands events over; never waits for the broker. */
    @Override
    public void submit(List<Outgoing> messages) {
        stats.enqueued(messages.size());
        for (Outgoing message : messages) {
            if (!queue.offer(message)) {
                spillOver(message);
            }
        }
    }

    /** The queue is full: what waits in it goes to the spool first, then this, keeping order. */
    private void spillOver(Outgoing message) {
        synchronized (overflow) {
            List<Outgoing> waiting = new ArrayList<>(queue.size() + 1);
            queue.drainTo(waiting);
            waiting.add(message);
            appendToSpool(waiting);
        }
    }

    public Spool spool() {
        return spool;
    }

    private void run() {
        List<Outgoing> batch = new ArrayList<>(settings.batchSize);
        long lastSync = System.nanoTime();
        long deadline = Long.MAX_VALUE;
        while (true) {
            boolean stopping = !running;
            if (stopping && deadline == Long.MAX_VALUE) {
                deadline = System.nanoTime() + settings.shutdownGraceMillis * 1_000_000L;
            }
            batch.clear();
            try {
                take(batch, stopping);
            } catch (InterruptedException e) {
                running = false;
                continue;
            }
            if (stopping && (batch.isEmpty() || System.nanoTime() > deadline)) {
                batch.addAll(drainQueue());
                appendToSpool(batch);
                break;
            }
            try {
                step(batch, stopping);
            } catch (RuntimeException | LinkageError e) {
                // Whatever went wrong (a broken client, a class that no longer loads), the
                // thread goes on: the batch is kept and the next round tries again.
                LOG.errorf(e, "keycloak-sync: publishing failed unexpectedly; %d events kept in the spool", batch.size());
                try {
                    disconnect();
                } catch (RuntimeException | LinkageError again) {
                    channel = null;
                    connection = null;
                }
                appendToSpool(batch);
                pause(1_000);
            }
            if (System.nanoTime() - lastSync > SYNC_EVERY_MILLIS * 1_000_000L) {
                syncSpool();
                lastSync = System.nanoTime();
            }
        }
        syncSpool();
        disconnect();
    }

    /** One round: the batch out (or to the spool), then the spool's turn. */
    private void step(List<Outgoing> batch, boolean stopping) {
        // Stopping, no new connection is tried: what cannot go out now goes to the spool.
        boolean up = stopping ? channel != null && channel.isOpen() : connected();
        if (!batch.isEmpty()) {
            if (up && spool.isEmpty()) {
                Delivery delivery = publish(batch);
                if (!delivery.ok) {
                    appendToSpool(batch);
                } else if (!delivery.returned.isEmpty()) {
                    appendToSpool(delivery.returned);
                }
            } else {
                appendToSpool(batch);
            }
        }
        if (!stopping && connected() && !spool.isEmpty() && System.currentTimeMillis() >= retryReturnedAt) {
            drainSpool();
        }
    }

    private static void pause(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private void take(List<Outgoing> batch, boolean stopping) throws InterruptedException {
        if (stopping) {
            queue.drainTo(batch, settings.batchSize);
            return;
        }
        Outgoing first = queue.poll(50, TimeUnit.MILLISECONDS);
        if (first != null) {
            batch.add(first);
            queue.drainTo(batch, settings.batchSize - 1);
        }
    }

    private List<Outgoing> drainQueue() {
        List<Outgoing> rest = new ArrayList<>();
        queue.drainTo(rest);
        return rest;
    }

    /** Republishes spooled events, oldest first, a batch at a time. */
    private void drainSpool() {
        for (int round = 0; round < 20 && connected() && !spool.isEmpty(); round++) {
            Spool.Peeked peeked;
            try {
                peeked = spool.peek(settings.batchSize);
            } catch (IOException e) {
                LOG.errorf("keycloak-sync: cannot read the spool in %s: %s", settings.spoolDir, e.getMessage());
                return;
            }
            Delivery delivery = peeked.messages.isEmpty() ? Delivery.delivered(Collections.emptyList())
                    : publish(peeked.messages);
            if (!delivery.ok) {
                return;
            }
            try {
                spool.confirm(peeked);
            } catch (IOException e) {
                LOG.errorf("keycloak-sync: cannot record spool progress in %s: %s", settings.spoolDir, e.getMessage());
                return;
            }
            if (!delivery.returned.isEmpty()) {
                appendToSpool(delivery.returned);
                return;
            }
        }
    }

    private static final class Delivery {
        final boolean ok;
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

    /** Publishes a batch and waits for its confirms. */
    private Delivery publish(List<Outgoing> batch) {
        returned.clear();
        try {
            for (Outgoing message : batch) {
                channel.basicPublish(settings.exchange, message.routingKey, true, properties(message), message.body);
            }
            channel.waitForConfirmsOrDie(settings.confirmTimeoutMillis);
        } catch (Exception e) {
            // Which of the batch the broker took is unknown: all of it is kept, and a
            // duplicate is absorbed downstream by its id.
            LOG.warnf("keycloak-sync: %d events not confirmed (%s); they are kept in the spool", batch.size(),
                    describe(e));
            disconnect();
            return Delivery.FAILED;
        }
        List<Outgoing> unroutable = new ArrayList<>();
        if (!returned.isEmpty()) {
            for (Outgoing message : batch) {
                if (returned.contains(message.id)) {
                    unroutable.add(message);
                }
            }
            stats.returned(unroutable.size());
            retryReturnedAt = System.currentTimeMillis() + RETURNED_RETRY_MILLIS;
            LOG.errorf("keycloak-sync: %d events unroutable on exchange %s (first routing key %s): no queue is bound;"
                    + " they are kept in the spool and retried", unroutable.size(), settings.exchange,
                    unroutable.isEmpty() ? "?" : unroutable.get(0).routingKey);
        }
        stats.confirmed(batch.size() - unroutable.size());
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

    private boolean connected() {
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
            stats.connected(true);
            LOG.infof("keycloak-sync: publishing to %s (node %s), exchange %s", settings.redactedUri(),
                    connector.connectedTo(), settings.exchange);
            warnedDown = false;
            return true;
        } catch (Exception e) {
            disconnect();
            nextConnectAt = System.currentTimeMillis() + reconnectDelay;
            if (!warnedDown) {
                LOG.warnf("keycloak-sync: cannot reach RabbitMQ at %s (%s); events go to the spool in %s until it is back",
                        settings.redactedUri(), describe(e), settings.spoolDir);
                warnedDown = true;
            } else {
                LOG.debugf("keycloak-sync: RabbitMQ still unreachable (%s)", describe(e));
            }
            reconnectDelay = Math.min(reconnectDelay * 2, MAX_RECONNECT_MILLIS);
            return false;
        }
    }

    private void disconnect() {
        stats.connected(false);
        Channel oldChannel = channel;
        Connection oldConnection = connection;
        channel = null;
        connection = null;
        try {
            if (oldChannel != null && oldChannel.isOpen()) {
                oldChannel.abort();
            }
        } catch (Exception ignored) {
            // Closing a broken channel: nothing to do.
        }
        if (oldConnection != null) {
            oldConnection.abort(1_000);
        }
    }

    private void appendToSpool(List<Outgoing> messages) {
        if (messages.isEmpty()) {
            return;
        }
        try {
            spool.append(messages);
        } catch (IOException e) {
            stats.dropped(messages.size());
            LOG.errorf("keycloak-sync: %d events lost: cannot write the spool in %s: %s", messages.size(),
                    settings.spoolDir, e.getMessage());
        }
    }

    private void syncSpool() {
        try {
            spool.sync();
        } catch (IOException e) {
            LOG.errorf("keycloak-sync: cannot sync the spool in %s: %s", settings.spoolDir, e.getMessage());
        }
    }

    /** The exception and its causes, one line (amqp-client wraps the broker's reason). */
    private static String describe(Throwable e) {
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

    /** Stops taking events, publishes what it can within the grace time, spools the rest. */
    @Override
    public void close() {
        running = false;
        try {
            thread.join(settings.shutdownGraceMillis + 5_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        synchronized (overflow) {
            appendToSpool(drainQueue());
        }
        try {
            spool.close();
        } catch (IOException e) {
            LOG.errorf("keycloak-sync: closing the spool in %s: %s", settings.spoolDir, e.getMessage());
        }
    }
}
