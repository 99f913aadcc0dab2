//! Opening a monitored-server session: every connection the agent makes
//! identifies itself (`application_name = lasect-agent`, overriding the
//! DSN) and bounds its statements and lock waits, so a monitoring query
//! can neither run away nor queue behind DDL for long.

use std::time::Duration;

use lasect_pgtls::PgConfig;
use tokio_postgres::Client;

use super::CollectError;

pub const APPLICATION_NAME: &str = "lasect-agent";
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Server-side bound of every statement the agent runs.
const STATEMENT_TIMEOUT: &str = "5s";
/// The agent never waits long for a lock (catalog reads during DDL).
const LOCK_TIMEOUT: &str = "1s";

/// Applies the agent's connection settings to a parsed DSN.
pub fn configure(pg: &mut PgConfig) {
    pg.application_name(APPLICATION_NAME)
        .connect_timeout(CONNECT_TIMEOUT);
}

/// Connects (TLS as the DSN's `sslmode` says) and sets up the session; the
/// connection task is spawned.
pub async fn open(pg: &PgConfig, instance: &str) -> Result<Client, CollectError> {
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, pg.connect())
        .await
        .map_err(|_| CollectError::Timeout(CONNECT_TIMEOUT))?
        .map_err(CollectError::Connect)?;
    let name = instance.to_owned();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(instance = %name, error = %e, "connection closed");
        }
    });
    client
        .batch_execute(&format!(
            "SET statement_timeout = '{STATEMENT_TIMEOUT}'; SET lock_timeout = '{LOCK_TIMEOUT}'"
        ))
        .await
        .map_err(CollectError::Session)?;
    tracing::debug!(instance, database = ?pg.get_dbname(), "connected");
    Ok(client)
}
