package io.keycloaksync.spi;

import com.rabbitmq.client.Address;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeoutException;
import javax.net.ssl.SNIHostName;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

/**
 * Opens the publisher's connection to one node of {@code amqpAddresses}. For
 * {@code amqps://} the certificate chain is checked against the configured trust store
 * (else the JVM's) and the host name against the certificate: the client library's own
 * {@code amqps} default trusts every certificate, so it is replaced.
 *
 * <p>The nodes are tried in turn here rather than by handing the client library the whole
 * address list, because the name a node's certificate is checked against (and sent as
 * SNI) is that node's own host, which the library's socket configurator never learns.
 * After a lost connection the next attempt starts at the node after the one that was lost.
 */
public final class AmqpConnector {
    private final SpiSettings settings;
    private int next;
    private volatile Address connectedTo;

    public AmqpConnector(SpiSettings settings) {
        this.settings = settings;
    }

    /** The node of the last connection made, for logs. */
    public Address connectedTo() {
        return connectedTo;
    }

    /** Tries each node once, starting after the last one connected to. */
    public Connection connect() throws IOException, TimeoutException {
        List<Address> addresses = settings.amqpAddresses;
        Exception last = null;
        for (int step = 0; step < addresses.size(); step++) {
            int index = (next + step) % addresses.size();
            Address address = addresses.get(index);
            try {
                Connection connection = connect(address);
                next = (index + 1) % addresses.size();
                connectedTo = address;
                return connection;
            } catch (IOException | TimeoutException e) {
                last = e;
            }
        }
        if (last instanceof TimeoutException) {
            throw (TimeoutException) last;
        }
        throw last instanceof IOException ? (IOException) last : new IOException("amqpAddresses lists no node");
    }

    private Connection connect(Address address) throws IOException, TimeoutException {
        ConnectionFactory factory = new ConnectionFactory();
        try {
            factory.setUri(settings.amqpUri);
        } catch (Exception e) {
            throw new IOException("cannot use amqpUri " + settings.redactedUri() + ": " + e.getClass().getSimpleName());
        }
        factory.setAutomaticRecoveryEnabled(false);
        factory.setConnectionTimeout(5_000);
        factory.setHandshakeTimeout(5_000);
        factory.setRequestedHeartbeat(30);
        factory.setHost(address.getHost());
        factory.setPort(address.getPort());
        String host = address.getHost();
        if ("amqps".equals(settings.amqpUri.getScheme().toLowerCase(Locale.ROOT))) {
            try {
                factory.useSslProtocol(verifyingContext());
            } catch (GeneralSecurityException e) {
                throw new IOException("TLS set-up failed: " + e.getMessage(), e);
            }
            factory.setSocketConfigurator(socket -> {
                socket.setTcpNoDelay(true);
                if (socket instanceof SSLSocket) {
                    SSLSocket tls = (SSLSocket) socket;
                    SSLParameters parameters = tls.getSSLParameters();
                    parameters.setEndpointIdentificationAlgorithm("HTTPS");
                    // The client library connects by address, so the name to check (and
                    // to send as SNI) is set here: the host of this node.
                    if (!isAddressLiteral(host)) {
                        parameters.setServerNames(List.of(new SNIHostName(host)));
                    }
                    tls.setSSLParameters(parameters);
                }
            });
        }
        return factory.newConnection("keycloak-sync-spi");
    }

    private static boolean isAddressLiteral(String host) {
        return host.contains(":") || host.startsWith("[") || host.matches("[0-9.]+");
    }

    private SSLContext verifyingContext() throws GeneralSecurityException, IOException {
        TrustManagerFactory trust = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        if (settings.trustStore != null) {
            KeyStore store = KeyStore.getInstance(KeyStore.getDefaultType());
            char[] password = settings.trustStorePassword == null ? null : settings.trustStorePassword.toCharArray();
            try (InputStream in = new FileInputStream(settings.trustStore)) {
                store.load(in, password);
            }
            trust.init(store);
        } else {
            trust.init((KeyStore) null);
        }
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(null, trust.getTrustManagers(), null);
        return context;
    }
}
