//! Deployment files checked against the program itself, since no container engine runs
//! here: they parse, every variable they set is a configuration key the daemon (or the
//! provider) knows, probe paths and ports match the defaults, and the image builds with
//! the commands CI runs.

use std::collections::BTreeSet;
use std::time::Duration;

use keycloak_sync::config::{env_name, KEYS};
use yaml_rust2::{Yaml, YamlLoader};

use crate::support::{amqp_url, Daemon, Names, TestDb};

fn repo_file(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn yaml_documents(path: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&repo_file(path))
        .unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn default_of(key: &str) -> &'static str {
    KEYS.iter()
        .find(|k| k.name == key)
        .and_then(|k| k.default)
        .unwrap_or_else(|| panic!("no default for {key}"))
}

fn default_port() -> i64 {
    let listen = default_of("http.listen");
    listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

fn daemon_variables() -> BTreeSet<String> {
    KEYS.iter().map(|k| env_name(k.name)).collect()
}

/// The options of the Java provider, as its README's table lists them (a Java test keeps
/// that table equal to the code's list).
fn provider_variables() -> BTreeSet<String> {
    repo_file("keycloak-spi/README.md")
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(|option| {
            format!(
                "KC_SPI_EVENTS_LISTENER__KEYCLOAK_SYNC__{}",
                option.replace('-', "_").to_uppercase()
            )
        })
        .collect()
}

fn keys_of(map: &Yaml) -> Vec<String> {
    map.as_hash()
        .map(|h| {
            h.keys()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn assert_known(variables: &[String], known: &BTreeSet<String>, place: &str) {
    assert!(!variables.is_empty(), "{place} sets no variables");
    for variable in variables {
        assert!(
            known.contains(variable),
            "{place} sets {variable}, which is not a configuration key"
        );
    }
}

#[test]
fn the_compose_stack_sets_only_known_keys_and_probes_the_right_paths() {
    let compose = &yaml_documents("docker/compose.yaml")[0];
    let services = &compose["services"];
    for name in ["postgres", "rabbitmq", "keycloak", "keycloak-sync"] {
        assert!(!services[name].is_badvalue(), "service {name} missing");
        assert!(
            !services[name]["healthcheck"].is_badvalue(),
            "{name} has no health check"
        );
    }
    let daemon = &services["keycloak-sync"];
    assert_known(
        &keys_of(&daemon["environment"]),
        &daemon_variables(),
        "compose keycloak-sync",
    );
    let listen = daemon["environment"]["KEYCLOAK_SYNC__HTTP__LISTEN"]
        .as_str()
        .unwrap_or_default();
    assert!(listen.ends_with(&format!(":{}", default_port())));
    let health: Vec<&str> = daemon["healthcheck"]["test"]
        .as_vec()
        .map(|v| v.iter().filter_map(Yaml::as_str).collect())
        .unwrap_or_default();
    assert_eq!(health, ["CMD", "keycloak-sync", "probe", "/readyz"]);
    for dependency in ["postgres", "rabbitmq", "keycloak"] {
        assert_eq!(
            daemon["depends_on"][dependency]["condition"].as_str(),
            Some("service_healthy"),
            "keycloak-sync starts after {dependency} is healthy"
        );
    }

    let keycloak = &services["keycloak"];
    let spi: Vec<String> = keys_of(&keycloak["environment"])
        .into_iter()
        .filter(|k| k.starts_with("KC_SPI_EVENTS_LISTENER__KEYCLOAK_SYNC__"))
        .collect();
    assert_known(&spi, &provider_variables(), "compose keycloak");
    assert_eq!(keycloak["build"]["target"].as_str(), Some("keycloak"));
    let import = keycloak["volumes"].as_vec().map(|v| {
        v.iter()
            .filter_map(Yaml::as_str)
            .any(|m| m.contains("realm-acme.json"))
    });
    assert_eq!(import, Some(true), "the realm is imported");

    // The realm enables the listener, admin events with representation, and the roles
    // the Admin API client needs.
    let realm: serde_json::Value =
        serde_json::from_str(&repo_file("docker/realm-acme.json")).expect("realm JSON");
    assert!(realm["eventsListeners"]
        .as_array()
        .is_some_and(|l| l.iter().any(|x| x == "keycloak-sync")));
    assert_eq!(realm["adminEventsEnabled"], true);
    assert_eq!(realm["adminEventsDetailsEnabled"], true);
    let secret = daemon["environment"]["KEYCLOAK_SYNC__KEYCLOAK__CLIENT_SECRET"].as_str();
    let client = realm["clients"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["clientId"] == "keycloak-sync"))
        .expect("client");
    assert_eq!(client["secret"].as_str(), secret);
    assert_eq!(client["serviceAccountsEnabled"], true);
    let roles = realm["users"]
        .as_array()
        .and_then(|u| {
            u.iter()
                .find(|u| u["serviceAccountClientId"] == "keycloak-sync")
        })
        .map(|u| u["clientRoles"]["realm-management"].clone())
        .expect("service account");
    for role in [
        "view-users",
        "query-users",
        "view-events",
        "view-realm",
        "view-clients",
    ] {
        assert!(
            roles
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x == role)),
            "{role}"
        );
    }
}

#[test]
fn the_kubernetes_manifests_match_the_daemon() {
    let documents = yaml_documents("deploy/kubernetes/keycloak-sync.yaml");
    let of_kind = |kind: &str| {
        documents
            .iter()
            .find(|d| d["kind"].as_str() == Some(kind))
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let known = daemon_variables();
    assert_known(&keys_of(&of_kind("ConfigMap")["data"]), &known, "ConfigMap");
    let secret = keys_of(&of_kind("Secret")["stringData"]);
    assert_known(&secret, &known, "Secret");
    for secret_key in ["database.url", "keycloak.client_secret", "vault.keys"] {
        assert!(
            secret.contains(&env_name(secret_key)),
            "{secret_key} belongs in the Secret"
        );
    }

    let deployment = of_kind("Deployment");
    assert!(
        deployment["spec"]["replicas"].as_i64().unwrap_or(0) >= 2,
        "several replicas"
    );
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    let port = container["ports"][0]["containerPort"].as_i64();
    assert_eq!(port, Some(default_port()));
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/metrics"));
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(default_port().to_string().as_str())
    );
    for limit in ["requests", "limits"] {
        assert!(
            !container["resources"][limit]["memory"].is_badvalue(),
            "resources.{limit}"
        );
    }

    // Kubernetes waits for the drain: the grace plus 10 s to close and exit.
    let grace: i64 = of_kind("ConfigMap")["data"]["KEYCLOAK_SYNC__DAEMON__SHUTDOWN_GRACE_SECS"]
        .as_str()
        .unwrap_or(default_of("daemon.shutdown_grace_secs"))
        .parse()
        .expect("grace");
    assert_eq!(
        pod["spec"]["terminationGracePeriodSeconds"].as_i64(),
        Some(grace + 10)
    );
    let pdb = of_kind("PodDisruptionBudget");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn the_image_builds_with_the_commands_ci_runs() {
    let dockerfile = repo_file("docker/Dockerfile");
    let test_script = repo_file("scripts/test.sh");
    for command in ["scripts/build-release.sh", "keycloak-spi/build.sh"] {
        assert!(
            dockerfile.contains(&format!("RUN {command}")),
            "the Dockerfile runs {command}"
        );
        assert!(test_script.contains(command), "CI runs {command}");
    }
    assert!(dockerfile.contains(&format!("EXPOSE {}", default_port())));
    assert!(dockerfile.contains(r#"CMD ["keycloak-sync", "probe", "/healthz"]"#));
    assert!(dockerfile.contains("USER 10001"), "runs as non-root");
    assert!(
        dockerfile.contains("COPY --from=provider-build")
            && dockerfile.contains("/opt/keycloak/providers/")
    );

    let unit = repo_file("deploy/systemd/keycloak-sync.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/keycloak-sync run"));
    let grace: u64 = default_of("daemon.shutdown_grace_secs")
        .parse()
        .expect("grace");
    assert!(unit.contains(&format!("TimeoutStopSec={}", grace + 10)));
}

#[tokio::test]
async fn probe_reports_the_daemons_health_by_exit_status() {
    let db = TestDb::new().await;
    let daemon = Daemon::start(&db.url, &amqp_url(), &Names::random(), &[]);
    daemon.wait_ready(Duration::from_secs(30)).await;
    let probe = |listen: String, path: &'static str| {
        let url = db.url.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_keycloak-sync"))
                .args(["probe", path])
                .env("KEYCLOAK_SYNC__DATABASE__URL", url)
                .env("KEYCLOAK_SYNC__HTTP__LISTEN", listen)
                .output()
                .await
                .expect("probe")
        }
    };
    for path in ["/healthz", "/readyz"] {
        let answer = probe(format!("0.0.0.0:{}", daemon.port), path).await;
        assert!(answer.status.success(), "{path}: {answer:?}");
    }
    let nobody = probe(
        format!("127.0.0.1:{}", crate::support::free_port()),
        "/healthz",
    )
    .await;
    assert_eq!(nobody.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("/healthz"));
}

#[test]
fn every_metric_the_daemon_exports_is_documented() {
    let mut sources = Vec::new();
    let mut pending = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push(std::fs::read_to_string(&path).expect("source"));
            }
        }
    }
    let names: BTreeSet<String> = sources
        .iter()
        .flat_map(|text| {
            text.split('"')
                .filter(|s| s.starts_with("keycloak_sync_") && !s.contains(' '))
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    let readme = repo_file("README.md");
    let operations = repo_file("docs/operations.md");
    for name in names {
        assert!(
            readme.contains(&format!("`{name}")),
            "README's metrics table lacks {name}"
        );
        assert!(
            operations.contains(&name),
            "docs/operations.md says nothing of {name}"
        );
    }
}
