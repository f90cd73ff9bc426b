//! Integration tests against real Postgres (and, where named, RabbitMQ) servers. Each test
//! gets a fresh database; start the servers with `scripts/services.sh up`.

mod apply;
mod backfill;
mod bench_admin;
mod cluster;
mod consent;
mod convergence;
mod daemon;
mod deploy;
mod directory;
mod enrich;
mod expiry;
mod faults;
mod feed;
mod fixtures;
mod import;
mod keycloak;
mod keycloak_fake;
mod order;
mod outage;
mod poolers;
mod reconcile;
mod replay;
mod spi;
mod support;
mod tls;
mod vault;
