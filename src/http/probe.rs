//! The client side of the endpoints: `keycloak-sync probe`.

use std::time::Duration;

/// `keycloak-sync probe`: GETs `path` from the daemon listening on `listen` (its wildcard
/// address asked on loopback) and reports the answer; the exit status says healthy or not.
pub async fn probe(listen: std::net::SocketAddr, path: &str) -> std::process::ExitCode {
    let mut target = listen;
    if target.ip().is_unspecified() {
        target.set_ip(match target {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let url = format!("http://{target}{path}");
    crate::install_tls_provider();
    let answer = match reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
    {
        Ok(client) => client.get(&url).send().await,
        Err(error) => {
            eprintln!("probe {url}: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match answer {
        Ok(response) if response.status() == reqwest::StatusCode::OK => {
            println!("{url}: 200");
            std::process::ExitCode::SUCCESS
        }
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            eprintln!("{url}: {status} {body}");
            std::process::ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("{url}: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
