package io.keycloaksync.spi;

import jakarta.persistence.Column;
import jakarta.persistence.Entity;
import jakarta.persistence.GeneratedValue;
import jakarta.persistence.GenerationType;
import jakarta.persistence.Id;
import jakarta.persistence.SequenceGenerator;
import jakarta.persistence.Table;
import java.nio.charset.StandardCharsets;

/**
 * One event waiting in Keycloak's database ({@code KCS_OUTBOX}, created by the provider's
 * Liquibase changelog): written in the transaction of the change that caused it, deleted by
 * the relay once the broker confirmed it. {@code SEQ} orders it: a sequence value taken one
 * at a time, so that events of one user on several nodes still line up in the order they
 * were written.
 */
@Entity
@Table(name = "KCS_OUTBOX")
public class OutboxEntity {
    @Id
    @Column(name = "SEQ")
    @SequenceGenerator(name = "kcsOutboxSeq", sequenceName = "KCS_OUTBOX_SEQ", allocationSize = 1)
    @GeneratedValue(strategy = GenerationType.SEQUENCE, generator = "kcsOutboxSeq")
    private Long seq;

    @Column(name = "EVENT_ID", nullable = false, length = 64)
    private String eventId;

    @Column(name = "ROUTING_KEY", nullable = false, length = 255)
    private String routingKey;

    @Column(name = "TYPE", nullable = false, length = 255)
    private String type;

    /** The event's own time (epoch milliseconds). */
    @Column(name = "EVENT_TIME", nullable = false)
    private long eventTime;

    /** When the row was written (epoch milliseconds): the outbox's age is measured from it. */
    @Column(name = "CREATED_AT", nullable = false)
    private long createdAt;

    /** Not before this time (epoch milliseconds): a row the broker returned as unroutable waits. */
    @Column(name = "RETRY_AT", nullable = false)
    private long retryAt;

    @Column(name = "BODY", nullable = false)
    private String body;

    public OutboxEntity() {
    }

    OutboxEntity(Outgoing message, long now) {
        this.eventId = message.id;
        this.routingKey = message.routingKey;
        this.type = message.type;
        this.eventTime = message.time;
        this.createdAt = now;
        this.retryAt = 0;
        this.body = message.bodyText();
    }

    Outgoing toOutgoing() {
        return new Outgoing(eventId, eventTime, routingKey, type, body.getBytes(StandardCharsets.UTF_8));
    }

    Long getSeq() {
        return seq;
    }

    String getEventId() {
        return eventId;
    }

    long getCreatedAt() {
        return createdAt;
    }

    void retryAt(long when) {
        this.retryAt = when;
    }
}
