//! Integration tests against real Postgres (and, where named, RabbitMQ) servers. Each test
//! gets a fresh database; start the servers with `scripts/services.sh up`.

mod apply;
mod daemon;
mod order;
mod outage;
mod replay;
mod support;
mod vault;
