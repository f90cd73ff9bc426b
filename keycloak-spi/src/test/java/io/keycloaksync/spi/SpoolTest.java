package io.keycloaksync.spi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SpoolTest {
    @TempDir
    Path dir;

    static Outgoing message(int n) {
        String body = "{\"schema\":1,\"kind\":\"user\",\"id\":\"m" + n + "\",\"n\":" + n + "}";
        return new Outgoing("m" + n, 1_000L + n, "kc.acme.user.LOGIN", "user.LOGIN",
                body.getBytes(StandardCharsets.UTF_8));
    }

    static List<Outgoing> messages(int from, int to) {
        return IntStream.range(from, to).mapToObj(SpoolTest::message).collect(Collectors.toList());
    }

    static List<String> ids(List<Outgoing> messages) {
        return messages.stream().map(m -> m.id).collect(Collectors.toList());
    }

    private Spool spool(long max, SpiSettings.FullPolicy policy) throws IOException {
        return new Spool(dir, max, policy, 50, new PublisherStats());
    }

    @Test
    void theSpoolIsItsOwnersOnly() throws IOException {
        Path dir = Files.createTempDirectory("kcs-spool-perm").resolve("spool");
        try (Spool spool = new Spool(dir, 1 << 20, SpiSettings.FullPolicy.DROP_OLDEST, 0, new PublisherStats())) {
            spool.append(java.util.List.of(new Outgoing("m", 1, "k", "t", "{}".getBytes(java.nio.charset.StandardCharsets.UTF_8))));
        }
        assertEquals("rwx------", java.nio.file.attribute.PosixFilePermissions.toString(Files.getPosixFilePermissions(dir)));
        try (java.util.stream.Stream<Path> files = Files.list(dir)) {
            for (Path file : (Iterable<Path>) files::iterator) {
                assertEquals("rw-------",
                        java.nio.file.attribute.PosixFilePermissions.toString(Files.getPosixFilePermissions(file)),
                        file.toString());
            }
        }
        // An existing directory open to others is narrowed.
        Files.setPosixFilePermissions(dir, java.nio.file.attribute.PosixFilePermissions.fromString("rwxrwxrwx"));
        Spool.privateDirectory(dir);
        assertEquals("rwx------", java.nio.file.attribute.PosixFilePermissions.toString(Files.getPosixFilePermissions(dir)));
    }

    @Test
    void messagesComeBackInOrderAndLeaveOnlyWhenConfirmed() throws IOException {
        Spool spool = spool(1 << 20, SpiSettings.FullPolicy.BLOCK);
        spool.append(messages(0, 5));
        spool.append(messages(5, 8));
        Spool.Peeked first = spool.peek(3);
        assertEquals(List.of("m0", "m1", "m2"), ids(first.messages));
        assertEquals(List.of("m0", "m1", "m2"), ids(spool.peek(3).messages), "peeking removes nothing");
        spool.confirm(first);
        assertEquals(5, spool.records());
        Spool.Peeked rest = spool.peek(100);
        assertEquals(List.of("m3", "m4", "m5", "m6", "m7"), ids(rest.messages));
        spool.confirm(rest);
        assertTrue(spool.isEmpty());
        assertEquals(0, spool.bytes());
    }

    @Test
    void aNewProcessResumesWhereTheLastConfirmStopped() throws IOException {
        Spool spool = spool(1 << 20, SpiSettings.FullPolicy.BLOCK);
        spool.append(messages(0, 10));
        spool.confirm(spool.peek(4));
        spool.close();
        Spool reopened = spool(1 << 20, SpiSettings.FullPolicy.BLOCK);
        assertEquals(6, reopened.records());
        reopened.append(messages(10, 12));
        assertEquals(List.of("m4", "m5", "m6", "m7", "m8", "m9", "m10", "m11"), ids(reopened.peek(100).messages));
    }

    @Test
    void aTornLastLineFromACrashIsSkipped() throws IOException {
        Spool spool = spool(1 << 20, SpiSettings.FullPolicy.BLOCK);
        spool.append(messages(0, 2));
        spool.close();
        Path segment = Files.list(dir).filter(p -> p.getFileName().toString().startsWith("segment-")).findFirst()
                .orElseThrow();
        Files.write(segment, "kc.acme.user.LOGIN\tuser.LOGIN\tm2\t10".getBytes(StandardCharsets.UTF_8),
                StandardOpenOption.APPEND);
        Spool reopened = spool(1 << 20, SpiSettings.FullPolicy.BLOCK);
        Spool.Peeked peeked = reopened.peek(100);
        assertEquals(List.of("m0", "m1"), ids(peeked.messages));
        reopened.confirm(peeked);
        assertTrue(reopened.isEmpty());
    }

    @Test
    void atTheCapBlockWaitsBrieflyThenDropsTheNewEvents() throws IOException {
        PublisherStats stats = new PublisherStats();
        Spool spool = new Spool(dir, 1 << 16, SpiSettings.FullPolicy.BLOCK, 50, stats);
        int accepted = 0;
        while (spool.append(List.of(message(accepted))) == 0) {
            accepted++;
        }
        assertTrue(accepted > 100 && spool.bytes() <= 1 << 16, "filled up to the cap: " + accepted);
        long started = System.nanoTime();
        assertEquals(1, spool.append(List.of(message(99_999))));
        long waitedMillis = (System.nanoTime() - started) / 1_000_000;
        assertTrue(waitedMillis >= 45 && waitedMillis < 1_000, "blocked " + waitedMillis + " ms");
        assertEquals(2, stats.getDropped());
        assertEquals(List.of("m0"), ids(spool.peek(1).messages), "the oldest are kept");

        // Room made by a confirm lets a blocked writer in.
        spool.confirm(spool.peek(10));
        assertEquals(0, spool.append(List.of(message(100_000))));
    }

    @Test
    void atTheCapDropOldestMakesRoomForTheNew() throws IOException {
        PublisherStats stats = new PublisherStats();
        Spool spool = new Spool(dir, 1 << 16, SpiSettings.FullPolicy.DROP_OLDEST, 0, stats);
        List<Outgoing> all = new ArrayList<>();
        for (int i = 0; i < 2_000; i++) {
            all.add(message(i));
            assertEquals(0, spool.append(List.of(message(i))));
        }
        assertTrue(spool.bytes() <= 1 << 16);
        assertTrue(stats.getDropped() > 0);
        List<Outgoing> kept = spool.peek(10_000).messages;
        assertEquals("m1999", kept.get(kept.size() - 1).id, "the newest are kept");
        assertEquals(2_000 - stats.getDropped(), kept.size());
    }
}
