//! TLS for every PostgreSQL connection Lasect makes (agent → monitored
//! instances, ingest/API/migrations → store), driven by the libpq DSN keys.
//!
//! tokio-postgres parses only `sslmode=disable|prefer|require` and has no
//! TLS of its own; this crate takes a libpq-style DSN (key=value or
//! `postgres://` URI), removes the TLS keys, and returns the
//! `tokio_postgres::Config` with a rustls connector (ring) that checks the
//! server the way libpq does:
//!
//! | `sslmode`     | TLS                          | server certificate checked             |
//! |---------------|------------------------------|----------------------------------------|
//! | `disable`     | never                        | –                                      |
//! | `allow`       | tried, plaintext if refused  | no (libpq tries plaintext first; we try TLS first) |
//! | `prefer` (default) | tried, plaintext if refused | no                                  |
//! | `require`     | required                     | no; with `sslrootcert`: chain, like `verify-ca` |
//! | `verify-ca`   | required                     | chain to `sslrootcert`, not the host name |
//! | `verify-full` | required                     | chain and host name (`host`, DNS or IP SAN) |
//!
//! - `sslrootcert`: a PEM file of CA certificates, or `system` (the OS trust
//!   store; then `verify-full` is the default and weaker modes are refused,
//!   as in libpq 16). `verify-ca`/`verify-full` without it use
//!   `~/.postgresql/root.crt` and fail clearly when that does not exist.
//! - `sslcert` + `sslkey`: a client certificate (PEM chain, unencrypted PEM key).
//! - "Required" means a server that answers the TLS request with "no" is
//!   refused (`server does not support TLS`), never used in plaintext.
//! - Unix-socket hosts never use TLS (PostgreSQL offers none there); libpq
//!   ignores `sslmode` for them and so do we.
//! - SCRAM channel binding is not offered (tokio-postgres then uses plain
//!   SCRAM-SHA-256).
//!
//! Errors never contain the DSN or its password.

mod connector;
mod dsn;
pub mod source;

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::str::FromStr;

pub use connector::{MakeRustlsConnect, RustlsConnect, RustlsStream};
pub use dsn::{RootCert, SslMode, TlsOptions, Verification, parse as parse_dsn};

/// A connection made with [`PgConfig::connect`].
pub type Connection =
    tokio_postgres::Connection<tokio_postgres::Socket, RustlsStream<tokio_postgres::Socket>>;

/// Why a DSN cannot be used. Never repeats the DSN.
#[derive(Debug, thiserror::Error)]
pub enum DsnError {
    #[error("invalid connection string: {0}")]
    Syntax(String),
    #[error("{0}")]
    Parse(String),
    #[error("sslmode `{0}` is not one of disable, allow, prefer, require, verify-ca, verify-full")]
    SslMode(String),
    #[error(
        "sslmode={mode} checks the server's certificate but no root certificate is given: set \
         sslrootcert to a CA file (or `system`), or create ~/.postgresql/root.crt"
    )]
    NoRootCert { mode: SslMode },
    #[error(
        "sslrootcert=system needs sslmode=verify-full (sslmode={0} would trust any public CA's certificate for any host)"
    )]
    WeakSystemRoots(SslMode),
    #[error("sslcert and sslkey must be given together")]
    ClientCertPair,
    #[error("cannot read {what} {path}: {source}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path} is not usable: {reason}")]
    BadCertificate {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("sslrootcert=system: the system trust store holds no usable certificate")]
    NoSystemRoots,
    #[error("TLS settings: {0}")]
    Rustls(#[source] rustls::Error),
}

/// Why a TLS handshake with the server failed (the source of a
/// tokio-postgres TLS error; [`describe`] prints it).
#[derive(Debug, thiserror::Error)]
pub enum ConnectTlsError {
    #[error("the server's certificate is not signed by a CA in {roots}")]
    UnknownIssuer { roots: String },
    #[error(
        "the server's certificate is not valid for the host name `{host}` (sslmode=verify-full \
         checks the name; verify-ca does not)"
    )]
    WrongHostName { host: String },
    #[error("the server's certificate was rejected: {reason}")]
    Rejected { reason: String },
    #[error("`{0}` cannot be checked against a certificate (not a DNS name or IP address)")]
    InvalidHostName(String),
    #[error("TLS error: {0}")]
    Protocol(#[source] rustls::Error),
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] std::io::Error),
}

/// A parsed DSN with its TLS connector: derefs to the
/// `tokio_postgres::Config` so the usual setters (`dbname`,
/// `application_name`, …) work on it.
#[derive(Clone, Debug)]
pub struct PgConfig {
    config: tokio_postgres::Config,
    tls: TlsOptions,
    connector: MakeRustlsConnect,
}

impl PgConfig {
    /// Parses `dsn` and reads the certificate files it names.
    pub fn parse(dsn: &str) -> Result<Self, DsnError> {
        let (config, mut tls) = dsn::parse(dsn)?;
        tls.resolve_defaults_if_used()?;
        let connector = MakeRustlsConnect::new(&tls)?;
        Ok(Self {
            config,
            tls,
            connector,
        })
    }

    pub fn tls_options(&self) -> &TlsOptions {
        &self.tls
    }

    /// The connector to hand to tokio-postgres (pools, cancel tokens).
    pub fn connector(&self) -> MakeRustlsConnect {
        self.connector.clone()
    }

    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    pub fn into_parts(self) -> (tokio_postgres::Config, MakeRustlsConnect) {
        (self.config, self.connector)
    }

    /// Connects; the returned connection must be polled (spawned).
    pub async fn connect(
        &self,
    ) -> Result<(tokio_postgres::Client, Connection), tokio_postgres::Error> {
        self.config.connect(self.connector.clone()).await
    }
}

impl TlsOptions {
    fn resolve_defaults_if_used(&mut self) -> Result<(), DsnError> {
        if self.tries_tls() {
            self.resolve_defaults()?;
        }
        Ok(())
    }
}

impl FromStr for PgConfig {
    type Err = DsnError;

    fn from_str(dsn: &str) -> Result<Self, DsnError> {
        Self::parse(dsn)
    }
}

impl Deref for PgConfig {
    type Target = tokio_postgres::Config;

    fn deref(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

impl DerefMut for PgConfig {
    fn deref_mut(&mut self) -> &mut tokio_postgres::Config {
        &mut self.config
    }
}

/// An error with its causes, `: `-separated. tokio-postgres' `Display`
/// shows only the top ("error performing TLS handshake"); the cause is
/// what says which certificate or host was wrong.
pub fn describe(e: &tokio_postgres::Error) -> String {
    chain(e)
}

pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
