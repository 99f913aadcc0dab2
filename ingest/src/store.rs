//! Opening the store at startup: migrate, maintain once, build the pool,
//! and keep maintaining in the background.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::partitions::PartitionCache;
use crate::{ErrorChain, IngestError};

/// How long a push waits for a free connection (or a new one) before it
/// is answered `UNAVAILABLE` and the agent retries later.
const POOL_TIMEOUT: Duration = Duration::from_secs(10);

/// Migrates the store, runs one maintenance pass and returns a pool of
/// `size` connections.
pub async fn open(config: &Config, size: usize) -> Result<Pool, IngestError> {
    let pg_config: lasect_pgtls::PgConfig = config
        .store_dsn
        .expose_secret()
        .parse()
        .map_err(IngestError::StoreDsn)?;

    // A dedicated connection: the migration lock is a session lock.
    let (mut client, connection) = pg_config
        .connect()
        .await
        .map_err(IngestError::StoreConnect)?;
    let connection = tokio::spawn(connection);
    let report = lasect_migrations::migrate(&mut client)
        .await
        .map_err(IngestError::Migrate)?;
    tracing::info!(applied = report.applied.len(), "store schema is up to date");
    lasect_migrations::maintain(&client)
        .await
        .map_err(IngestError::Migrate)?;
    drop(client);
    // The connection task ends once the client is gone; its result is moot.
    let _ = connection.await;

    pool(config, size)
}

/// A pool of at most `size` connections to the store of `config`.
pub fn pool(config: &Config, size: usize) -> Result<Pool, IngestError> {
    let (pg_config, tls) = config
        .store_dsn
        .expose_secret()
        .parse::<lasect_pgtls::PgConfig>()
        .map_err(IngestError::StoreDsn)?
        .into_parts();
    let manager = Manager::from_config(
        pg_config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_TIMEOUT))
        .create_timeout(Some(POOL_TIMEOUT))
        .build()
        .map_err(IngestError::Pool)
}

/// Runs `maintain` every `interval` (the first pass ran in [`open`]). A
/// failed pass is logged and retried at the next tick: partitions for
/// incoming rows are also created on demand, so nothing waits for it.
pub fn spawn_maintenance(
    pool: Pool,
    partitions: PartitionCache,
    interval: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate
        loop {
            ticks.tick().await;
            let result = match pool.get().await {
                Ok(client) => {
                    let client: &tokio_postgres::Client = &client;
                    lasect_migrations::maintain(client)
                        .await
                        .map_err(|e| ErrorChain(&e).to_string())
                }
                Err(e) => Err(ErrorChain(&e).to_string()),
            };
            // Maintenance may have dropped partitions this process remembers.
            partitions.forget_all();
            if let Err(error) = result {
                tracing::warn!(%error, "store maintenance failed; retrying at the next interval");
            }
        }
    })
}
