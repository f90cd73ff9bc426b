package io.keycloaksync.spi;

import jakarta.persistence.EntityManager;
import jakarta.persistence.LockModeType;
import java.net.InetAddress;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import org.jboss.logging.Logger;
import org.keycloak.connections.jpa.JpaConnectionProvider;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.models.utils.KeycloakModelUtils;

/**
 * Publishes the outbox ({@link OutboxEntity}) oldest first, with confirms, and deletes each
 * row only once the broker confirmed it, in the transaction that claimed the relay.
 *
 * <p>One thread per Keycloak node. It is woken by every commit on its node that wrote
 * outbox rows, and looks again every {@code outboxPollMillis} for rows other nodes wrote.
 * Each round runs in a Keycloak transaction that first locks the one row of
 * {@link OutboxRelayEntity}, skipping it if another node holds it: one node relays at a
 * time, so rows are never published twice by two live nodes nor overtaken, and a node that
 * dies takes its lock with it (its connection closes), the next round of another node
 * taking over. Whatever the dead node had published but not yet deleted goes out once more;
 * consumers absorb it by the event's id.
 */
final class OutboxRelay implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(OutboxRelay.class);
    /** Hibernate's lock timeout hint value for {@code SKIP LOCKED}. */
    private static final int SKIP_LOCKED = -2;
    private static final String LOCK_TIMEOUT = "jakarta.persistence.lock.timeout";
    private static final long MEASURE_EVERY_MILLIS = 5_000;
    private static final long WARN_AGE_MILLIS = 60_000;
    private static final long BUSY_RETRY_MILLIS = 25;
    /** {@link #relayOnce()}'s answer when another node held the claim. */
    static final int CLAIMED_ELSEWHERE = -1;

    private final SpiSettings settings;
    private final PublisherStats stats;
    private final KeycloakSessionFactory factory;
    private final BrokerLink link;
    private final Thread thread;
    private final Semaphore wake = new Semaphore(0);
    private final String node = nodeName();
    private final long pollMillis;
    private volatile boolean running = true;
    private long measuredAt;
    private boolean warnedOld;
    private long failingSince;

    OutboxRelay(SpiSettings settings, PublisherStats stats, KeycloakSessionFactory factory) {
        this.settings = settings;
        this.stats = stats;
        this.factory = factory;
        this.link = new BrokerLink(settings, "the outbox", up -> {
        });
        // With direct delivery only rows left from an earlier outbox run are expected.
        this.pollMillis = settings.delivery == SpiSettings.Delivery.OUTBOX ? settings.outboxPollMillis
                : Math.max(settings.outboxPollMillis, 10_000);
        this.thread = new Thread(this::run, "keycloak-sync-outbox-relay");
        this.thread.setDaemon(true);
    }

    void start() {
        thread.start();
    }

    /** A commit wrote outbox rows: relay now rather than at the next poll. */
    void wake() {
        if (wake.availablePermits() == 0) {
            wake.release();
        }
    }

    private void run() {
        long wait = pollMillis;
        while (running) {
            try {
                wake.tryAcquire(wait, TimeUnit.MILLISECONDS);
                wake.drainPermits();
            } catch (InterruptedException e) {
                break;
            }
            if (!running) {
                break;
            }
            wait = pollMillis;
            try {
                int moved;
                do {
                    moved = relayOnce();
                } while (moved >= settings.batchSize && running);
                if (moved == CLAIMED_ELSEWHERE) {
                    // Another node is mid-round and may have read its rows before this
                    // node's commit: look again soon rather than at the next poll.
                    wait = Math.min(pollMillis, BUSY_RETRY_MILLIS);
                }
                failingSince = 0;
                measure();
            } catch (RuntimeException | LinkageError e) {
                // Keycloak's database away, shutting down, a broken client: the rows stay, the
                // next round tries again.
                if (failingSince == 0) {
                    failingSince = System.currentTimeMillis();
                    LOG.warnf("keycloak-sync: outbox relay round failed (%s); the events stay in the outbox and are retried",
                            BrokerLink.describe(e));
                } else {
                    LOG.debugf("keycloak-sync: outbox relay round failed again (%s)", BrokerLink.describe(e));
                }
                pause(1_000);
            }
        }
        link.disconnect();
    }

    /**
     * One batch: claimed, published, deleted. How many rows it handled: 0 when there was
     * nothing to do or the broker is away, {@link #CLAIMED_ELSEWHERE} when another node relays.
     */
    int relayOnce() {
        if (!link.connected()) {
            return 0;
        }
        Integer moved = KeycloakModelUtils.runJobInTransactionWithResult(factory, this::relayIn);
        return moved == null ? 0 : moved;
    }

    private int relayIn(KeycloakSession session) {
        EntityManager em = session.getProvider(JpaConnectionProvider.class).getEntityManager();
        OutboxRelayEntity claim = em.find(OutboxRelayEntity.class, OutboxRelayEntity.ROW, LockModeType.PESSIMISTIC_WRITE,
                Map.of(LOCK_TIMEOUT, SKIP_LOCKED));
        if (claim == null) {
            // Another node relays now.
            stats.outboxRelaying(false);
            return CLAIMED_ELSEWHERE;
        }
        stats.outboxRelaying(true);
        long now = System.currentTimeMillis();
        List<OutboxEntity> rows = em
                .createQuery("SELECT o FROM OutboxEntity o WHERE o.retryAt <= :now ORDER BY o.seq", OutboxEntity.class)
                .setParameter("now", now)
                .setMaxResults(settings.batchSize)
                .getResultList();
        if (rows.isEmpty()) {
            return 0;
        }
        List<Outgoing> batch = new ArrayList<>(rows.size());
        for (OutboxEntity row : rows) {
            batch.add(row.toOutgoing());
        }
        BrokerLink.Delivery delivery = link.publish(batch);
        if (!delivery.ok) {
            session.getTransactionManager().setRollbackOnly();
            return 0;
        }
        Set<String> unroutable = new HashSet<>();
        delivery.returned.forEach(m -> unroutable.add(m.id));
        List<Long> done = new ArrayList<>(rows.size());
        for (OutboxEntity row : rows) {
            if (unroutable.contains(row.getEventId())) {
                row.retryAt(now + BrokerLink.RETURNED_RETRY_MILLIS);
            } else {
                done.add(row.getSeq());
            }
        }
        if (!done.isEmpty()) {
            em.createQuery("DELETE FROM OutboxEntity o WHERE o.seq IN :seqs").setParameter("seqs", done).executeUpdate();
        }
        claim.relayed(node, now);
        stats.relayed(done.size());
        stats.returned(unroutable.size());
        return rows.size();
    }

    /** The outbox's depth and the age of its oldest row, for the MBean and, when it grows old, the log. */
    private void measure() {
        long now = System.currentTimeMillis();
        if (now - measuredAt < MEASURE_EVERY_MILLIS) {
            return;
        }
        measuredAt = now;
        Object[] result = KeycloakModelUtils.runJobInTransactionWithResult(factory, session -> session
                .getProvider(JpaConnectionProvider.class).getEntityManager()
                .createQuery("SELECT COUNT(o), MIN(o.createdAt) FROM OutboxEntity o", Object[].class)
                .getSingleResult());
        long depth = result == null || result[0] == null ? 0 : ((Number) result[0]).longValue();
        long oldest = result == null || result[1] == null ? now : ((Number) result[1]).longValue();
        long age = depth == 0 ? 0 : Math.max(0, now - oldest);
        stats.outbox(depth, age);
        if (age > WARN_AGE_MILLIS && !warnedOld) {
            warnedOld = true;
            LOG.warnf("keycloak-sync: the outbox holds %d events, the oldest %d s old: %s", depth, age / 1_000,
                    link.isOpen() ? "another node may hold the relay claim" : "RabbitMQ is unreachable");
        } else if (depth == 0 && warnedOld) {
            warnedOld = false;
            LOG.infof("keycloak-sync: the outbox is empty again");
        }
    }

    private static void pause(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static String nodeName() {
        String host;
        try {
            host = InetAddress.getLocalHost().getHostName();
        } catch (Exception e) {
            host = "unknown-host";
        }
        String name = host + "/" + ProcessHandle.current().pid();
        return name.length() > 255 ? name.substring(0, 255) : name;
    }

    /** Stops relaying; the rows it did not get to stay in the outbox for the next start. */
    @Override
    public void close() {
        running = false;
        wake();
        try {
            thread.join(settings.shutdownGraceMillis + 5_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
