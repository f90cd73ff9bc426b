package io.keycloaksync.spi;

import java.nio.charset.StandardCharsets;

/**
 * One message ready to publish: the envelope and the AMQP fields derived from it. Its spool
 * form is one line, {@code routingKey TAB type TAB id TAB time TAB body}; the compact JSON
 * body never holds a tab or a newline.
 */
public final class Outgoing {
    public final String id;
    public final long time;
    public final String routingKey;
    /** The AMQP {@code type} property: {@code user.LOGIN}, {@code admin.USER.UPDATE}. */
    public final String type;
    public final byte[] body;

    public Outgoing(String id, long time, String routingKey, String type, byte[] body) {
        this.id = id;
        this.time = time;
        this.routingKey = routingKey;
        this.type = type;
        this.body = body;
    }

    public String bodyText() {
        return new String(body, StandardCharsets.UTF_8);
    }

    String toSpoolLine() {
        return routingKey + '\t' + type + '\t' + id + '\t' + time + '\t' + bodyText() + '\n';
    }

    /** Reads a spool line (without its newline). */
    static Outgoing fromSpoolLine(String line) {
        String[] parts = line.split("\t", 5);
        if (parts.length != 5) {
            throw new IllegalArgumentException("spool line has " + parts.length + " fields, expected 5");
        }
        long time;
        try {
            time = Long.parseLong(parts[3]);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("spool line has a bad time field");
        }
        return new Outgoing(parts[2], time, parts[0], parts[1], parts[4].getBytes(StandardCharsets.UTF_8));
    }
}
