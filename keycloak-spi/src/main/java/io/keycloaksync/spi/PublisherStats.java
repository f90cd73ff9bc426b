package io.keycloaksync.spi;

import java.lang.management.ManagementFactory;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.IntSupplier;
import javax.management.MBeanServer;
import javax.management.ObjectName;
import org.jboss.logging.Logger;

/** Counters of what happened to events; registered as an MBean so they can be scraped. */
public final class PublisherStats implements PublisherStatsMBean {
    private static final Logger LOG = Logger.getLogger(PublisherStats.class);

    private final AtomicLong enqueued = new AtomicLong();
    private final AtomicLong confirmed = new AtomicLong();
    private final AtomicLong spooled = new AtomicLong();
    private final AtomicLong dropped = new AtomicLong();
    private final AtomicLong returned = new AtomicLong();
    private final AtomicLong spoolRecords = new AtomicLong();
    private final AtomicLong spoolBytes = new AtomicLong();
    private final AtomicBoolean connected = new AtomicBoolean();
    private final AtomicLong relayed = new AtomicLong();
    private final AtomicLong outboxDepth = new AtomicLong();
    private final AtomicLong outboxOldestAge = new AtomicLong();
    private final AtomicBoolean outboxRelaying = new AtomicBoolean();
    private volatile IntSupplier queueDepth = () -> 0;
    private ObjectName registered;

    void enqueued(long n) {
        enqueued.addAndGet(n);
    }

    void confirmed(long n) {
        confirmed.addAndGet(n);
    }

    void spooled(long n) {
        spooled.addAndGet(n);
    }

    void dropped(long n) {
        dropped.addAndGet(n);
    }

    void returned(long n) {
        returned.addAndGet(n);
    }

    void spool(long records, long bytes) {
        spoolRecords.set(records);
        spoolBytes.set(bytes);
    }

    void connected(boolean up) {
        connected.set(up);
    }

    void relayed(long n) {
        relayed.addAndGet(n);
    }

    void outbox(long depth, long oldestAgeMillis) {
        outboxDepth.set(depth);
        outboxOldestAge.set(oldestAgeMillis);
    }

    void outboxRelaying(boolean relaying) {
        outboxRelaying.set(relaying);
    }

    void queueDepth(IntSupplier depth) {
        this.queueDepth = depth;
    }

    @Override
    public long getEnqueued() {
        return enqueued.get();
    }

    @Override
    public long getConfirmed() {
        return confirmed.get();
    }

    @Override
    public long getSpooled() {
        return spooled.get();
    }

    @Override
    public long getDropped() {
        return dropped.get();
    }

    @Override
    public long getReturned() {
        return returned.get();
    }

    @Override
    public long getSpoolRecords() {
        return spoolRecords.get();
    }

    @Override
    public long getSpoolBytes() {
        return spoolBytes.get();
    }

    @Override
    public int getQueueDepth() {
        return queueDepth.getAsInt();
    }

    @Override
    public boolean isConnected() {
        return connected.get();
    }

    @Override
    public long getOutboxRelayed() {
        return relayed.get();
    }

    @Override
    public long getOutboxDepth() {
        return outboxDepth.get();
    }

    @Override
    public long getOutboxOldestAgeMillis() {
        return outboxOldestAge.get();
    }

    @Override
    public boolean isOutboxRelaying() {
        return outboxRelaying.get();
    }

    void register() {
        try {
            MBeanServer server = ManagementFactory.getPlatformMBeanServer();
            ObjectName name = new ObjectName("io.keycloaksync:type=Publisher");
            if (server.isRegistered(name)) {
                server.unregisterMBean(name);
            }
            server.registerMBean(this, name);
            registered = name;
        } catch (Exception e) {
            LOG.warnf("keycloak-sync: publisher counters not registered over JMX: %s", e.toString());
        }
    }

    void unregister() {
        if (registered == null) {
            return;
        }
        try {
            ManagementFactory.getPlatformMBeanServer().unregisterMBean(registered);
        } catch (Exception e) {
            LOG.debugf("keycloak-sync: unregistering the MBean: %s", e.toString());
        }
        registered = null;
    }
}
