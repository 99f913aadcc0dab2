//! Test support for Lasect: real PostgreSQL clusters and real processes.
//!
//! - [`PgCluster`]: `initdb` into a temp dir, a free TCP port on 127.0.0.1 and
//!   a private unix-socket dir; stopped and deleted on `Drop`, also when the
//!   test panics. Works as root by running the server as the unprivileged
//!   `postgres` OS user. Each cluster is private, so tests run in parallel.
//! - [`ChildGuard`]: a child process (one of our binaries) whose output is
//!   captured line by line and which is terminated on `Drop`.
//! - [`ChaosProxy`]: a TCP proxy that can cut and restore the network.
//! - [`binary_path`]: where `cargo build --bins` put a workspace binary.
//! - [`run_with_stdin`]: a command run to its end with a given stdin.
//! - [`assert_every_test_file_declared`]: the check of a crate whose tests are one binary.
//! - [`TestCa`]: a throwaway CA signing server certificates for `ssl = on`
//!   clusters ([`PgOptions::tls`]).

mod binaries;
mod child;
mod cluster;
mod layout;
mod ports;
mod proxy;
mod stdin;
mod tls;

pub use binaries::binary_path;
pub use child::{ChildGuard, without_inherited_lasect_env};
pub use cluster::{LogFormat, PgCluster, PgOptions, REPLICA_APPLICATION_NAME};
pub use layout::{assert_every_test_file_declared, undeclared_test_modules};
pub use ports::free_port;
pub use proxy::ChaosProxy;
pub use stdin::run_with_stdin;
pub use tls::{CertPair, TestCa};

/// Everything the harness can fail at; tests usually `expect()` it.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("migrate: {0}")]
    Migrate(#[from] lasect_migrations::MigrateError),
    #[error("{0}")]
    Other(String),
}

impl HarnessError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
