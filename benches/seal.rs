//! Cost of sealing and opening one vault token (AES-256-GCM-SIV, fresh nonce, row-bound
//! associated data), to set against the vault's ingest rate.
//!
//!     cargo bench --bench seal

use std::time::Instant;

use base64::Engine;
use keycloak_sync::vault::{KeyRing, RowIdentity};
use secrecy::SecretString;

fn main() {
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let ring = KeyRing::parse(&SecretString::from(format!("k1:{key}")), Some("k1")).expect("ring");
    let token = SecretString::from("x".repeat(1200));
    let row = RowIdentity {
        realm_id: "5d0f1c1e-7b45-4c0f-9d35-acme00000001",
        user_id: "8d2b5c1e-0000-4000-8000-000000000001",
        token_type: "offline",
        client_id: Some("web-app"),
        session_id: Some("a41e7f00-0000-4000-8000-000000000001"),
    };
    let rounds = 200_000;
    let started = Instant::now();
    let mut last = None;
    for _ in 0..rounds {
        last = Some(ring.seal(&token, &row).expect("seal"));
    }
    let seal = started.elapsed();
    let sealed = last.expect("sealed");
    let started = Instant::now();
    for _ in 0..rounds {
        ring.open(&sealed, &row).expect("open");
    }
    let open = started.elapsed();
    println!(
        "seal: {:.0} tokens/s ({:.2} µs each); open: {:.0} tokens/s ({:.2} µs each); 1,200-byte tokens",
        rounds as f64 / seal.as_secs_f64(),
        seal.as_secs_f64() * 1e6 / rounds as f64,
        rounds as f64 / open.as_secs_f64(),
        open.as_secs_f64() * 1e6 / rounds as f64,
    );
}
