//! How the store's statements are sent: prepared by name (parsed once per connection) where
//! that is safe, unnamed where a connection pooler in transaction mode sits in between.
//!
//! Such a pooler (PgBouncer before 1.21 and many managed offerings) hands each transaction
//! to whichever server connection is free, so a statement prepared by name in one
//! transaction is unknown — or, worse, another client's statement of the same name — in
//! the next. Nothing depends on configuring it: every connection starts at a "home" (its
//! application name carries the backend pid it was opened on, which poolers carry over to
//! each server connection they hand it), and every transaction first checks that it still
//! runs there, in its `BEGIN` — before any named statement can run. The first transaction
//! that finds itself elsewhere turns named statements off for the process (said once in
//! the log); connections that still hold named statements are closed instead of reused.
//! The error such a pooler causes (a prepared statement missing, already there, or with
//! other parameters) turns them off too, so the retry that follows succeeds.
//! `database.prepared_statements = false` turns them off from the start.

use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{Connection, Executor, FromRow, PgConnection, Postgres};

/// Whether statements are prepared by name. Only ever turned off.
static PREPARE_BY_NAME: AtomicBool = AtomicBool::new(true);

pub(crate) fn by_name() -> bool {
    PREPARE_BY_NAME.load(Ordering::Relaxed)
}

/// Named statements off from the start (`database.prepared_statements = false`).
pub(crate) fn configured_off() {
    PREPARE_BY_NAME.store(false, Ordering::Relaxed);
}

/// A statement.
pub(crate) fn query(sql: &str) -> Query<'_, Postgres, PgArguments> {
    sqlx::query(sql).persistent(by_name())
}

/// A statement whose rows are read as `O`.
pub(crate) fn query_as<'q, O>(sql: &'q str) -> QueryAs<'q, Postgres, O, PgArguments>
where
    O: for<'r> FromRow<'r, PgRow>,
{
    sqlx::query_as(sql).persistent(by_name())
}

/// A statement whose first column is read as `O`.
pub(crate) fn query_scalar<'q, O>(sql: &'q str) -> QueryScalar<'q, Postgres, O, PgArguments>
where
    (O,): for<'r> FromRow<'r, PgRow>,
{
    sqlx::query_scalar(sql).persistent(by_name())
}

/// The application name of a connection at home, as SQL: where it was opened. One
/// literal for both the setting and the check, so the two cannot drift apart.
macro_rules! home_name {
    () => {
        "'keycloak-sync (pid ' || pg_backend_pid() || ')'"
    };
}

/// Run when a connection opens: its home is the server connection it is on now, which
/// its application name then names (poolers carry a client's application name over to
/// each server connection they hand it). A server connection is the home of one client
/// only: one already claimed (a pooler handed it to a second client) makes this client
/// homeless, and its first transaction turns named statements off.
pub(crate) async fn set_home(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    if by_name() {
        // One simple query: one implicit transaction, so one server connection.
        conn.execute(concat!(
            "SELECT set_config('application_name', ",
            "CASE WHEN coalesce(current_setting('keycloak_sync.home', true), '') = '' ",
            "THEN ",
            home_name!(),
            " ELSE 'keycloak-sync (shared)' END, false); ",
            "SELECT set_config('keycloak_sync.home', 'claimed', false)"
        ))
        .await?;
    }
    Ok(())
}

/// Put before a transaction's `BEGIN` (in the same simple query, so on the same server
/// connection and, as Postgres includes statements before a `BEGIN` in its transaction,
/// part of it) while statements are named: a division by zero unless the transaction runs
/// where its connection was opened. It fails before `BEGIN`, so nothing is left open.
pub(crate) const HOME_CHECK: &str = concat!(
    "SELECT 1 / (current_setting('application_name') = ",
    home_name!(),
    ")::int"
);

/// Whether `error` is the home check failing (no other statement of a `BEGIN` divides).
pub(crate) fn is_away_from_home(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("22012"))
}

/// Whether `error` is what a transaction pooler does to named statements: a name missing
/// (26000), already there (42P05), or standing for a statement of other parameters.
pub(crate) fn is_pooler_symptom(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("26000" | "42P05") => true,
            Some("08P01") => db.message().contains("prepared statement"),
            _ => false,
        },
        _ => false,
    }
}

/// A pooler in transaction mode was noticed: named statements off, said once.
pub(crate) fn pooler_noticed(how: &str) {
    if PREPARE_BY_NAME.swap(false, Ordering::Relaxed) {
        tracing::warn!(
            how,
            "a connection pooler in transaction mode sits in front of Postgres: statements \
             are no longer prepared by name (database.prepared_statements = false says so \
             from the start)"
        );
    }
}

/// Whether a connection may be used now: not while it holds statements prepared by name
/// after they were turned off (they belong to another server connection by now).
pub(crate) fn usable(conn: &PgConnection) -> bool {
    by_name() || conn.cached_statements_size() == 0
}
