//! lasect-ingest: the mTLS gRPC server agents push batches to.
//!
//! A push travels: [`identity`] (agent id from the client certificate) →
//! [`push`] (size-limited decompression of any codec + protobuf, then
//! [`validate`] (wire messages into store-ready rows, all or nothing)) →
//! [`writer`] (queued to a few writer tasks, each storing the pushes waiting
//! in one transaction: dedupe on `(agent, seq)`, instances, binary COPY) →
//! ack. [`run`] wires it together with the store and TLS.
//! Before decoding, [`rate_limit`] (per agent) and [`limits`] (the whole
//! process) refuse what ingest should not take on now; [`metrics`] counts
//! everything and serves `/metrics` when configured.
//!
//! Agent identity lifecycle: [`enroll`] signs CSRs (`Enroll` with a token,
//! `Renew` with the current certificate); [`revocation`] keeps the set of
//! disabled agents, consulted at the TLS handshake (`tls`), on every call
//! ([`server`]) and by every open connection (`connections`); [`reports`]
//! stores what agents say about themselves.

pub mod bases;
pub mod config;
mod connections;
pub mod control;
pub mod enroll;
mod error_chain;
pub mod fuzz_harness;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod partitions;
pub mod push;
pub mod rate_limit;
pub mod reports;
pub mod revocation;
pub mod schema_diff;
pub mod schema_history;
pub mod server;
mod store;
mod tls;
pub mod validate;
pub mod writer;

use std::path::PathBuf;
use std::time::Duration;

use lasect_proto::v1::ingest_server::IngestServer;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::transport::Server;

pub use config::{Config, ConfigError};
pub use error_chain::ErrorChain;

use crate::enroll::{Enroller, SigningCa};
use crate::limits::Admission;
use crate::metrics::Metrics;
use crate::partitions::PartitionCache;
use crate::rate_limit::AgentRateLimiter;
use crate::reports::AgentReports;
use crate::revocation::Revocations;
use crate::server::{Access, IngestService};
use crate::writer::{Sightings, Writers};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("TLS file {path}: {reason}")]
    TlsFile { path: PathBuf, reason: String },
    #[error("TLS setup failed")]
    TlsConfig(#[source] rustls::Error),
    #[error(transparent)]
    Enrollment(#[from] crate::enroll::EnrollSetupError),
    #[error("cannot read the disabled agents from the store: {0}")]
    Revocations(String),
    #[error("store_dsn is not a valid connection string")]
    StoreDsn(#[source] lasect_pgtls::DsnError),
    #[error("cannot connect to the store")]
    StoreConnect(#[source] tokio_postgres::Error),
    #[error("cannot migrate the store")]
    Migrate(#[source] lasect_migrations::MigrateError),
    #[error("cannot build the store connection pool")]
    Pool(#[source] deadpool_postgres::BuildError),
    #[error("cannot start the writer threads")]
    Writers(#[source] std::io::Error),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen for /metrics on {addr}")]
    MetricsBind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC server failed")]
    Serve(#[source] tonic::transport::Error),
}

/// HTTP/2 streams one agent connection may have open at once.
const MAX_STREAMS_PER_CONNECTION: u32 = 32;

/// Writer tasks (each has a store connection of its own, see `store.pool_size`).
/// More writers make smaller groups, so more statements and commits for the
/// same rows: on 2 cores `make bench` (ingest_rows_per_s) measured 1, 2 and
/// 4 writers alike and 8 (one per default pool connection) a quarter slower.
/// Two let one group be written while the other commits.
const WRITER_TASKS: usize = 2;

/// `store.pool_size` split into the writers' connections (one per writer
/// task) and the rest's; each side gets at least one.
fn split_pool(pool_size: usize) -> (usize, usize) {
    let writers = WRITER_TASKS.min(pool_size.saturating_sub(1).max(1));
    (writers, pool_size.saturating_sub(writers).max(1))
}

/// How often the buckets of agents that went quiet are dropped.
const RATE_LIMIT_CLEANUP: Duration = Duration::from_secs(60);

/// Runs the server until `shutdown` completes, then stops accepting, lets
/// in-flight pushes finish and returns.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), IngestError> {
    // Ignored error: a provider is already installed (by main or a test).
    let _ = rustls::crypto::ring::default_provider().install_default();
    if config.env_dsn_ignored {
        tracing::warn!("{}", config.describe_store_dsn());
    } else {
        tracing::info!("{}", config.describe_store_dsn());
    }
    let revocations = Revocations::default();
    let (tls, client_roots) = tls::server_config(&config.tls, revocations.clone())?;
    let signing_ca = SigningCa::load(
        config.enrollment.as_ref(),
        &client_roots,
        &config.tls.ca_file,
    )?;
    // The writers have connections of their own (see `writer::group`), out
    // of `store.pool_size`; everything else shares the rest.
    let (writer_tasks, shared) = split_pool(config.store.pool_size);
    let pool = store::open(&config, shared).await?;
    let writer_pool = store::pool(&config, writer_tasks)?;
    // Disabled agents are known before the first connection is accepted.
    revocations
        .load(&pool)
        .await
        .map_err(IngestError::Revocations)?;
    let reports = AgentReports::default();
    let sightings = Sightings::default();
    let refresh = revocation::spawn_refresh(
        pool.clone(),
        revocations.clone(),
        reports.clone(),
        sightings.clone(),
        Duration::from_secs(config.agents.refresh_interval_secs),
    );
    let enroller = Arc::new(Enroller::new(signing_ca, pool.clone(), revocations.clone()));
    if config.enrollment.is_some() {
        tracing::info!("enrollment is enabled");
    }
    // What is still pending when the server stops is written once more.
    let last_flush = (pool.clone(), reports.clone(), sightings.clone());
    let partitions = PartitionCache::default();
    let maintenance = store::spawn_maintenance(
        pool.clone(),
        partitions.clone(),
        Duration::from_secs(config.store.maintenance_interval_secs),
    );

    let metrics = Metrics::new();
    let admission = Admission::new(&config.limits);
    let rate = AgentRateLimiter::new(&config.limits);
    let metrics_server = match config.metrics_listen {
        Some(addr) => {
            let listener = metrics::bind(addr)
                .await
                .map_err(|source| IngestError::MetricsBind { addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| IngestError::MetricsBind { addr, source })?;
            tracing::info!("metrics listening on {bound}");
            let (m, a) = (metrics.clone(), admission.clone());
            Some(tokio::spawn(async move {
                if let Err(error) = metrics::serve(listener, m, a).await {
                    tracing::error!(%error, "the /metrics server stopped");
                }
            }))
        }
        None => None,
    };
    let forget = {
        let rate = rate.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(RATE_LIMIT_CLEANUP);
            loop {
                ticks.tick().await;
                rate.forget_idle();
            }
        })
    };

    // The queue holds what admission lets in, so admission is the bound
    // that refuses.
    let pg_config: lasect_pgtls::PgConfig = config
        .store_dsn
        .expose_secret()
        .parse()
        .map_err(IngestError::StoreDsn)?;
    let (hub, notices) = control::dispatch::Hub::new(
        pool.clone(),
        control::secrets::DsnDecryptor::new(config.secrets.key_file.clone()),
        config.runs,
    );
    let dispatcher = hub.clone().spawn(pg_config, notices);
    let writers = Writers::spawn(
        writer_pool,
        partitions,
        sightings,
        metrics.clone(),
        writer_tasks,
        config.limits.max_inflight_batches,
    )
    .map_err(IngestError::Writers)?;
    let metrics_for_control = metrics.clone();
    let service = IngestServer::new(IngestService::new(
        writers,
        config.limits,
        admission,
        rate,
        metrics,
        Access {
            revocations: revocations.clone(),
            reports,
            bases: bases::KeptBases::new(config.limits.delta_bases_max_bytes),
        },
        enroller,
    ))
    .max_decoding_message_size(config.limits.max_message_bytes);
    // The Control stream carries result pages and imports: its own limit.
    let control_service =
        lasect_proto::v1::control_server::ControlServer::new(control::service::ControlService {
            hub,
            revocations: revocations.clone(),
            metrics: metrics_for_control,
        })
        .max_decoding_message_size(control::MAX_CONTROL_MESSAGE_BYTES)
        .max_encoding_message_size(control::MAX_CONTROL_MESSAGE_BYTES);
    let router = Server::builder()
        // Requests being received are not admitted yet: bound them per
        // connection (an agent keeps a few pushes in flight, not hundreds).
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .add_service(service)
        .add_service(control_service);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| IngestError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| IngestError::Bind {
        addr: config.listen,
        source,
    })?;
    tracing::info!("lasect-ingest listening on {addr}");

    let (incoming, acceptor) = connections::accept(listener, tls, revocations);
    let result = router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    acceptor.abort();
    dispatcher.abort();
    refresh.abort();
    let (pool, reports, sightings) = last_flush;
    if let Err(error) = reports.flush(&pool).await {
        tracing::warn!(%error, "cannot store the last agent reports");
    }
    if let Err(error) = sightings.flush(&pool).await {
        tracing::warn!(%error, "cannot store the last instance sightings");
    }
    maintenance.abort();
    forget.abort();
    if let Some(server) = metrics_server {
        server.abort();
    }
    tracing::info!("lasect-ingest stopped");
    result.map_err(IngestError::Serve)
}

#[cfg(test)]
mod tests {
    use super::split_pool;

    #[test]
    fn the_pool_is_split_between_the_writers_and_the_rest() {
        assert_eq!(split_pool(8), (2, 6));
        assert_eq!(split_pool(3), (2, 1));
        assert_eq!(split_pool(2), (1, 1));
        // Validation refuses 0; 1 still gets one connection on each side.
        assert_eq!(split_pool(1), (1, 1));
    }
}
