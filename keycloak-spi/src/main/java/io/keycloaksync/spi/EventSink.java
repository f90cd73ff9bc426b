package io.keycloaksync.spi;

import java.util.List;

/** Where committed events are handed over; the {@link Publisher} in production. */
public interface EventSink {
    /** Takes the events without waiting for the broker. */
    void submit(List<Outgoing> messages);
}
