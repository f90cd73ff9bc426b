package io.keycloaksync.spi;

import java.util.List;
import java.util.Set;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.provider.ProviderConfigurationBuilder;

/**
 * The provider's options as Keycloak lists them ({@code kc.sh start --help}, the admin
 * configuration guide): one entry per {@link SpiSettings#OPTIONS} key, with its type, help
 * text and default. Keycloak turns each camel-case name into
 * {@code --spi-events-listener--keycloak-sync--<dashed-name>}, as {@code Config.Scope} reads it.
 */
final class SpiOptions {
    private SpiOptions() {
    }

    /**
     * The admin resource types whose representations the daemon reads: users and sessions, and the
     * groups, roles and organizations applications authorize with. Others (clients, identity
     * providers, components, the realm itself) may carry secrets and stay out of the queue.
     */
    static final Set<String> DEFAULT_REPRESENTATION_TYPES = Set.of("USER", "USER_SESSION", "GROUP",
            "GROUP_MEMBERSHIP", "REALM_ROLE", "CLIENT_ROLE", "REALM_ROLE_MAPPING", "CLIENT_ROLE_MAPPING",
            "ORGANIZATION", "ORGANIZATION_MEMBERSHIP");

    private record Option(String key, String type, String help, String defaultValue) {
    }

    private static final String STRING = ProviderConfigProperty.STRING_TYPE;
    private static final String BOOLEAN = ProviderConfigProperty.BOOLEAN_TYPE;
    private static final String INTEGER = ProviderConfigProperty.INTEGER_TYPE;
    private static final String LIST = ProviderConfigProperty.MULTIVALUED_STRING_TYPE;
    private static final String PASSWORD = ProviderConfigProperty.PASSWORD;

    private static final List<Option> ALL = List.of(
            new Option("amqpUri", PASSWORD, "RabbitMQ URI (amqp:// or amqps://, credentials and virtual host)",
                    "amqp://guest:guest@localhost:5672/%2f"),
            new Option("amqpAddresses", STRING, "Cluster nodes tried in turn, host[:port],…", null),
            new Option("delivery", STRING,
                    "outbox: each event is written to Keycloak's database in the transaction of its change and relayed"
                    + " from there; direct: handed to the publisher after the commit (memory, then the disk spool)",
                    "outbox"),
            new Option("outboxPollMillis", INTEGER,
                    "How often the outbox relay looks for rows committed on other nodes (its own wake it at once)",
                    "500"),
            new Option("exchange", STRING, "Topic exchange the events are published to", "keycloak.events"),
            new Option("declareExchange", BOOLEAN, "Declare the exchange (durable topic) on connect", "true"),
            new Option("queueCapacity", INTEGER, "Events held in memory before the spool takes them", "10000"),
            new Option("batchSize", INTEGER, "Messages per publisher-confirm round", "200"),
            new Option("confirmTimeoutMillis", INTEGER, "How long a confirm round may take", "5000"),
            new Option("spoolDir", STRING,
                    "Disk spool for events the broker did not confirm (default <kc.home.dir>/data/keycloak-sync-spool)",
                    null),
            new Option("spoolMaxBytes", INTEGER, "Cap on the spool's size", "1073741824"),
            new Option("spoolFullPolicy", STRING, "At the cap: block (then drop new events) or drop-oldest", "block"),
            new Option("spoolBlockMillis", INTEGER, "How long a full spool makes a writer wait", "100"),
            new Option("shutdownGraceMillis", INTEGER, "Time to publish at shutdown before spooling the rest", "5000"),
            new Option("trustStore", STRING, "Trust store for amqps:// (else the JVM's)", null),
            new Option("trustStorePassword", PASSWORD, "Password of the trust store", null),
            new Option("realms", LIST, "Realm names to publish (empty: all)", null),
            new Option("eventTypes", LIST, "User event types to publish (empty: all)", null),
            new Option("adminResourceTypes", LIST, "Admin resource types to publish (empty: all)", null),
            new Option("representationResourceTypes", LIST,
                    "Admin resource types published with their representation (* for all)",
                    String.join(",", DEFAULT_REPRESENTATION_TYPES.stream().sorted().toList())));

    /** The default of {@code key}, as a configured value would read; null where there is none. */
    static String defaultOf(String key) {
        return ALL.stream().filter(o -> o.key().equals(key)).findFirst().map(Option::defaultValue).orElse(null);
    }

    /** Every key, in the order above. */
    static List<String> keys() {
        return ALL.stream().map(Option::key).toList();
    }

    static List<ProviderConfigProperty> metadata() {
        ProviderConfigurationBuilder builder = ProviderConfigurationBuilder.create();
        for (Option option : ALL) {
            var property = builder.property()
                    .name(option.key())
                    .label(SpiSettings.optionName(option.key()))
                    .type(option.type())
                    .helpText(option.help() + " (environment: " + SpiSettings.envName(option.key()) + ")")
                    .secret(PASSWORD.equals(option.type()));
            if (option.defaultValue() != null) {
                property.defaultValue(option.defaultValue());
            }
            property.add();
        }
        return builder.build();
    }
}
