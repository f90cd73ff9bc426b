package io.keycloaksync.spi;

import com.rabbitmq.client.Address;
import java.net.URI;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.function.Function;
import java.util.stream.Collectors;

/**
 * The provider's configuration: Keycloak's SPI options
 * ({@code --spi-events-listener--keycloak-sync--amqp-uri=…}), else environment variables
 * ({@code KEYCLOAK_SYNC_SPI_AMQP_URI}), else defaults. {@link #toString()} hides passwords.
 */
public final class SpiSettings {
    /** What happens when the spool reaches its cap. */
    public enum FullPolicy {
        /** Wait up to {@code spoolBlockMillis} for room, then drop the new events. */
        BLOCK,
        /** Delete the oldest spooled events to make room. */
        DROP_OLDEST
    }

    /** How committed events leave Keycloak. */
    public enum Delivery {
        /** A row in Keycloak's database, in the transaction of the change; a relay publishes it. */
        OUTBOX,
        /** Handed to the publisher after the commit: memory, then the disk spool. */
        DIRECT
    }

    public static final String ENV_PREFIX = "KEYCLOAK_SYNC_SPI_";

    /** Every option, as Keycloak's SPI config names it; the README's table lists each. */
    public static final List<String> OPTIONS = SpiOptions.keys();

    public final Delivery delivery;
    public final long outboxPollMillis;
    public final URI amqpUri;
    /**
     * The cluster's nodes, tried in turn (credentials, virtual host and TLS from
     * {@code amqpUri}); by default the host of {@code amqpUri} alone.
     */
    public final List<Address> amqpAddresses;
    public final String exchange;
    public final boolean declareExchange;
    public final int queueCapacity;
    public final int batchSize;
    public final long confirmTimeoutMillis;
    /** Null when neither configured nor inside Keycloak: the publisher then refuses to start. */
    public final Path spoolDir;
    public final long spoolMaxBytes;
    public final FullPolicy spoolFullPolicy;
    public final long spoolBlockMillis;
    public final long shutdownGraceMillis;
    public final String trustStore;
    final String trustStorePassword;
    /** Empty: every realm / type. */
    public final Set<String> realms;
    public final Set<String> eventTypes;
    public final Set<String> adminResourceTypes;
    /** {@code *}: every type. */
    public final Set<String> representationResourceTypes;

    private SpiSettings(Function<String, String> reader) {
        Function<String, String> source = key -> {
            if (!OPTIONS.contains(key)) {
                throw new IllegalStateException("option " + key + " is missing from SpiSettings.OPTIONS");
            }
            // Unset: the default, as SpiOptions lists it to Keycloak (one place for both).
            String value = reader.apply(key);
            return value != null ? value : SpiOptions.defaultOf(key);
        };
        this.delivery = delivery(source);
        this.outboxPollMillis = number(source, "outboxPollMillis", 10, 600_000);
        this.amqpUri = uri(source, "amqpUri");
        this.amqpAddresses = addresses(source, amqpUri);
        this.exchange = text(source, "exchange");
        this.declareExchange = bool(source, "declareExchange");
        this.queueCapacity = (int) number(source, "queueCapacity", 1, 10_000_000);
        this.batchSize = (int) number(source, "batchSize", 1, 10_000);
        this.confirmTimeoutMillis = number(source, "confirmTimeoutMillis", 10, 600_000);
        String spool = text(source, "spoolDir");
        spool = spool != null ? spool : defaultSpoolDir();
        this.spoolDir = spool == null ? null : Paths.get(spool);
        this.spoolMaxBytes = number(source, "spoolMaxBytes", 1L << 16, Long.MAX_VALUE);
        this.spoolFullPolicy = policy(source);
        this.spoolBlockMillis = number(source, "spoolBlockMillis", 0, 60_000);
        this.shutdownGraceMillis = number(source, "shutdownGraceMillis", 0, 600_000);
        this.trustStore = source.apply("trustStore");
        this.trustStorePassword = source.apply("trustStorePassword");
        this.realms = list(source, "realms");
        this.eventTypes = list(source, "eventTypes");
        this.adminResourceTypes = list(source, "adminResourceTypes");
        Set<String> representations = list(source, "representationResourceTypes");
        this.representationResourceTypes = representations.isEmpty() ? SpiOptions.DEFAULT_REPRESENTATION_TYPES
                : representations;
        if (exchange.isEmpty()) {
            throw invalid("exchange", "must not be empty");
        }
    }

    /** Reads {@code scope} (may be null) with {@code env} as the fallback. */
    public static SpiSettings from(Function<String, String> scope, Map<String, String> env) {
        return new SpiSettings(key -> {
            String value = scope == null ? null : scope.apply(key);
            if (value == null || value.isEmpty()) {
                value = env.get(envName(key));
            }
            return value == null || value.isEmpty() ? null : value;
        });
    }

    /** {@code amqpUri} → {@code KEYCLOAK_SYNC_SPI_AMQP_URI}. */
    public static String envName(String key) {
        return ENV_PREFIX + key.replaceAll("([a-z])([A-Z])", "$1_$2").toUpperCase(Locale.ROOT);
    }

    /** {@code amqpUri} → {@code amqp-uri}, as in {@code --spi-events-listener--keycloak-sync--amqp-uri}. */
    public static String optionName(String key) {
        return key.replaceAll("([a-z])([A-Z])", "$1-$2").toLowerCase(Locale.ROOT);
    }

    /**
     * Keycloak's own data directory, private to its user. Never the shared temporary directory:
     * the spool holds events (and could be filled or read by anyone there).
     */
    private static String defaultSpoolDir() {
        String home = System.getProperty("kc.home.dir");
        return home == null ? null : Paths.get(home, "data", "keycloak-sync-spool").toString();
    }

    /** The spool directory, or a refusal that says how to set one. */
    public Path requireSpoolDir() {
        if (spoolDir == null) {
            throw invalid("spoolDir", "is not set and there is no Keycloak data directory (kc.home.dir) to default to;"
                    + " set it to a directory only Keycloak's user can read");
        }
        return spoolDir;
    }

    private static IllegalArgumentException invalid(String key, String problem) {
        return new IllegalArgumentException("keycloak-sync event listener: option " + optionName(key) + " ("
                + envName(key) + ") " + problem);
    }

    /** The value, trimmed; null for an option without a default left unset. */
    private static String text(Function<String, String> source, String key) {
        String value = source.apply(key);
        return value == null ? null : value.trim();
    }

    private static boolean bool(Function<String, String> source, String key) {
        String value = text(source, key);
        switch (String.valueOf(value).toLowerCase(Locale.ROOT)) {
            case "true":
                return true;
            case "false":
                return false;
            default:
                throw invalid(key, "must be true or false, not \"" + value + "\"");
        }
    }

    private static long number(Function<String, String> source, String key, long min, long max) {
        String value = text(source, key);
        long parsed;
        try {
            parsed = Long.parseLong(String.valueOf(value));
        } catch (NumberFormatException e) {
            throw invalid(key, "must be a whole number, not \"" + value + "\"");
        }
        if (parsed < min || parsed > max) {
            throw invalid(key, "must be between " + min + " and " + max + ", not " + parsed);
        }
        return parsed;
    }

    private static FullPolicy policy(Function<String, String> source) {
        return choice(source, "spoolFullPolicy", new String[] {"block", "drop-oldest"},
                new FullPolicy[] {FullPolicy.BLOCK, FullPolicy.DROP_OLDEST});
    }

    private static Delivery delivery(Function<String, String> source) {
        return choice(source, "delivery", new String[] {"outbox", "direct"},
                new Delivery[] {Delivery.OUTBOX, Delivery.DIRECT});
    }

    /** The value of {@code names} (any case) the option names, or a refusal listing them. */
    private static <E> E choice(Function<String, String> source, String key, String[] names, E[] values) {
        String value = text(source, key);
        for (int i = 0; i < names.length; i++) {
            if (names[i].equalsIgnoreCase(String.valueOf(value))) {
                return values[i];
            }
        }
        throw invalid(key, "must be " + String.join(" or ", names) + ", not \"" + value + "\"");
    }

    private static URI uri(Function<String, String> source, String key) {
        String value = text(source, key);
        URI uri;
        try {
            uri = new URI(value);
        } catch (URISyntaxException e) {
            // The message may quote the URI, password included: name the position only.
            throw invalid(key, "is not a valid URI (at index " + e.getIndex() + ")");
        }
        String scheme = uri.getScheme() == null ? "" : uri.getScheme().toLowerCase(Locale.ROOT);
        if (!scheme.equals("amqp") && !scheme.equals("amqps")) {
            throw invalid(key, "must start with amqp:// or amqps://");
        }
        if (uri.getHost() == null) {
            throw invalid(key, "has no host");
        }
        return uri;
    }

    /**
     * {@code host[:port],host[:port],…} (IPv6 hosts in brackets), the AMQP client's own
     * address list format; a missing port is that of {@code amqpUri}'s scheme.
     */
    private static List<Address> addresses(Function<String, String> source, URI uri) {
        boolean tls = "amqps".equals(uri.getScheme().toLowerCase(Locale.ROOT));
        int defaultPort = uri.getPort() > 0 ? uri.getPort() : (tls ? 5671 : 5672);
        String value = source.apply("amqpAddresses");
        if (value == null) {
            return List.of(new Address(uri.getHost(), defaultPort));
        }
        List<Address> addresses = new ArrayList<>();
        for (String part : value.split(",")) {
            String text = part.trim();
            if (text.isEmpty()) {
                continue;
            }
            Address parsed = parseAddress(text);
            if (parsed == null) {
                throw invalid("amqpAddresses", "has an address that is not host or host:port: \"" + text + "\"");
            }
            addresses.add(parsed.getPort() < 0 ? new Address(parsed.getHost(), defaultPort) : parsed);
        }
        if (addresses.isEmpty()) {
            throw invalid("amqpAddresses", "lists no address");
        }
        return Collections.unmodifiableList(addresses);
    }

    /** {@code host}, {@code host:port}, {@code [v6]} or {@code [v6]:port}; null if it is none of these. */
    private static Address parseAddress(String text) {
        String host;
        String port = null;
        if (text.startsWith("[")) {
            int close = text.indexOf(']');
            if (close < 0) {
                return null;
            }
            host = text.substring(0, close + 1);
            String rest = text.substring(close + 1);
            if (!rest.isEmpty()) {
                if (!rest.startsWith(":")) {
                    return null;
                }
                port = rest.substring(1);
            }
        } else {
            int colon = text.indexOf(':');
            if (colon != text.lastIndexOf(':')) {
                return null;
            }
            host = colon < 0 ? text : text.substring(0, colon);
            port = colon < 0 ? null : text.substring(colon + 1);
        }
        if (host.isEmpty() || host.equals("[]")) {
            return null;
        }
        if (port == null) {
            return new Address(host);
        }
        try {
            int number = Integer.parseInt(port);
            return number < 1 || number > 65_535 ? null : new Address(host, number);
        } catch (NumberFormatException e) {
            return null;
        }
    }

    private static Set<String> list(Function<String, String> source, String key) {
        String value = source.apply(key);
        if (value == null) {
            return Collections.emptySet();
        }
        Set<String> values = Arrays.stream(value.split(","))
                .map(String::trim)
                .filter(s -> !s.isEmpty())
                .collect(Collectors.toCollection(LinkedHashSet::new));
        return Collections.unmodifiableSet(values);
    }

    /** The AMQP URI with its password replaced, for logs. */
    public String redactedUri() {
        String userInfo = amqpUri.getRawUserInfo();
        if (userInfo == null || !userInfo.contains(":")) {
            return amqpUri.toString();
        }
        String user = userInfo.substring(0, userInfo.indexOf(':'));
        return amqpUri.toString().replace(userInfo + "@", user + ":***@");
    }

    public boolean wantsRealm(String realmName) {
        return realms.isEmpty() || realms.contains(realmName);
    }

    public boolean wantsEventType(String type) {
        return eventTypes.isEmpty() || eventTypes.contains(type);
    }

    public boolean wantsAdminResource(String resourceType) {
        return adminResourceTypes.isEmpty() || adminResourceTypes.contains(resourceType);
    }

    public boolean wantsRepresentation(String resourceType) {
        return representationResourceTypes.contains("*") || representationResourceTypes.contains(resourceType);
    }

    @Override
    public String toString() {
        return "delivery=" + delivery.name().toLowerCase(Locale.ROOT) + ", outboxPollMillis=" + outboxPollMillis
                + ", amqpUri=" + redactedUri() + ", amqpAddresses=" + amqpAddresses + ", exchange=" + exchange + ", declareExchange=" + declareExchange
                + ", queueCapacity=" + queueCapacity + ", batchSize=" + batchSize + ", confirmTimeoutMillis="
                + confirmTimeoutMillis + ", spoolDir=" + spoolDir + ", spoolMaxBytes=" + spoolMaxBytes
                + ", spoolFullPolicy=" + spoolFullPolicy + ", spoolBlockMillis=" + spoolBlockMillis
                + ", trustStore=" + trustStore + ", trustStorePassword=" + (trustStorePassword == null ? "unset" : "***")
                + ", realms=" + realms + ", eventTypes=" + eventTypes + ", adminResourceTypes=" + adminResourceTypes
                + ", representationResourceTypes=" + representationResourceTypes;
    }
}
