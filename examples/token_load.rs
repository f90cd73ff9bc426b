//! Load for the token API's benchmark (`scripts/bench-token-api.sh`), against a running
//! Keycloak and `keycloak-sync run` with the API on: logs `--users` users in twice (one
//! token each for the API, one for Keycloak directly), stores the first set through
//! `PUT /v1/tokens`, then alternates, round by round:
//!
//! * `refresh`: every user's access token asked for once, all at once (`--concurrency`
//!   at a time), after `--reset-cmd` dropped the kept access tokens: each request is a
//!   refresh at Keycloak through the API (rotation, one commit);
//! * `keycloak`: the same number of refresh grants sent to Keycloak directly with the
//!   second set of tokens (the rotated token kept for the next round) — the floor the
//!   refresh path stands on;
//! * `cached`: `--concurrency` callers asking for the users' tokens round-robin for
//!   `--seconds`, served from the vault.
//!
//! Prints one line per round and mode: requests, requests/s, p50, p99, failures.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use tokio::sync::Mutex;

#[derive(Parser, Clone)]
struct Args {
    /// Keycloak's base URL.
    #[arg(long)]
    keycloak: String,
    #[arg(long)]
    realm: String,
    /// The token API's base URL.
    #[arg(long)]
    api: String,
    /// The users' client (confidential, direct grants on) and its secret.
    #[arg(long, default_value = "web")]
    client: String,
    #[arg(long)]
    client_secret: String,
    /// The caller's client (service account) and its secret.
    #[arg(long, default_value = "backend")]
    caller: String,
    #[arg(long)]
    caller_secret: String,
    /// Users `bench-0` … `bench-{users-1}`, password `bench-pass`.
    #[arg(long, default_value_t = 200)]
    users: usize,
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Seconds of each `cached` round.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Run (through `sh -c`) before each `refresh` round: drops the kept access tokens.
    #[arg(long)]
    reset_cmd: String,
}

struct Load {
    args: Args,
    http: reqwest::Client,
    caller_token: String,
}

struct Figures {
    latencies: Vec<Duration>,
    failures: usize,
    elapsed: Duration,
}

impl Figures {
    fn line(mut self, label: &str) -> String {
        self.latencies.sort();
        let at = |q: f64| {
            let n = self.latencies.len();
            if n == 0 {
                return 0.0;
            }
            let i = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
            self.latencies[i].as_secs_f64() * 1000.0
        };
        format!(
            "{label:<22} {:>8} {:>10.0} {:>9.1}ms {:>9.1}ms {:>8}",
            self.latencies.len(),
            self.latencies.len() as f64 / self.elapsed.as_secs_f64(),
            at(0.50),
            at(0.99),
            self.failures
        )
    }
}

impl Load {
    fn token_url(&self) -> String {
        format!(
            "{}/realms/{}/protocol/openid-connect/token",
            self.args.keycloak, self.args.realm
        )
    }

    async fn grant(
        &self,
        form: &[(&str, &str)],
        client: &str,
        secret: &str,
    ) -> anyhow::Result<Value> {
        let answer = self
            .http
            .post(self.token_url())
            .basic_auth(client, Some(secret))
            .form(form)
            .send()
            .await?;
        let status = answer.status();
        let body: Value = answer.json().await.context("token endpoint: not JSON")?;
        if !status.is_success() {
            bail!("token endpoint: {status} {}", body["error"]);
        }
        Ok(body)
    }

    async fn login(&self, user: &str) -> anyhow::Result<(String, String, String)> {
        let body = self
            .grant(
                &[
                    ("grant_type", "password"),
                    ("username", user),
                    ("password", "bench-pass"),
                    ("scope", "openid"),
                ],
                &self.args.client,
                &self.args.client_secret,
            )
            .await?;
        let refresh = body["refresh_token"].as_str().context("refresh_token")?;
        let claims = claims(body["access_token"].as_str().context("access_token")?)?;
        let sub = claims["sub"].as_str().context("sub")?.to_string();
        let sid = claims["sid"].as_str().context("sid")?.to_string();
        Ok((sub, sid, refresh.to_string()))
    }

    async fn store(&self, user_id: &str, session_id: &str, token: &str) -> anyhow::Result<()> {
        let answer = self
            .http
            .put(format!("{}/v1/tokens", self.args.api))
            .bearer_auth(&self.caller_token)
            .json(
                &json!({"realm": self.args.realm, "userId": user_id, "sessionId": session_id,
                          "clientId": self.args.client, "tokenType": "refresh", "token": token}),
            )
            .send()
            .await?;
        let body: Value = answer.json().await?;
        if body["stored"] != json!(true) {
            bail!("PUT /v1/tokens: {body}");
        }
        Ok(())
    }

    async fn access(&self, user_id: &str) -> bool {
        let answer = self
            .http
            .post(format!("{}/v1/tokens/access", self.args.api))
            .bearer_auth(&self.caller_token)
            .json(&json!({"realm": self.args.realm, "userId": user_id,
                          "clientId": self.args.client}))
            .send()
            .await;
        match answer {
            Ok(answer) => answer.status().is_success() && answer.bytes().await.is_ok(),
            Err(_) => false,
        }
    }
}

/// A JWT's claims (not verified: the load only reads its own tokens).
fn claims(jwt: &str) -> anyhow::Result<Value> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).context("not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// Runs `task(i)` for i in 0..count, `concurrency` at a time; or, with `until`, keeps
/// `concurrency` workers going round-robin until then.
async fn drive<F, Fut>(concurrency: usize, count: usize, until: Option<Instant>, task: F) -> Figures
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let task = Arc::new(task);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (task, next) = (task.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    match until {
                        Some(end) if Instant::now() >= end => break,
                        None if i >= count => break,
                        _ => {}
                    }
                    let sent = Instant::now();
                    if task(i % count).await {
                        latencies.push(sent.elapsed());
                    } else {
                        failures += 1;
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    let mut figures = Figures {
        latencies: Vec::new(),
        failures: 0,
        elapsed: Duration::ZERO,
    };
    for worker in workers {
        if let Ok((latencies, failures)) = worker.await {
            figures.latencies.extend(latencies);
            figures.failures += failures;
        }
    }
    figures.elapsed = started.elapsed();
    figures
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    keycloak_sync::install_tls_provider();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(60))
        .build()?;
    let mut load = Load {
        args: args.clone(),
        http,
        caller_token: String::new(),
    };
    let caller = load
        .grant(
            &[("grant_type", "client_credentials")],
            &args.caller,
            &args.caller_secret,
        )
        .await?;
    load.caller_token = caller["access_token"]
        .as_str()
        .context("caller token")?
        .to_string();
    let load = Arc::new(load);

    // Two logins per user, 8 at a time (Keycloak hashes each password).
    let mut api_users = Vec::new();
    let mut direct = Vec::new();
    for chunk in (0..args.users).collect::<Vec<_>>().chunks(8) {
        let logins = chunk.iter().map(|i| {
            let load = load.clone();
            async move {
                let user = format!("bench-{i}");
                Ok::<_, anyhow::Error>((load.login(&user).await?, load.login(&user).await?))
            }
        });
        for pair in futures_util::future::join_all(logins).await {
            let ((user_id, session_id, refresh), (_, _, second)) = pair?;
            load.store(&user_id, &session_id, &refresh).await?;
            api_users.push(user_id);
            direct.push(second);
        }
    }
    let api_users = Arc::new(api_users);
    let direct = Arc::new(Mutex::new(direct));
    println!(
        "{} users, {} at once; cached rounds of {} s",
        args.users, args.concurrency, args.seconds
    );
    println!(
        "{:<22} {:>8} {:>10} {:>11} {:>11} {:>8}",
        "round", "requests", "req/s", "p50", "p99", "failed"
    );
    for round in 1..=args.rounds {
        let status = std::process::Command::new("sh")
            .args(["-c", &args.reset_cmd])
            .status()?;
        if !status.success() {
            bail!("--reset-cmd failed: {status}");
        }
        let (l, users) = (load.clone(), api_users.clone());
        let refresh = drive(args.concurrency, args.users, None, move |i| {
            let (l, users) = (l.clone(), users.clone());
            async move { l.access(&users[i]).await }
        })
        .await;
        println!("{}", refresh.line(&format!("{round} refresh (API)")));

        let (l, tokens) = (load.clone(), direct.clone());
        let keycloak = drive(args.concurrency, args.users, None, move |i| {
            let (l, tokens) = (l.clone(), tokens.clone());
            async move {
                let token = tokens.lock().await[i].clone();
                let form = [
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                ];
                match l.grant(&form, &l.args.client, &l.args.client_secret).await {
                    Ok(body) => match body["refresh_token"].as_str() {
                        Some(rotated) => {
                            tokens.lock().await[i] = rotated.to_string();
                            true
                        }
                        None => false,
                    },
                    Err(_) => false,
                }
            }
        })
        .await;
        println!("{}", keycloak.line(&format!("{round} refresh (Keycloak)")));

        let (l, users) = (load.clone(), api_users.clone());
        let until = Instant::now() + Duration::from_secs(args.seconds);
        let cached = drive(args.concurrency, args.users, Some(until), move |i| {
            let (l, users) = (l.clone(), users.clone());
            async move { l.access(&users[i]).await }
        })
        .await;
        println!("{}", cached.line(&format!("{round} cached (API)")));
    }
    Ok(())
}
