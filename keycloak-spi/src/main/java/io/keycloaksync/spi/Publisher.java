package io.keycloaksync.spi;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
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
    private static final long SYNC_EVERY_MILLIS = 200;

    private final SpiSettings settings;
    private final PublisherStats stats;
    private final BrokerLink link;
    private final ArrayBlockingQueue<Outgoing> queue;
    private final Spool spool;
    private final Thread thread;
    private final Object overflow = new Object();

    private volatile boolean running = true;
    private long retryReturnedAt;

    public Publisher(SpiSettings settings, PublisherStats stats) throws IOException {
        this.settings = settings;
        this.stats = stats;
        this.link = new BrokerLink(settings, "the spool in " + settings.spoolDir, stats::connected);
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
                link.disconnect();
                appendToSpool(batch);
                pause(1_000);
            }
            if (System.nanoTime() - lastSync > SYNC_EVERY_MILLIS * 1_000_000L) {
                syncSpool();
                lastSync = System.nanoTime();
            }
        }
        syncSpool();
        link.disconnect();
    }

    /** One round: the batch out (or to the spool), then the spool's turn. */
    private void step(List<Outgoing> batch, boolean stopping) {
        // Stopping, no new connection is tried: what cannot go out now goes to the spool.
        boolean up = stopping ? link.isOpen() : link.connected();
        if (!batch.isEmpty()) {
            if (up && spool.isEmpty()) {
                BrokerLink.Delivery delivery = publish(batch);
                if (!delivery.ok) {
                    appendToSpool(batch);
                } else if (!delivery.returned.isEmpty()) {
                    appendToSpool(delivery.returned);
                }
            } else {
                appendToSpool(batch);
            }
        }
        if (!stopping && link.connected() && !spool.isEmpty() && System.currentTimeMillis() >= retryReturnedAt) {
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
        for (int round = 0; round < 20 && link.connected() && !spool.isEmpty(); round++) {
            Spool.Peeked peeked;
            try {
                peeked = spool.peek(settings.batchSize);
            } catch (IOException e) {
                LOG.errorf("keycloak-sync: cannot read the spool in %s: %s", settings.spoolDir, e.getMessage());
                return;
            }
            BrokerLink.Delivery delivery = peeked.messages.isEmpty() ? BrokerLink.Delivery.delivered(Collections.emptyList())
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

    /** Publishes a batch; counts what was confirmed and holds back returned ones a while. */
    private BrokerLink.Delivery publish(List<Outgoing> batch) {
        BrokerLink.Delivery delivery = link.publish(batch);
        if (delivery.ok) {
            if (!delivery.returned.isEmpty()) {
                stats.returned(delivery.returned.size());
                retryReturnedAt = System.currentTimeMillis() + BrokerLink.RETURNED_RETRY_MILLIS;
            }
            stats.confirmed(batch.size() - delivery.returned.size());
        }
        return delivery;
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
