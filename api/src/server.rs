//! `lasect-api serve`: migrate the store, start hourly maintenance, serve the routes over HTTPS
//! (or plain HTTP on loopback when configured), stop gracefully on SIGINT/SIGTERM.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::auth::AuthState;
use crate::auth::jwt::JwtKeys;
use crate::auth::users::bootstrap_first_admin_to;
use crate::config::{ApiConfig, Transport};
use crate::routes::{AppState, router};
use crate::store_dsn::StoreDsn;

/// How often partitions are created ahead and expired ones dropped.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(3600);
/// How long in-flight requests may finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a request waits for a store connection before answering 503.
const STORE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
const STORE_MAX_CONNECTIONS: u32 = 10;

/// Installs the ring provider as rustls' process default. Every binary (and test using rustls)
/// calls this first; a second call is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Runs the API until SIGINT or SIGTERM.
pub async fn serve(config: ApiConfig, config_path: &Path) -> anyhow::Result<()> {
    install_crypto_provider();
    // Watched from the start, so a stop asked for during start-up is not lost.
    let shutdown = lasect_service::shutdown_signal().context("install signal handlers")?;
    let dsn = config.store_dsn.clone().context("store_dsn is not set")?;

    // Local problems (TLS files) first: they need no store to be reported.
    let tls = match config.transport() {
        Transport::Https {
            cert_file,
            key_file,
        } => Some(load_tls(&cert_file, &key_file).await?),
        Transport::PlainHttp => None,
    };

    let mut client = connect_store(&dsn).await?;
    lasect_migrations::migrate(&mut client)
        .await
        .context("migrate the store")?;
    lasect_migrations::maintain(&client)
        .await
        .context("maintain the store")?;
    drop(client);

    let pool = store_pool(&dsn, STORE_ACQUIRE_TIMEOUT)?;
    // Fail at start rather than on the first request when the store is unusable.
    sqlx::query("SELECT 1")
        .execute(&pool)
        .await
        .context("connect the API's pool to the store")?;

    let keys = JwtKeys::load_or_create(&config.auth.jwt_key_path(config_path))?;
    let secrets_path = config.secrets.key_path(config_path);
    let secrets = lasect_pki::secrets::KeyFile::open_or_create(&secrets_path)
        .with_context(|| format!("load the secrets key file {}", secrets_path.display()))?;
    rebind_legacy_dsns(&pool, &secrets).await;
    let password_path = config.auth.initial_password_path(config_path);
    if let Some(username) = bootstrap_first_admin_to(&pool, &password_path)
        .await
        .with_context(|| {
            format!(
                "create the first admin (password file {})",
                password_path.display()
            )
        })?
    {
        // A 0600 file, never stdout or the log (both end up in journals and CI output).
        tracing::warn!(
            username,
            path = %password_path.display(),
            "no user existed: created the first admin; its password is in this file (0600). \
             Log in with `lasect login --password-stdin < FILE`, change it with \
             `lasect user passwd`, then delete the file"
        );
    }
    let retention_days = config.auth.audit_retention_days;
    apply_audit_retention(&pool, retention_days).await;

    let listener =
        TcpListener::bind(config.listen).with_context(|| format!("listen on {}", config.listen))?;

    let maintenance = tokio::spawn(maintenance_loop(dsn, pool.clone(), retention_days));
    let run_sweeper = tokio::spawn(run_sweeper(pool.clone()));
    // Every process schedules: the store decides which one fires each firing.
    let backup_scheduler = tokio::spawn(crate::backup_schedule::run(pool.clone()));
    let state = AppState::with_auth(pool.clone(), AuthState::new(keys, config.auth.clone()))
        .with_secrets(secrets);
    // Every process keeps label repositories' instance rows in step (inserts never clash).
    let label_repositories = tokio::spawn(crate::routes::backup_label_repos::run(
        pool.clone(),
        state.secrets.clone(),
    ));
    // Notifications go out from every process (the outbox decides who sends what).
    let notifier = config.alerts.enabled.then(|| {
        tokio::spawn(crate::notify::worker::run(
            pool.clone(),
            state.secrets.clone(),
        ))
    });
    let alerts = config.alerts.enabled.then(|| {
        tokio::spawn(crate::alerts::evaluator::run(
            pool,
            Duration::from_secs(config.alerts.evaluation_interval_secs),
            state.metrics.alerts().clone(),
        ))
    });
    let result = serve_on(listener, router(state), tls, shutdown).await;
    maintenance.abort();
    run_sweeper.abort();
    backup_scheduler.abort();
    label_repositories.abort();
    if let Some(alerts) = alerts {
        alerts.abort();
    }
    if let Some(notifier) = notifier {
        notifier.abort();
    }
    result
}

/// Serves `app` on an already bound listener until `shutdown` completes. With `tls` it speaks
/// HTTPS, otherwise plain HTTP. Logs `lasect-api listening on <scheme>://<addr>` once accepting.
pub async fn serve_on(
    listener: TcpListener,
    app: Router,
    tls: Option<RustlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("read the listening address")?;
    listener
        .set_nonblocking(true)
        .context("make the listener non-blocking")?;
    match tls {
        Some(tls) => {
            let handle = Handle::new();
            let server = axum_server::from_tcp_rustls(listener, tls)
                .context("set up the HTTPS listener")?
                .handle(handle.clone());
            tokio::spawn(async move {
                shutdown.await;
                handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
            });
            tracing::info!("lasect-api listening on https://{addr}");
            server
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await
                .context("serve HTTPS")
        }
        None => {
            let listener =
                tokio::net::TcpListener::from_std(listener).context("set up the HTTP listener")?;
            tracing::warn!("serving plain HTTP (tls.allow_plaintext = true)");
            tracing::info!("lasect-api listening on http://{addr}");
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
            .context("serve HTTP")
        }
    }
}

/// Reads the certificate chain and key (PEM) into a rustls server configuration.
pub async fn load_tls(cert_file: &Path, key_file: &Path) -> anyhow::Result<RustlsConfig> {
    install_crypto_provider();
    let cert = tokio::fs::read(cert_file)
        .await
        .with_context(|| format!("read TLS certificate file {}", cert_file.display()))?;
    let key = tokio::fs::read(key_file)
        .await
        .with_context(|| format!("read TLS key file {}", key_file.display()))?;
    RustlsConfig::from_pem(cert, key).await.with_context(|| {
        format!(
            "load TLS certificate {} with key {}",
            cert_file.display(),
            key_file.display()
        )
    })
}

/// A lazily connecting pool: requests get a 503 while the store is away instead of the API
/// refusing to start or crashing.
pub fn store_pool(dsn: &StoreDsn, acquire_timeout: Duration) -> anyhow::Result<PgPool> {
    let options = dsn.pg_connect_options().context("parse store_dsn")?;
    Ok(PgPoolOptions::new()
        .max_connections(STORE_MAX_CONNECTIONS)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options))
}

/// A tokio-postgres connection, for migrations and maintenance (lasect-migrations uses it).
pub async fn connect_store(dsn: &StoreDsn) -> anyhow::Result<tokio_postgres::Client> {
    let config = dsn.tokio_postgres_config().context("parse store_dsn")?;
    let (client, connection) = config
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!(lasect_pgtls::describe(&e)))
        .context("connect to the store")?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "store connection closed");
        }
    });
    Ok(client)
}

async fn apply_audit_retention(pool: &PgPool, keep_days: u32) {
    match crate::auth::audit::apply_retention(pool, keep_days).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(rows = n, keep_days, "audit retention applied"),
        Err(e) => tracing::warn!(error = %e, "audit retention failed; next try in an hour"),
    }
}

/// Expires runs no agent picked up (so they end even when no ingest runs) every 5 s, and
/// deletes result pages past their TTL every hour.
async fn run_sweeper(pool: PgPool) {
    let mut ticks = tokio::time::interval(Duration::from_secs(5));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        ticks.tick().await;
        if let Err(e) = crate::runs::expire_queued(&pool).await {
            tracing::debug!(error = %e, "cannot expire queued runs");
        }
        match crate::runs::remove_failed_additions(&pool).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(instances = n, "removed instances whose check failed"),
            Err(e) => tracing::debug!(error = %e, "cannot remove instances whose check failed"),
        }
        // A minute after start, then hourly: fresh metadata (versions, replication) of every
        // instance, which migration targets by role rely on.
        if n % 720 == 12 {
            match crate::runs::queue_periodic_metadata(&pool, Duration::from_secs(3000)).await {
                Ok(0) => {}
                Ok(runs) => tracing::info!(runs, "queued instance metadata refreshes"),
                Err(e) => tracing::warn!(error = %e, "cannot queue instance metadata refreshes"),
            }
        }
        // Half an hour after start, then hourly: schema snapshots of every instance.
        if n % 720 == 360 {
            match crate::runs::queue_periodic_snapshots(&pool, Duration::from_secs(3000)).await {
                Ok(0) => {}
                Ok(runs) => tracing::info!(runs, "queued periodic schema snapshots"),
                Err(e) => tracing::warn!(error = %e, "cannot queue periodic schema snapshots"),
            }
        }
        if n.is_multiple_of(720) {
            match crate::runs::delete_expired_results(&pool).await {
                Ok(0) => {}
                Ok(rows) => tracing::info!(rows, "deleted expired run results"),
                Err(e) => tracing::warn!(error = %e, "cannot delete expired run results"),
            }
        }
        n += 1;
    }
}

async fn maintenance_loop(dsn: StoreDsn, pool: PgPool, audit_retention_days: u32) {
    let mut ticks = tokio::time::interval(MAINTENANCE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once; serve() has just maintained, so skip it.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        apply_audit_retention(&pool, audit_retention_days).await;
        match crate::alerts::store::apply_retention(&pool).await {
            Ok((0, 0)) => {}
            Ok((events, alerts)) => tracing::info!(events, alerts, "alert retention applied"),
            Err(e) => tracing::warn!(error = %e, "alert retention failed; next try in an hour"),
        }
        match crate::notify::outbox::apply_retention(&pool).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deliveries = n, "alert notification retention applied"),
            Err(e) => {
                tracing::warn!(error = %e, "notification retention failed; next try in an hour")
            }
        }
        let result = async {
            let client = connect_store(&dsn).await?;
            lasect_migrations::maintain(&client)
                .await
                .context("maintain the store")
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(
                error = format!("{e:#}"),
                "store maintenance failed; next try in an hour"
            );
        }
    }
}

/// DSNs stored before their ciphertext was bound to the row are re-encrypted bound
/// (`secrets_cmd`); a failure is logged and retried at the next start.
async fn rebind_legacy_dsns(pool: &sqlx::PgPool, secrets: &lasect_pki::secrets::KeyFile) {
    let result = match secrets.keyring() {
        Ok(keyring) => crate::secrets_cmd::rebind_legacy(pool, &keyring).await,
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            instances = n,
            "re-encrypted DSNs bound to their instance and agent"
        ),
        Err(e) => tracing::warn!(
            error = format!("{e:#}"),
            "cannot re-encrypt the DSNs stored before their binding"
        ),
    }
}
