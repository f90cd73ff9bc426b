package io.keycloaksync.spi;

import jakarta.persistence.Column;
import jakarta.persistence.Entity;
import jakarta.persistence.Id;
import jakarta.persistence.Table;

/**
 * The relay's claim ({@code KCS_OUTBOX_RELAY}, one row): the node that holds this row's lock
 * is the one publishing, so nodes sharing a database never publish the same rows twice or
 * out of order. The lock lives as long as the relaying transaction: a node that dies loses
 * its connection, and with it the claim. The columns say who relayed last and when.
 */
@Entity
@Table(name = "KCS_OUTBOX_RELAY")
public class OutboxRelayEntity {
    static final String ROW = "relay";

    @Id
    @Column(name = "ID", length = 36)
    private String id;

    @Column(name = "OWNER", length = 255)
    private String owner;

    @Column(name = "RELAYED_AT", nullable = false)
    private long relayedAt;

    public OutboxRelayEntity() {
    }

    void relayed(String node, long now) {
        this.owner = node;
        this.relayedAt = now;
    }
}
