//! What every long-running Lasect process (`lasect-agent`, `lasect-ingest`,
//! `lasect-api`) sets up the same way, so their logs and their stops look
//! alike:
//!
//! - [`init_logging`]: `tracing` lines on stderr in tracing-subscriber's
//!   default `fmt` format (the end-to-end tests read them), filtered by
//!   `LASECT_LOG` (`EnvFilter` directives such as `info,lasect_agent=debug`;
//!   `info` when unset or not valid), coloured only when stderr is a
//!   terminal, never for journald.
//! - [`shutdown_signal`]: a future that completes on the first SIGINT or
//!   SIGTERM, logging which.

use std::future::Future;
use std::io::IsTerminal as _;

use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// The variable holding the log filter.
pub const LOG_ENV: &str = "LASECT_LOG";

/// Installs the process's log subscriber. A second call keeps the first.
pub fn init_logging() {
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Watches SIGINT and SIGTERM from this call on (a signal that arrives while
/// the process is still starting is not lost) and completes on the first.
/// Must be called inside a tokio runtime. An error means the handlers could
/// not be installed: a service that cannot stop cleanly should not start.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::shutdown_signal;

    fn send(signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(std::process::id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal}");
    }

    /// Both signals stop the future instead of the process (without the
    /// handlers, SIGTERM and SIGINT would kill this test binary). One test,
    /// since a signal reaches every watcher in the process.
    #[tokio::test]
    async fn sigterm_and_sigint_complete_the_future() {
        for signal in ["TERM", "INT"] {
            let shutdown = shutdown_signal().expect("install the handlers");
            send(signal);
            shutdown.await;
        }
    }
}
