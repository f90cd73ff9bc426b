package io.keycloaksync.spi;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.FileInputStream;
import java.io.InputStream;
import java.net.InetAddress;
import java.nio.file.Path;
import java.security.KeyStore;
import java.util.Map;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLServerSocket;
import javax.net.ssl.SSLSocket;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code amqps://} checks the broker's certificate and host name: never trust-all. */
class TlsTest {
    private static final String PASSWORD = "test-store-pass";

    @TempDir
    Path dir;

    private void keytool(String... args) throws Exception {
        String[] command = new String[args.length + 1];
        command[0] = Path.of(System.getProperty("java.home"), "bin", "keytool").toString();
        System.arraycopy(args, 0, command, 1, args.length);
        Process process = new ProcessBuilder(command).redirectErrorStream(true).start();
        String output = new String(process.getInputStream().readAllBytes());
        if (process.waitFor() != 0) {
            throw new AssertionError("keytool failed: " + output);
        }
    }

    /** A TLS server with a self-signed certificate for {@code localhost} only, that closes after the handshake. */
    private SSLServerSocket server(Path keystore) throws Exception {
        KeyStore store = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(keystore.toFile())) {
            store.load(in, PASSWORD.toCharArray());
        }
        KeyManagerFactory keys = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        keys.init(store, PASSWORD.toCharArray());
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(keys.getKeyManagers(), null, null);
        SSLServerSocket server = (SSLServerSocket) context.getServerSocketFactory()
                .createServerSocket(0, 10, InetAddress.getLoopbackAddress());
        Thread acceptor = new Thread(() -> {
            while (!server.isClosed()) {
                try (SSLSocket socket = (SSLSocket) server.accept()) {
                    socket.startHandshake();
                } catch (Exception ignored) {
                    // A client that refused the certificate.
                }
            }
        });
        acceptor.setDaemon(true);
        acceptor.start();
        return server;
    }

    private static String failure(SpiSettings settings) {
        Exception error = assertThrows(Exception.class, () -> new AmqpConnector(settings).connect().close());
        StringBuilder chain = new StringBuilder();
        for (Throwable t = error; t != null; t = t.getCause()) {
            chain.append(t.getClass().getName()).append(": ").append(t.getMessage()).append(" | ");
        }
        return chain.toString();
    }

    @Test
    void certificatesAndHostNamesAreVerified() throws Exception {
        Path keystore = dir.resolve("server.p12");
        Path certificate = dir.resolve("server.crt");
        Path truststore = dir.resolve("trust.p12");
        keytool("-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048", "-dname", "CN=localhost",
                "-ext", "SAN=dns:localhost", "-validity", "2", "-storetype", "PKCS12", "-keystore",
                keystore.toString(), "-storepass", PASSWORD, "-keypass", PASSWORD);
        keytool("-exportcert", "-alias", "broker", "-keystore", keystore.toString(), "-storepass", PASSWORD, "-file",
                certificate.toString());
        keytool("-importcert", "-noprompt", "-alias", "broker", "-file", certificate.toString(), "-storetype",
                "PKCS12", "-keystore", truststore.toString(), "-storepass", PASSWORD);

        try (SSLServerSocket server = server(keystore)) {
            int port = server.getLocalPort();
            String untrusted = failure(SpiSettings.from(null, Map.of(
                    "KEYCLOAK_SYNC_SPI_AMQP_URI", "amqps://guest:guest@localhost:" + port + "/")));
            assertTrue(untrusted.contains("SSLHandshakeException"), untrusted);
            assertTrue(untrusted.contains("PKIX") || untrusted.contains("certification path"), untrusted);

            Map<String, String> trusting = Map.of(
                    "KEYCLOAK_SYNC_SPI_TRUST_STORE", truststore.toString(),
                    "KEYCLOAK_SYNC_SPI_TRUST_STORE_PASSWORD", PASSWORD);
            var byAddress = new java.util.HashMap<>(trusting);
            byAddress.put("KEYCLOAK_SYNC_SPI_AMQP_URI", "amqps://guest:guest@127.0.0.1:" + port + "/");
            String wrongName = failure(SpiSettings.from(null, byAddress));
            assertTrue(wrongName.contains("SSLHandshakeException") || wrongName.contains("CertificateException"),
                    wrongName);
            assertTrue(wrongName.contains("127.0.0.1"), "the host name was checked: " + wrongName);

            var byName = new java.util.HashMap<>(trusting);
            byName.put("KEYCLOAK_SYNC_SPI_AMQP_URI", "amqps://guest:guest@localhost:" + port + "/");
            String trusted = failure(SpiSettings.from(null, byName));
            assertFalse(trusted.contains("SSLHandshakeException"), "the handshake itself succeeds: " + trusted);
            assertFalse(trusted.contains(PASSWORD) || trusted.contains("guest:guest"), trusted);
        }
    }
}
