//! TLS to Postgres and to the Admin API with a private CA made here with openssl: the
//! test Postgres is switched to `ssl = on` (plain connections keep working); `verify-full`
//! works, a wrong CA and a wrong host name are refused at once with a message that names
//! the problem, not retried for ever.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use keycloak_sync::config::{DatabaseSettings, SecretUrl};
use keycloak_sync::store::Store;
use sqlx::{Connection, PgConnection};

use crate::support::*;

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA (`name-ca.pem`) and, if `server`, a certificate it signs for `localhost` only.
fn make_ca(dir: &Path, name: &str, server: bool) {
    let ca_key = format!("{name}-ca.key");
    let ca = format!("{name}-ca.pem");
    openssl(dir, &["genrsa", "-out", &ca_key, "2048"]);
    let subject = format!("/CN=keycloak-sync test CA {name}");
    openssl(
        dir,
        &[
            "req", "-x509", "-new", "-key", &ca_key, "-days", "2", "-subj", &subject, "-out", &ca,
        ],
    );
    if server {
        std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").expect("ext");
        openssl(dir, &["genrsa", "-out", "server.key", "2048"]);
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                "server.key",
                "-subj",
                "/CN=localhost",
                "-out",
                "server.csr",
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                "server.pem",
            ],
        );
    }
}

/// The test server's data directory.
async fn data_directory() -> PathBuf {
    let mut admin = PgConnection::connect(&admin_url()).await.expect("admin");
    let dir: String = sqlx::query_scalar("SHOW data_directory")
        .fetch_one(&mut admin)
        .await
        .expect("data_directory");
    PathBuf::from(dir)
}

/// Turns TLS on in the test server with `server.pem`/`server.key` of `dir`.
async fn serve_tls(dir: &Path) {
    let data = data_directory().await;
    for (from, to) in [
        ("server.pem", "kcs-test-server.pem"),
        ("server.key", "kcs-test-server.key"),
    ] {
        std::fs::copy(dir.join(from), data.join(to)).expect("copy into the data directory");
        let status = Command::new("chown")
            .args(["postgres:", &data.join(to).display().to_string()])
            .status()
            .expect("chown");
        assert!(status.success());
        let status = Command::new("chmod")
            .args(["0600", &data.join(to).display().to_string()])
            .status()
            .expect("chmod");
        assert!(status.success());
    }
    let mut admin = PgConnection::connect(&admin_url()).await.expect("admin");
    for statement in [
        "ALTER SYSTEM SET ssl_cert_file = 'kcs-test-server.pem'",
        "ALTER SYSTEM SET ssl_key_file = 'kcs-test-server.key'",
        "ALTER SYSTEM SET ssl = on",
        "SELECT pg_reload_conf()",
    ] {
        sqlx::query(statement)
            .execute(&mut admin)
            .await
            .expect("enable ssl");
    }
    // The reload is asynchronous: wait until a TLS handshake is accepted.
    for _ in 0..50 {
        let on: Option<String> = sqlx::query_scalar("SHOW ssl")
            .fetch_optional(&mut admin)
            .await
            .ok()
            .flatten();
        if on.as_deref() == Some("on") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("ssl did not turn on");
}

/// `db`'s URL with another host and TLS parameters.
fn tls_url(db: &TestDb, host: &str, params: &str) -> String {
    let rest = db.url.split_once("@").map(|(_, r)| r).unwrap_or(&db.url);
    let port_and_db = rest.split_once(':').map(|(_, r)| r).unwrap_or(rest);
    format!("postgres://postgres@{host}:{port_and_db}?{params}")
}

async fn connect(db: &TestDb, url: String) -> Result<Store, keycloak_sync::store::StoreError> {
    Store::connect(&DatabaseSettings {
        url: SecretUrl::new(url),
        retry_max: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(5),
        ..db.settings("keycloak_sync")
    })
    .await
}

#[tokio::test]
async fn postgres_over_tls_verifies_the_ca_and_the_host_name() {
    let dir = std::env::temp_dir().join(format!("kcs-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    make_ca(&dir, "good", true);
    make_ca(&dir, "other", false);
    serve_tls(&dir).await;
    let db = TestDb::new().await;
    let good_ca = dir.join("good-ca.pem").display().to_string();
    let other_ca = dir.join("other-ca.pem").display().to_string();

    let verified = connect(
        &db,
        tls_url(
            &db,
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={good_ca}"),
        ),
    )
    .await
    .expect("verify-full with the right CA connects");
    verified.migrate().await.expect("migrate over TLS");
    let on_tls: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(verified.pool())
            .await
            .expect("pg_stat_ssl");
    assert!(on_tls, "the connection is encrypted");
    let required = connect(&db, tls_url(&db, "127.0.0.1", "sslmode=require"))
        .await
        .expect("sslmode=require encrypts without verifying");
    required.ping().await.expect("ping");

    for (case, url) in [
        (
            "a CA that did not sign the server's certificate",
            tls_url(
                &db,
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={other_ca}"),
            ),
        ),
        (
            "a host name the certificate does not name",
            tls_url(
                &db,
                "127.0.0.1",
                &format!("sslmode=verify-full&sslrootcert={good_ca}"),
            ),
        ),
    ] {
        let started = Instant::now();
        let error = match connect(&db, url).await {
            Ok(_) => panic!("{case}: connected"),
            Err(error) => error,
        };
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{case}: refused at once, not retried for database.retry_max_secs"
        );
        assert!(!error.is_transient(), "{case}: permanent");
        let text = error.to_string();
        assert!(
            text.to_lowercase().contains("certificate"),
            "{case}: {text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Admin API client trusts `keycloak.ca_file` besides the public roots: against an
/// HTTPS server whose certificate that CA signed, the TLS handshake succeeds (the server,
/// `openssl s_server`, is no Keycloak: what fails afterwards is the answer, not TLS);
/// without it the certificate is refused.
#[tokio::test]
async fn the_admin_api_client_trusts_a_configured_ca() {
    let dir = std::env::temp_dir().join(format!("kcs-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    make_ca(&dir, "good", true);
    let port = free_port();
    let mut server = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &port.to_string(),
            "-cert",
            "server.pem",
            "-key",
            "server.key",
        ])
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_server");
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = format!("https://localhost:{port}");
    let attempt = |ca_file: Option<PathBuf>| {
        let mut settings = crate::keycloak_fake::settings_for(&url, 10);
        settings.ca_file = ca_file;
        settings.retry_max = Duration::ZERO;
        async move {
            let client = keycloak_sync::keycloak::AdminClient::new(&settings).expect("client");
            client
                .users(&crate::keycloak_fake::realm(), 0, 10)
                .await
                .expect_err("s_server is not Keycloak")
                .to_string()
        }
    };
    let trusted = attempt(Some(dir.join("good-ca.pem"))).await;
    let untrusted = attempt(None).await;
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        untrusted.to_lowercase().contains("certificate"),
        "without the CA the certificate is refused: {untrusted}"
    );
    assert!(
        !trusted.to_lowercase().contains("certificate"),
        "with the CA the handshake succeeds: {trusted}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
