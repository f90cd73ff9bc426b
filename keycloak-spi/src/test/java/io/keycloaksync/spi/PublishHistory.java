package io.keycloaksync.spi;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Streams a prepared history through the provider's publisher (confirms, spool, failover
 * between {@code amqpAddresses}) at a steady pace, then waits until every message is
 * confirmed and the spool is empty. Used by the cluster test on the Rust side:
 * {@code java … PublishHistory AMQP_URI ADDRESSES EXCHANGE FILE BATCH PAUSE_MILLIS}, where
 * each line of FILE is one message in the spool's line form.
 */
public final class PublishHistory {
    private PublishHistory() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 6) {
            System.err.println("usage: PublishHistory AMQP_URI ADDRESSES EXCHANGE FILE BATCH PAUSE_MILLIS");
            System.exit(2);
        }
        List<Outgoing> messages = new ArrayList<>();
        for (String line : Files.readAllLines(Path.of(args[3]), StandardCharsets.UTF_8)) {
            if (!line.isEmpty()) {
                messages.add(Outgoing.fromSpoolLine(line));
            }
        }
        int batch = Integer.parseInt(args[4]);
        long pause = Long.parseLong(args[5]);
        var factory = new KeycloakSyncEventListenerFactory(Map.of(
                "KEYCLOAK_SYNC_SPI_AMQP_URI", args[0],
                "KEYCLOAK_SYNC_SPI_AMQP_ADDRESSES", args[1],
                "KEYCLOAK_SYNC_SPI_EXCHANGE", args[2],
                "KEYCLOAK_SYNC_SPI_CONFIRM_TIMEOUT_MILLIS", "3000",
                "KEYCLOAK_SYNC_SPI_SPOOL_DIR", Files.createTempDirectory("kcs-cluster-spool-").toString()));
        factory.init(null);
        Publisher publisher = factory.publisher();
        for (int from = 0; from < messages.size(); from += batch) {
            publisher.submit(messages.subList(from, Math.min(messages.size(), from + batch)));
            Thread.sleep(pause);
        }
        PublisherStats stats = factory.stats();
        long deadline = System.currentTimeMillis() + 180_000;
        while (stats.getQueueDepth() > 0 || stats.getSpoolRecords() > 0 || stats.getConfirmed() < messages.size()) {
            if (System.currentTimeMillis() > deadline) {
                System.out.println("gave up: " + stats.getConfirmed() + " confirmed, " + stats.getSpoolRecords()
                        + " spooled");
                System.exit(1);
            }
            Thread.sleep(50);
        }
        System.out.println("published " + messages.size() + ", confirmed " + stats.getConfirmed() + ", spooled "
                + stats.getSpooled());
        factory.close();
    }
}
