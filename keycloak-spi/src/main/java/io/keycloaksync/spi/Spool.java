package io.keycloaksync.spi;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.nio.file.attribute.UserPrincipal;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;
import org.jboss.logging.Logger;

/**
 * The append-only disk spool: events that could not be published (broker down, queue
 * full, negative or missing confirm) wait here, in order, until they are confirmed.
 *
 * <p>Segment files {@code segment-N.log} hold one {@link Outgoing} per line; they are only
 * appended to, and a new process always starts a new segment. The read position (segment
 * and byte offset of the first unconfirmed line) is kept in {@code position}; a segment is
 * deleted once every line of it is confirmed. A crash between a confirm and saving the
 * position re-publishes a few events, which consumers absorb by id.
 */
public final class Spool implements Closeable {
    private static final Logger LOG = Logger.getLogger(Spool.class);
    private static final long SEGMENT_BYTES = 8L << 20;

    private final Path dir;
    private final long maxBytes;
    private final SpiSettings.FullPolicy policy;
    private final long blockMillis;
    private final PublisherStats stats;

    /** Segment number → size in bytes. */
    private final TreeMap<Long, Long> segments = new TreeMap<>();
    private long readOffset;
    private FileChannel writer;
    private long writeSegment = -1;
    private long records;
    private boolean unsynced;

    /** Events wait here in clear text: only Keycloak's own user may read them. */
    static final java.util.Set<PosixFilePermission> OWNER_ONLY_DIR = PosixFilePermissions.fromString("rwx------");
    static final java.util.Set<PosixFilePermission> OWNER_ONLY_FILE = PosixFilePermissions.fromString("rw-------");

    /**
     * Creates the directory readable by its owner only, or narrows an existing one to that;
     * refuses one that another user owns (a shared or planted directory).
     */
    static void privateDirectory(Path dir) throws IOException {
        if (!Files.exists(dir)) {
            Files.createDirectories(dir, PosixFilePermissions.asFileAttribute(OWNER_ONLY_DIR));
        }
        UserPrincipal owner = Files.getOwner(dir);
        String self = System.getProperty("user.name");
        if (!owner.getName().equals(self)) {
            throw new IOException("the spool directory " + dir + " belongs to " + owner.getName()
                    + ", not to this process's user " + self + ": give Keycloak a directory of its own (spool-dir)");
        }
        Files.setPosixFilePermissions(dir, OWNER_ONLY_DIR);
    }

    public Spool(Path dir, long maxBytes, SpiSettings.FullPolicy policy, long blockMillis, PublisherStats stats)
            throws IOException {
        this.dir = dir;
        this.maxBytes = maxBytes;
        this.policy = policy;
        this.blockMillis = blockMillis;
        this.stats = stats;
        privateDirectory(dir);
        try (DirectoryStream<Path> files = Files.newDirectoryStream(dir, "segment-*.log")) {
            for (Path file : files) {
                String name = file.getFileName().toString();
                try {
                    long number = Long.parseLong(name.substring(8, name.length() - 4));
                    segments.put(number, Files.size(file));
                } catch (NumberFormatException e) {
                    LOG.warnf("keycloak-sync spool: ignoring unexpected file %s", file);
                }
            }
        }
        readOffset = loadPosition();
        for (Long segment : segments.keySet()) {
            records += countLines(segment, segment.equals(segments.firstKey()) ? readOffset : 0);
        }
        if (records > 0) {
            LOG.infof("keycloak-sync spool: %d events waiting in %s from a previous run", records, dir);
        }
        stats.spool(records, bytes());
    }

    public synchronized boolean isEmpty() {
        return records == 0;
    }

    public synchronized long records() {
        return records;
    }

    /** Bytes waiting (not yet confirmed). */
    public synchronized long bytes() {
        long total = 0;
        for (long size : segments.values()) {
            total += size;
        }
        return total - readOffset;
    }

    /**
     * Appends messages in order. At the cap, {@code BLOCK} waits up to the configured time for
     * room and then drops what does not fit; {@code DROP_OLDEST} deletes the oldest segments.
     * Returns how many of {@code messages} were dropped.
     */
    public synchronized int append(List<Outgoing> messages) throws IOException {
        if (messages.isEmpty()) {
            return 0;
        }
        StringBuilder text = new StringBuilder();
        for (Outgoing message : messages) {
            text.append(message.toSpoolLine());
        }
        byte[] bytes = text.toString().getBytes(StandardCharsets.UTF_8);
        if (!makeRoom(bytes.length)) {
            stats.dropped(messages.size());
            LOG.errorf("keycloak-sync spool full (%d bytes, spoolMaxBytes %d): %d events dropped", bytes(), maxBytes,
                    messages.size());
            return messages.size();
        }
        if (writer == null || segments.getOrDefault(writeSegment, 0L) >= SEGMENT_BYTES) {
            openNewSegment();
        }
        ByteBuffer buffer = ByteBuffer.wrap(bytes);
        while (buffer.hasRemaining()) {
            writer.write(buffer);
        }
        segments.merge(writeSegment, (long) bytes.length, Long::sum);
        records += messages.size();
        unsynced = true;
        stats.spooled(messages.size());
        stats.spool(records, bytes());
        return 0;
    }

    private boolean makeRoom(long needed) throws IOException {
        if (needed > maxBytes) {
            return false;
        }
        if (policy == SpiSettings.FullPolicy.DROP_OLDEST) {
            while (bytes() + needed > maxBytes && !segments.isEmpty()) {
                dropOldestSegment();
            }
            return bytes() + needed <= maxBytes;
        }
        long deadline = System.nanoTime() + blockMillis * 1_000_000L;
        while (bytes() + needed > maxBytes) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                return false;
            }
            try {
                wait(Math.max(1, left / 1_000_000L));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return false;
            }
        }
        return true;
    }

    private void dropOldestSegment() throws IOException {
        long oldest = segments.firstKey();
        if (oldest == writeSegment) {
            closeWriter();
        }
        long lost = countLines(oldest, readOffset);
        Files.deleteIfExists(segmentPath(oldest));
        segments.remove(oldest);
        readOffset = 0;
        savePosition();
        records -= lost;
        stats.dropped(lost);
        LOG.errorf("keycloak-sync spool full (spoolMaxBytes %d, policy drop-oldest): %d oldest events dropped",
                maxBytes, lost);
    }

    /** Messages read from the spool, and where from, so that confirming them is exact. */
    public static final class Peeked {
        /** Oldest first; lines that cannot be read (a torn write) are left out. */
        public final List<Outgoing> messages = new ArrayList<>();
        int lines;
        long segment;
        long offset;
    }

    /** Up to {@code max} lines from the read position, oldest first, not removed. */
    public synchronized Peeked peek(int max) throws IOException {
        Peeked peeked = new Peeked();
        peeked.segment = segments.isEmpty() ? 0 : segments.firstKey();
        peeked.offset = readOffset;
        long offset = readOffset;
        for (Long segment : segments.keySet()) {
            if (peeked.lines >= max) {
                break;
            }
            for (String line : readLines(segment, offset, max - peeked.lines)) {
                peeked.lines++;
                if (line == null) {
                    LOG.warnf("keycloak-sync spool: skipping a torn line at the end of segment %d", segment);
                    continue;
                }
                try {
                    peeked.messages.add(Outgoing.fromSpoolLine(line));
                } catch (IllegalArgumentException e) {
                    LOG.warnf("keycloak-sync spool: skipping an unreadable line in segment %d (%s)", segment,
                            e.getMessage());
                }
            }
            offset = 0;
        }
        return peeked;
    }

    /**
     * Removes what {@code peeked} read, unless the spool dropped it meanwhile (drop-oldest at
     * the cap), in which case nothing else may be removed in its place.
     */
    public synchronized void confirm(Peeked peeked) throws IOException {
        long first = segments.isEmpty() ? 0 : segments.firstKey();
        if (first != peeked.segment || readOffset != peeked.offset) {
            return;
        }
        int left = peeked.lines;
        while (left > 0 && !segments.isEmpty()) {
            long segment = segments.firstKey();
            List<Integer> lengths = lineLengths(segment, readOffset, left);
            for (int length : lengths) {
                readOffset += length;
            }
            left -= lengths.size();
            records -= lengths.size();
            boolean finished = readOffset >= segments.get(segment);
            if (finished && segment != writeSegment) {
                Files.deleteIfExists(segmentPath(segment));
                segments.remove(segment);
                readOffset = 0;
            } else if (finished) {
                // The segment being written is drained: start afresh.
                closeWriter();
                Files.deleteIfExists(segmentPath(segment));
                segments.remove(segment);
                readOffset = 0;
            }
            if (lengths.isEmpty()) {
                break;
            }
        }
        savePosition();
        stats.spool(records, bytes());
        notifyAll();
    }

    /** Makes appended data durable (called by the publisher thread, batched). */
    public synchronized void sync() throws IOException {
        if (unsynced && writer != null) {
            writer.force(false);
        }
        unsynced = false;
    }

    @Override
    public synchronized void close() throws IOException {
        sync();
        closeWriter();
        savePosition();
    }

    private void openNewSegment() throws IOException {
        closeWriter();
        writeSegment = segments.isEmpty() ? 1 : segments.lastKey() + 1;
        writer = FileChannel.open(segmentPath(writeSegment),
                java.util.Set.of(StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE, StandardOpenOption.APPEND),
                PosixFilePermissions.asFileAttribute(OWNER_ONLY_FILE));
        segments.put(writeSegment, 0L);
    }

    private void closeWriter() throws IOException {
        if (writer != null) {
            writer.force(false);
            writer.close();
            writer = null;
            writeSegment = -1;
        }
    }

    private Path segmentPath(long segment) {
        return dir.resolve("segment-" + segment + ".log");
    }

    /** Lines as text; {@code null} for an unterminated tail. */
    private List<String> readLines(long segment, long offset, int max) throws IOException {
        List<String> lines = new ArrayList<>();
        scan(segment, offset, max, (start, end, bytes, whole) -> lines.add(
                whole ? new String(bytes, StandardCharsets.UTF_8) : null));
        return lines;
    }

    private List<Integer> lineLengths(long segment, long offset, int max) throws IOException {
        List<Integer> lengths = new ArrayList<>();
        scan(segment, offset, max, (start, end, bytes, whole) -> lengths.add((int) (end - start)));
        return lengths;
    }

    private long countLines(long segment, long offset) throws IOException {
        long[] count = {0};
        scan(segment, offset, Integer.MAX_VALUE, (start, end, bytes, whole) -> count[0]++);
        return count[0];
    }

    private interface LineSink {
        /** A line from {@code start} to {@code end}; {@code whole}: it ends in a newline. */
        void line(long start, long end, byte[] text, boolean whole);
    }

    /** Reads complete lines; an unterminated tail (a torn write) counts as one line. */
    private void scan(long segment, long offset, int max, LineSink sink) throws IOException {
        Path path = segmentPath(segment);
        if (!Files.exists(path) || max <= 0) {
            return;
        }
        try (FileChannel channel = FileChannel.open(path, StandardOpenOption.READ)) {
            long size = channel.size();
            long position = offset;
            int found = 0;
            ByteBuffer buffer = ByteBuffer.allocate(64 * 1024);
            java.io.ByteArrayOutputStream current = new java.io.ByteArrayOutputStream();
            long lineStart = position;
            while (position < size && found < max) {
                buffer.clear();
                int read = channel.read(buffer, position);
                if (read <= 0) {
                    break;
                }
                buffer.flip();
                for (int i = 0; i < read && found < max; i++) {
                    byte b = buffer.get(i);
                    if (b == '\n') {
                        sink.line(lineStart, position + i + 1, current.toByteArray(), true);
                        current.reset();
                        lineStart = position + i + 1;
                        found++;
                    } else {
                        current.write(b);
                    }
                }
                position += read;
            }
            if (found < max && current.size() > 0 && lineStart < size && segment != writeSegment) {
                sink.line(lineStart, size, current.toByteArray(), false);
            }
        }
    }

    private long loadPosition() throws IOException {
        Path file = dir.resolve("position");
        if (!Files.exists(file) || segments.isEmpty()) {
            return 0;
        }
        String[] parts = new String(Files.readAllBytes(file), StandardCharsets.UTF_8).trim().split(" ");
        try {
            long segment = Long.parseLong(parts[0]);
            long offset = Long.parseLong(parts[1]);
            if (segment == segments.firstKey() && offset <= segments.get(segment)) {
                return offset;
            }
        } catch (RuntimeException e) {
            LOG.warnf("keycloak-sync spool: unreadable position file; starting at the oldest segment");
        }
        return 0;
    }

    private void savePosition() throws IOException {
        Path file = dir.resolve("position");
        Path temp = dir.resolve("position.tmp");
        long segment = segments.isEmpty() ? 0 : segments.firstKey();
        Files.deleteIfExists(temp);
        Files.createFile(temp, PosixFilePermissions.asFileAttribute(OWNER_ONLY_FILE));
        Files.write(temp, (segment + " " + readOffset + "\n").getBytes(StandardCharsets.UTF_8));
        Files.move(temp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
}
