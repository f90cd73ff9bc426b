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
}
