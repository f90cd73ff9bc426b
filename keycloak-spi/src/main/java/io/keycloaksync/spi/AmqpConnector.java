package io.keycloaksync.spi;

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
 * Opens the publisher's connection. For {@code amqps://} the certificate chain is checked
 * against the configured trust store (else the JVM's) and the host name against the
 * certificate: the client library's own {@code amqps} default trusts every certificate,
 * so it is replaced.
 */
public final class AmqpConnector {
    private final SpiSettings settings;

    public AmqpConnector(SpiSettings settings) {
        this.settings = settings;
    }

    public Connection connect() throws IOException, TimeoutException {
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
        String host = settings.amqpUri.getHost();
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
                    // to send as SNI) is set here: the host of amqpUri.
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
