//! `vault import` against real Postgres: a Prisma-shaped `accounts` table with several
//! refresh tokens per user, plaintext and legacy-encrypted (made by Node's own crypto, an
//! independent implementation of the format), a wrong passphrase, a corrupted row, an
//! interrupted import resumed, live token messages racing it, and a dry run.

use std::process::{Command, Output};
use std::sync::Arc;

use base64::Engine;
use keycloak_sync::store::vault::Vault;
use keycloak_sync::store::Store;
use keycloak_sync::vault::KeyRing;
use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, PgConnection};

use crate::support::*;

const PASSPHRASE: &str = "app-session-secret";

/// `vault import`'s arguments for the legacy format, its passphrase in `APP_TOKEN_KEY`.
const LEGACY: [&str; 4] = [
    "--legacy-format",
    "scrypt-aes256gcm-hex",
    "--legacy-key-env",
    "APP_TOKEN_KEY",
];

/// `sealed` with its last hex digit changed: in the legacy shape, but it does not open.
fn corrupted(sealed: &str) -> String {
    let mut corrupted = sealed.to_string();
    let flip = if corrupted.ends_with('0') { '1' } else { '0' };
    corrupted.pop();
    corrupted.push(flip);
    corrupted
}

fn vault_keys() -> String {
    format!(
        "k1:{}",
        base64::engine::general_purpose::STANDARD.encode([5u8; 32])
    )
}

fn ring() -> Arc<KeyRing> {
    Arc::new(KeyRing::parse(&SecretString::from(vault_keys()), Some("k1")).expect("ring"))
}

/// `iv:authTag:ciphertext` for each token, made by Node (`crypto.scryptSync`,
/// `aes-256-gcm`, a random 16-byte IV), as the applications that use the format do.
fn node_encrypt(tokens: &[&str]) -> Vec<String> {
    let script = format!(
        r#"const c = require("crypto");
const key = c.scryptSync(process.env.PASSPHRASE, "session-tokens-salt", 32);
for (const t of {tokens}) {{
  const iv = c.randomBytes(16);
  const ci = c.createCipheriv("aes-256-gcm", key, iv);
  const body = Buffer.concat([ci.update(t, "utf8"), ci.final()]);
  console.log(iv.toString("hex") + ":" + ci.getAuthTag().toString("hex") + ":" + body.toString("hex"));
}}"#,
        tokens = serde_json::to_string(tokens).expect("json")
    );
    let output = Command::new("node")
        .args(["-e", &script])
        .env("PASSPHRASE", PASSPHRASE)
        .output()
        .expect("node runs (Node.js is on the machine)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf8")
        .lines()
        .map(str::to_string)
        .collect()
}

/// The application's table, Prisma's `accounts` shape.
async fn accounts(db: &TestDb, rows: &[(&str, &str, &str, i64)]) {
    let mut conn = PgConnection::connect(&db.url).await.expect("source");
    sqlx::raw_sql(
        r#"CREATE TABLE accounts (
               "id" serial PRIMARY KEY, "accountId" text, "providerId" text NOT NULL,
               "userId" text NOT NULL, "refreshToken" text, "accessToken" text,
               "refreshTokenExpiresAt" timestamptz, "createdAt" timestamptz NOT NULL DEFAULT now(),
               "updatedAt" timestamptz NOT NULL)"#,
    )
    .execute(&mut conn)
    .await
    .expect("accounts");
    for (user, provider, token, updated_ms) in rows {
        sqlx::query(
            r#"INSERT INTO accounts ("accountId", "providerId", "userId", "refreshToken", "accessToken", "updatedAt")
               VALUES ($1, $2, $1, $3, 'access-not-imported', to_timestamp($4::float8 / 1000))"#,
        )
        .bind(user)
        .bind(provider)
        .bind(token)
        .bind(*updated_ms as f64)
        .execute(&mut conn)
        .await
        .expect("row");
    }
}

const QUERY: &str = r#"SELECT 'r' AS realm_id, "userId" AS user_id, 'refresh' AS token_type,
    "refreshToken" AS token, "refreshTokenExpiresAt" AS expires_at, "updatedAt" AS updated_at,
    jsonb_build_object('accountId', "accountId") AS metadata
  FROM accounts WHERE "providerId" = 'keycloak' AND "refreshToken" IS NOT NULL"#;

/// `vault import` from the database at `source` into the one at `target`.
fn run_import(target: &str, source: &str, extra: &[&str], passphrase: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keycloak-sync"));
    command
        .args(["vault", "import", "--query", QUERY])
        .args(extra)
        .env("KEYCLOAK_SYNC__DATABASE__URL", target)
        .env("KEYCLOAK_SYNC_IMPORT_SOURCE_URL", source)
        .env("KEYCLOAK_SYNC__VAULT__KEYS", vault_keys())
        .env("KEYCLOAK_SYNC__VAULT__ACTIVE_KEY", "k1")
        .env("KEYCLOAK_SYNC__LOG__LEVEL", "warn")
        .env_remove("RUST_LOG");
    if let Some(passphrase) = passphrase {
        command.env("APP_TOKEN_KEY", passphrase);
    }
    command.output().expect("run vault import")
}

fn summary(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !stdout.contains("tok-") && !stderr.contains("tok-"),
        "a token was printed:\n{stdout}\n{stderr}"
    );
    stdout
        .lines()
        .find(|l| l.starts_with("vault import summary"))
        .unwrap_or_else(|| panic!("no summary:\n{stdout}\n{stderr}"))
        .to_string()
}

async fn refresh_of(store: &Store, user: &str) -> Option<String> {
    Vault::new(store, ring())
        .refresh_token(&"r".into(), &user.into())
        .await
        .expect("read")
        .map(|t| t.token.expose_secret().to_string())
}

#[tokio::test]
async fn plaintext_tokens_are_imported_newest_per_user_verified_and_resumable() {
    let source = TestDb::new().await;
    let target = TestDb::new().await;
    accounts(
        &source,
        &[
            ("u1", "keycloak", "tok-u1-old", 1_000),
            ("u1", "keycloak", "tok-u1-new", 3_000),
            ("u1", "keycloak", "tok-u1-mid", 2_000),
            ("u2", "keycloak", "tok-u2", 1_000),
            ("u3", "google", "tok-google", 1_000),
            ("u4", "keycloak", "tok-u4", 1_000),
            ("u5", "keycloak", "tok-u5", 1_000),
        ],
    )
    .await;
    let store = target.store().await.with_vault(Some(ring()));
    // u5 was deleted in Keycloak after its token was issued: not stored, as for messages.
    apply(
        &store,
        &[event(
            r#"{"schema":1,"kind":"user","id":"del","time":5000,"realmId":"r","type":"DELETE_ACCOUNT","userId":"u5"}"#,
        )],
    )
    .await;

    let dry = run_import(&target.url, &source.url, &["--dry-run"], None);
    assert!(dry.status.success());
    let dry = summary(&dry);
    assert!(
        dry.contains("read 6,") && dry.contains("would import 4,") && dry.contains("superseded 2,"),
        "{dry}"
    );
    assert_eq!(
        count(&store, "SELECT count(*) FROM auth_vault").await,
        0,
        "dry run wrote nothing"
    );

    // Interrupted after its first page (two rows: users whole), then resumed.
    let first = run_import(
        &target.url,
        &source.url,
        &["--page-size", "2", "--max-pages", "1"],
        None,
    );
    assert!(first.status.success());
    assert!(
        summary(&first).contains("stopped early"),
        "{}",
        summary(&first)
    );
    let rest = run_import(&target.url, &source.url, &["--page-size", "2"], None);
    assert!(
        rest.status.success(),
        "{}",
        String::from_utf8_lossy(&rest.stderr)
    );
    let rest = summary(&rest);
    assert!(rest.contains("resumed"), "{rest}");
    assert!(
        rest.contains("read 6,"),
        "cumulative over both runs: {rest}"
    );
    assert!(rest.contains("imported 3,"), "{rest}");
    assert!(rest.contains("superseded 2,"), "{rest}");
    assert!(rest.contains("skipped by rule 1,"), "{rest}");
    assert!(rest.contains("verified 3 of 3"), "{rest}");

    assert_eq!(
        refresh_of(&store, "u1").await.as_deref(),
        Some("tok-u1-new")
    );
    assert_eq!(refresh_of(&store, "u2").await.as_deref(), Some("tok-u2"));
    assert_eq!(
        refresh_of(&store, "u3").await,
        None,
        "another provider's rows are not in the query"
    );
    assert_eq!(refresh_of(&store, "u5").await, None);
    let metadata: serde_json::Value =
        sqlx::query_scalar("SELECT metadata FROM keycloak_sync.auth_vault WHERE user_id = 'u1'")
            .fetch_one(store.pool())
            .await
            .expect("metadata");
    assert_eq!(metadata["accountId"], "u1");

    // Again, whole: nothing changes, everything is a duplicate.
    let again = summary(&run_import(&target.url, &source.url, &[], None));
    assert!(
        again.contains("imported 0,") && again.contains("already imported 3,"),
        "{again}"
    );
}

#[tokio::test]
async fn legacy_encrypted_tokens_open_with_the_passphrase_and_fail_clearly_without() {
    let source = TestDb::new().await;
    let target = TestDb::new().await;
    let sealed = node_encrypt(&["tok-legacy-1", "tok-legacy-2"]);
    let corrupted = corrupted(&sealed[1]);
    accounts(
        &source,
        &[
            ("u1", "keycloak", &sealed[0], 1_000),
            ("u2", "keycloak", &corrupted, 1_000),
        ],
    )
    .await;
    let store = target.store().await.with_vault(Some(ring()));

    let wrong = run_import(
        &target.url,
        &source.url,
        &LEGACY,
        Some("not the passphrase"),
    );
    assert_eq!(
        wrong.status.code(),
        Some(1),
        "a row that does not open fails the import"
    );
    let wrong_summary = summary(&wrong);
    assert!(
        wrong_summary.contains("undecryptable 2,"),
        "{wrong_summary}"
    );
    let log = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        log.contains("user u1") && log.contains("does not decrypt"),
        "named by its row: {log}"
    );
    assert!(!log.contains(&sealed[0]), "the stored value is not printed");
    assert_eq!(count(&store, "SELECT count(*) FROM auth_vault").await, 0);

    let right = run_import(&target.url, &source.url, &LEGACY, Some(PASSPHRASE));
    assert_eq!(
        right.status.code(),
        Some(1),
        "the corrupted row still fails the run"
    );
    let right = summary(&right);
    assert!(
        right.contains("imported 1,") && right.contains("undecryptable 1,"),
        "{right}"
    );
    assert!(right.contains("verified 1 of 1"), "{right}");
    assert_eq!(
        refresh_of(&store, "u1").await.as_deref(),
        Some("tok-legacy-1")
    );
}

/// An application mid-migration: rows stored before it began encrypting are plaintext,
/// later ones legacy-encrypted. Both import; only a value in the legacy shape that does
/// not open is undecryptable.
#[tokio::test]
async fn a_table_mixing_plaintext_and_legacy_encrypted_rows_imports_both_and_counts_them_apart() {
    let source = TestDb::new().await;
    let target = TestDb::new().await;
    let sealed = node_encrypt(&["tok-sealed-1", "tok-sealed-2", "tok-sealed-3"]);
    let corrupted = corrupted(&node_encrypt(&["tok-sealed-4"])[0]);
    accounts(
        &source,
        &[
            ("p1", "keycloak", "tok-plain.eyJ1.sig1", 1_000),
            ("p2", "keycloak", "tok-plain.eyJ2.sig2", 1_000),
            // Colons alone do not make the legacy shape: three hex parts do.
            ("p3", "keycloak", "tok-plain:not:hex", 1_000),
            ("s1", "keycloak", &sealed[0], 1_000),
            ("s2", "keycloak", &sealed[1], 1_000),
            ("s3", "keycloak", &sealed[2], 1_000),
            ("s4", "keycloak", &corrupted, 1_000),
        ],
    )
    .await;
    let store = target.store().await.with_vault(Some(ring()));
    let output = run_import(&target.url, &source.url, &LEGACY, Some(PASSPHRASE));
    let text = summary(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "the corrupted legacy row fails the run: {text}"
    );
    assert!(
        text.contains("imported 6,")
            && text.contains("plaintext 3,")
            && text.contains("undecryptable 1,"),
        "{text}"
    );
    assert!(text.contains("verified 6 of 6"), "{text}");
    for (user, token) in [
        ("p1", "tok-plain.eyJ1.sig1"),
        ("p3", "tok-plain:not:hex"),
        ("s2", "tok-sealed-2"),
    ] {
        assert_eq!(refresh_of(&store, user).await.as_deref(), Some(token));
    }
    assert_eq!(refresh_of(&store, "s4").await, None);
}

#[tokio::test]
async fn an_import_racing_live_token_messages_never_overwrites_a_newer_token() {
    let source = TestDb::new().await;
    let target = TestDb::new().await;
    accounts(
        &source,
        &[
            ("u1", "keycloak", "tok-imported-1", 2_000),
            ("u2", "keycloak", "tok-imported-2", 2_000),
        ],
    )
    .await;
    let store = target.store().await.with_vault(Some(ring()));
    let live = |id: &str, user: &str, time: i64| {
        event(&format!(
            r#"{{"schema":1,"kind":"token","id":"{id}","time":{time},"realmId":"r","userId":"{user}","tokenType":"refresh","token":"live-{id}"}}"#
        ))
    };
    // u1: the live queue already holds a newer token; u2: an older one.
    apply(
        &store,
        &[live("newer", "u1", 3_000), live("older", "u2", 1_000)],
    )
    .await;
    let newest = [live("newest", "u2", 4_000)];
    let (output, _) = tokio::join!(
        tokio::task::spawn_blocking({
            let (t, s) = (target.url.clone(), source.url.clone());
            move || run_import(&t, &s, &[], None)
        }),
        // A live message newer than everything, while the import runs.
        apply(&store, &newest),
    );
    let output = output.expect("join");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = summary(&output);
    assert!(line.contains("read 2,"), "{line}");
    assert_eq!(
        refresh_of(&store, "u1").await.as_deref(),
        Some("live-newer")
    );
    assert_eq!(
        refresh_of(&store, "u2").await.as_deref(),
        Some("live-newest")
    );
    assert!(
        line.contains("superseded 1,") || line.contains("superseded 2,"),
        "{line}"
    );
}
