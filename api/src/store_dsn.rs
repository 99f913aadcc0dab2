//! The store DSN: a secret (it may carry a password), parsed once with `lasect-pgtls` so both
//! URL (`postgres://…`) and key-value (`host=… dbname=…`) forms work, libpq's TLS keys included
//! (`sslmode` up to `verify-full`, `sslrootcert`, `sslcert`/`sslkey`), then turned into
//! connection options for sqlx (the API's pool) and tokio-postgres (migrations, maintenance)
//! that check the server the same way.

use std::str::FromStr;

use lasect_pgtls::{PgConfig, RootCert, SslMode, Verification};
use lasect_pki::Secret;
use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use tokio_postgres::config::Host;

/// `application_name` the API uses unless the DSN sets one.
const APPLICATION_NAME: &str = "lasect-api";

/// A store DSN. `Debug` prints `StoreDsn(***)`.
#[derive(Clone, Debug, Deserialize)]
#[serde(transparent)]
pub struct StoreDsn(Secret);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DsnError {
    #[error("must not be empty")]
    Empty,
    #[error("cannot be parsed: {0}")]
    Parse(String),
    #[error("names no host; add host=... (or a host in the URL)")]
    MissingHost,
    #[error("names {0} hosts; only one store host is supported")]
    SeveralHosts(usize),
    #[error("the password is not valid UTF-8")]
    PasswordNotUtf8,
}

impl StoreDsn {
    pub fn new(dsn: impl Into<String>) -> Self {
        StoreDsn(Secret::new(dsn))
    }

    /// The DSN itself, for code that must read it (the start-up log's description of it,
    /// which leaves the password out).
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// Checks that the DSN can be used; the same checks as the conversions below.
    pub fn validate(&self) -> Result<(), DsnError> {
        self.pg_connect_options().map(|_| ())
    }

    /// The DSN parsed for tokio-postgres (with its TLS connector), for migrations and
    /// maintenance. Reads the certificate files it names.
    pub fn tokio_postgres_config(&self) -> Result<PgConfig, DsnError> {
        if self.expose_secret().trim().is_empty() {
            return Err(DsnError::Empty);
        }
        // The parse errors name the bad option or file, never a value of the DSN.
        let mut config =
            PgConfig::from_str(self.expose_secret()).map_err(|e| DsnError::Parse(e.to_string()))?;
        // Without a host, tokio-postgres refuses to connect while sqlx would guess from PGHOST:
        // require one so that migrations and the pool reach the same server.
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            return Err(DsnError::MissingHost);
        }
        if config.get_hosts().len() > 1 {
            return Err(DsnError::SeveralHosts(config.get_hosts().len()));
        }
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        Ok(config)
    }

    /// The same DSN as sqlx connection options (sqlx itself only parses URLs).
    pub fn pg_connect_options(&self) -> Result<PgConnectOptions, DsnError> {
        let config = self.tokio_postgres_config()?;
        // Start from nothing the environment could add except what libpq would also use
        // (PGHOST, PGUSER, …), then apply everything the DSN says.
        let mut options = PgConnectOptions::new_without_pgpass();
        if let Some(addr) = config.get_hostaddrs().first() {
            options = options.host(&addr.to_string());
        } else {
            match config.get_hosts().first() {
                Some(Host::Tcp(host)) => options = options.host(host),
                Some(Host::Unix(dir)) => options = options.socket(dir),
                None => {}
            }
        }
        if let Some(port) = config.get_ports().first() {
            options = options.port(*port);
        }
        if let Some(user) = config.get_user() {
            options = options.username(user);
        }
        if let Some(password) = config.get_password() {
            let password = std::str::from_utf8(password).map_err(|_| DsnError::PasswordNotUtf8)?;
            options = options.password(password);
        }
        if let Some(dbname) = config.get_dbname() {
            options = options.database(dbname);
        }
        if let Some(name) = config.get_application_name() {
            options = options.application_name(name);
        }
        let tls = config.tls_options();
        // sqlx's `require` never checks the chain; libpq's does when a root is given.
        let ssl_mode = match (tls.mode, tls.verification()) {
            _ if tls.unix_only => PgSslMode::Disable,
            (SslMode::Disable, _) => PgSslMode::Disable,
            (SslMode::Allow, _) => PgSslMode::Allow,
            (SslMode::Prefer, _) => PgSslMode::Prefer,
            (_, Verification::Full) => PgSslMode::VerifyFull,
            (_, Verification::Chain) => PgSslMode::VerifyCa,
            (_, Verification::None) => PgSslMode::Require,
        };
        if let Some(RootCert::File(path)) = &tls.root_cert {
            options = options.ssl_root_cert(path);
        }
        if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
            options = options.ssl_client_cert(cert).ssl_client_key(key);
        }
        // Timestamps leave the store in UTC whatever the server's default time zone is.
        Ok(options.ssl_mode(ssl_mode).options([("TimeZone", "UTC")]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_not_printed() {
        let dsn = StoreDsn::new("postgres://lasect:hunter2@db/lasect");
        assert_eq!(format!("{dsn:?}"), "StoreDsn(***)");
    }

    #[test]
    fn key_value_and_url_forms_convert() {
        for dsn in [
            "host=127.0.0.1 port=5433 user=lasect password=s3cret dbname=store",
            "postgres://lasect:s3cret@127.0.0.1:5433/store",
        ] {
            let options = StoreDsn::new(dsn).pg_connect_options().expect(dsn);
            assert_eq!(options.get_host(), "127.0.0.1");
            assert_eq!(options.get_port(), 5433);
            assert_eq!(options.get_username(), "lasect");
            assert_eq!(options.get_database(), Some("store"));
            assert_eq!(options.get_application_name(), Some("lasect-api"));
        }
    }

    #[test]
    fn unix_socket_host_converts() {
        let options = StoreDsn::new("host=/run/postgresql dbname=store")
            .pg_connect_options()
            .expect("socket dsn");
        assert_eq!(
            options
                .get_socket()
                .map(|p| p.to_string_lossy().into_owned()),
            Some("/run/postgresql".to_owned())
        );
    }

    #[test]
    fn bad_dsns_are_rejected_without_echoing_them() {
        let cases = [
            ("", DsnError::Empty),
            ("dbname=x", DsnError::MissingHost),
            ("host=a,b dbname=x", DsnError::SeveralHosts(2)),
        ];
        for (dsn, want) in cases {
            assert_eq!(StoreDsn::new(dsn).validate(), Err(want), "{dsn:?}");
        }
        let err = StoreDsn::new("host=a password=hunter2 bogus_option=1")
            .validate()
            .expect_err("unknown option");
        assert!(matches!(err, DsnError::Parse(_)));
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
