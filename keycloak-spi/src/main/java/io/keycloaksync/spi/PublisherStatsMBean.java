package io.keycloaksync.spi;

/** The publisher's counters over JMX ({@code io.keycloaksync:type=Publisher}). */
public interface PublisherStatsMBean {
    long getEnqueued();

    long getConfirmed();

    long getSpooled();

    long getDropped();

    long getReturned();

    long getSpoolRecords();

    long getSpoolBytes();

    int getQueueDepth();

    boolean isConnected();

    /** Outbox rows this node published and deleted. */
    long getOutboxRelayed();

    /** Rows in the outbox (all nodes'), measured every 5 s. */
    long getOutboxDepth();

    /** Age of the oldest row in the outbox, 0 when it is empty. */
    long getOutboxOldestAgeMillis();

    /** Whether this node held the relay claim at its last round. */
    boolean isOutboxRelaying();
}
