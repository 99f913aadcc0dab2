//! The ingest configuration file (TOML, default `/etc/lasect/ingest.toml`).
//!
//! ```toml
//! listen = "0.0.0.0:7443"                 # IP:port; default 0.0.0.0:7443
//! store_dsn = "host=... dbname=lasect user=lasect"   # or LASECT_STORE_DSN
//! [tls]                                   # required
//! ca_file = "/etc/lasect/tls/ca.pem"      # client certs must chain to it
//! cert_file = "/etc/lasect/tls/ingest.pem"
//! key_file = "/etc/lasect/tls/ingest.key"
//! [limits]                                # optional, defaults shown
//! max_message_bytes = 4194304             # gRPC decoding limit
//! max_uncompressed_bytes = 33554432       # decompressed payload limit
//! max_samples_per_batch = 100000
//! [store]                                 # optional, defaults shown
//! pool_size = 8
//! maintenance_interval_secs = 3600
//! ```
//!
//! Unknown keys are errors. Unlike the agent config, which is rolled out over
//! a fleet and must survive a rollback, this file sits on a few central
//! hosts: a misspelt limit silently falling back to its default is worse
//! than a service that refuses to start and says why.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the binary looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/lasect/ingest.toml";

/// A secret string (a DSN that may hold a password). Its `Debug` and
/// `Display` print `***`; use [`SecretString::expose`] only where the value
/// is handed to the library that needs it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub store_dsn: SecretString,
    pub tls: TlsFiles,
    pub limits: Limits,
    pub store: StoreSettings,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM bundle of the Lasect CA: agent client certificates must chain to it.
    pub ca_file: PathBuf,
    /// PEM certificate chain of this server.
    pub cert_file: PathBuf,
    /// PEM private key of `cert_file`.
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest encoded gRPC message accepted (default 4 MiB).
    pub max_message_bytes: usize,
    /// Largest decompressed payload accepted (default 32 MiB).
    pub max_uncompressed_bytes: usize,
    /// Most samples accepted in one batch (default 100 000).
    pub max_samples_per_batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 << 20,
            max_uncompressed_bytes: 32 << 20,
            max_samples_per_batch: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Connections to the store (default 8).
    pub pool_size: usize,
    /// Seconds between partition maintenance runs (default 3600).
    pub maintenance_interval_secs: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            pool_size: 8,
            maintenance_interval_secs: 3600,
        }
    }
}

/// The file as written; `validate` turns it into a [`Config`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub store_dsn: Option<SecretString>,
    pub tls: TlsFiles,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub store: StoreSettings,
}

fn default_listen() -> String {
    "0.0.0.0:7443".to_owned()
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("invalid configuration:\n  {}", list(.0))]
    Invalid(Vec<FieldError>),
}

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  ")
}

impl Config {
    /// Reads, parses and validates the file at `path`. `dsn_override` (the
    /// value of `LASECT_STORE_DSN`, if set) replaces `store_dsn`.
    pub fn load(path: &Path, dsn_override: Option<SecretString>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path, dsn_override)
    }

    /// Parses and validates config text; `path` is only used in messages.
    pub fn from_toml(
        text: &str,
        path: &Path,
        dsn_override: Option<SecretString>,
    ) -> Result<Self, ConfigError> {
        let mut file: ConfigFile = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        if let Some(dsn) = dsn_override {
            file.store_dsn = Some(dsn);
        }
        file.validate()
    }
}

impl ConfigFile {
    /// Checks every field and reports every problem found, one per field.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let mut errors = Vec::new();
        let mut bad = |field: &'static str, reason: String| {
            errors.push(FieldError { field, reason });
        };

        let listen = match self.listen.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                bad(
                    "listen",
                    format!(
                        "`{}` is not an IP:port address (e.g. 0.0.0.0:7443)",
                        self.listen
                    ),
                );
                None
            }
        };

        let store_dsn = match self.store_dsn {
            Some(dsn) if dsn.expose().trim().is_empty() => {
                bad("store_dsn", "is empty".to_owned());
                None
            }
            Some(dsn) => {
                // The parse error text never contains the DSN itself.
                if let Err(e) = dsn.expose().parse::<tokio_postgres::Config>() {
                    bad(
                        "store_dsn",
                        format!(
                            "is not a valid connection string: {}",
                            crate::ErrorChain(&e)
                        ),
                    );
                }
                Some(dsn)
            }
            None => {
                bad(
                    "store_dsn",
                    "is missing (set it in the file or in LASECT_STORE_DSN)".to_owned(),
                );
                None
            }
        };

        for (field, path) in [
            ("tls.ca_file", &self.tls.ca_file),
            ("tls.cert_file", &self.tls.cert_file),
            ("tls.key_file", &self.tls.key_file),
        ] {
            if let Some(reason) = unreadable_file(path) {
                bad(field, reason);
            }
        }

        let l = &self.limits;
        for (field, value) in [
            ("limits.max_message_bytes", l.max_message_bytes),
            ("limits.max_uncompressed_bytes", l.max_uncompressed_bytes),
            ("limits.max_samples_per_batch", l.max_samples_per_batch),
            ("store.pool_size", self.store.pool_size),
        ] {
            if value == 0 {
                bad(field, "must be greater than 0".to_owned());
            }
        }
        if self.store.maintenance_interval_secs == 0 {
            bad(
                "store.maintenance_interval_secs",
                "must be greater than 0".to_owned(),
            );
        }

        match (listen, store_dsn) {
            (Some(listen), Some(store_dsn)) if errors.is_empty() => Ok(Config {
                listen,
                store_dsn,
                tls: self.tls,
                limits: self.limits,
                store: self.store,
            }),
            _ => Err(ConfigError::Invalid(errors)),
        }
    }
}

/// Why `path` cannot serve as an input file, if it cannot.
fn unreadable_file(path: &Path) -> Option<String> {
    if path.as_os_str().is_empty() {
        return Some("is empty".to_owned());
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => None,
        Ok(_) => Some(format!("{} is not a regular file", path.display())),
        Err(e) => Some(format!("cannot read {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests;
