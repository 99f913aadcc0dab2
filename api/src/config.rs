//! `api.toml`, the API's configuration.
//!
//! ```toml
//! listen = "127.0.0.1:8443"          # default
//! store_dsn = "host=… dbname=…"      # required here or in LASECT_STORE_DSN (see below)
//! [tls]                              # HTTPS is the default
//! cert_file = "/etc/lasect/tls/api.pem"   # default
//! key_file = "/etc/lasect/tls/api.key"    # default
//! allow_plaintext = false            # plain HTTP, only allowed when `listen` is loopback
//! [auth]                             # see crate::auth::settings
//! [secrets]
//! key_file = "/etc/lasect/secrets.key"   # default: secrets.key beside api.toml; created
//!                                        # (0600) if missing; ingest reads the same file
//! [alerts]
//! enabled = true                     # evaluate alert rules in this process (default true)
//! evaluation_interval_secs = 15      # 1 to 3600; every API process may evaluate, the
//!                                    # store lets one do each round (docs/ALERTS.md)
//! ```
//!
//! The store DSN follows the rule of [`lasect_pgtls::source`]: `--store-dsn`, then the
//! `store_dsn` of a file named with `--config`, then `LASECT_STORE_DSN`, then the default
//! file's. The winner is logged when a command starts.
//!
//! Unknown keys are errors: the API runs centrally, so a typo should stop it rather than be
//! silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use lasect_pgtls::source::{ChosenDsn, DsnCandidates};
use serde::Deserialize;

use crate::store_dsn::StoreDsn;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/lasect/api.toml";
pub use lasect_pgtls::source::{DsnSource, STORE_DSN_ENV};

/// What besides the file decides the store DSN.
#[derive(Debug, Clone, Default)]
pub struct DsnInputs {
    /// `--store-dsn`.
    pub flag: Option<String>,
    /// The file was named with `--config` (not the default path).
    pub config_explicit: bool,
    /// `LASECT_STORE_DSN`, if set and not empty.
    pub env: Option<String>,
}

impl DsnInputs {
    /// `flag` and `config_explicit` from the command line, `env` from the environment.
    pub fn from_env(flag: Option<String>, config_explicit: bool) -> Result<Self, ConfigError> {
        Ok(Self {
            flag,
            config_explicit,
            env: lasect_pgtls::source::env_store_dsn().map_err(ConfigError::Env)?,
        })
    }

    /// Applies the precedence to `file_dsn`, the `store_dsn` of `path` (if it was read).
    pub fn choose(self, path: &Path, file_dsn: Option<StoreDsn>) -> Option<ChosenDsn<StoreDsn>> {
        DsnCandidates {
            flag: self.flag.map(StoreDsn::new),
            config_path: path.to_owned(),
            config_explicit: self.config_explicit,
            file: file_dsn,
            env: self.env.map(StoreDsn::new),
        }
        .choose()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on. Default `127.0.0.1:8443`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// DSN of the central store; once loaded, the one chosen (module docs).
    #[serde(default)]
    pub store_dsn: Option<StoreDsn>,
    /// Where `store_dsn` came from and whether `LASECT_STORE_DSN` lost; set by [`Self::load`].
    #[serde(skip)]
    pub store_dsn_source: Option<DsnSource>,
    #[serde(skip)]
    pub env_dsn_ignored: bool,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub auth: crate::auth::AuthConfig,
    #[serde(default)]
    pub secrets: SecretsConfig,
    #[serde(default)]
    pub alerts: AlertsConfig,
}

/// `[alerts]`: the alert evaluator of this process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Run the evaluator here. Default true (several processes share the rounds).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Seconds between rounds, 1 to 3600. Default 15.
    #[serde(default = "default_evaluation_interval")]
    pub evaluation_interval_secs: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            evaluation_interval_secs: default_evaluation_interval(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_evaluation_interval() -> u64 {
    15
}

/// `[secrets]`: the AES-256-GCM key file of instance DSNs (docs/CONTROL.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl SecretsConfig {
    /// `key_file`, or `secrets.key` beside the configuration file.
    pub fn key_path(&self, config_path: &Path) -> PathBuf {
        match &self.key_file {
            Some(p) => p.clone(),
            None => config_path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join("secrets.key"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate (chain) of the API. Default `/etc/lasect/tls/api.pem`.
    #[serde(default = "default_cert_file")]
    pub cert_file: PathBuf,
    /// PEM private key of the API. Default `/etc/lasect/tls/api.key`.
    #[serde(default = "default_key_file")]
    pub key_file: PathBuf,
    /// Serve plain HTTP. Only accepted when `listen` is a loopback address. Default false.
    #[serde(default)]
    pub allow_plaintext: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: default_cert_file(),
            key_file: default_key_file(),
            allow_plaintext: false,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}

fn default_cert_file() -> PathBuf {
    PathBuf::from("/etc/lasect/tls/api.pem")
}

fn default_key_file() -> PathBuf {
    PathBuf::from("/etc/lasect/tls/api.key")
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration:\n{}", format_fields(.0))]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Env(lasect_pgtls::source::EnvDsnError),
}

/// One bad field: its dotted name and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

fn format_fields(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// How the API serves, once the configuration is validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Https {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
    PlainHttp,
}

impl ApiConfig {
    /// Parses TOML text as written (no DSN chosen yet). Does not validate.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            // toml's message names the key and shows the line; it is from our own file.
            message: e.to_string(),
        })
    }

    /// Reads and parses `path`, chooses the store DSN from it and `inputs`, validates.
    pub fn load(path: &Path, inputs: DsnInputs) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::from_toml(&text, path)?;
        // None: `validate` reports the missing store_dsn.
        if let Some(chosen) = inputs.choose(path, config.store_dsn.take()) {
            config.store_dsn = Some(chosen.dsn);
            config.store_dsn_source = Some(chosen.source);
            config.env_dsn_ignored = chosen.env_ignored;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every field and reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let mut bad = |field, message: String| errors.push(FieldError { field, message });
        match &self.store_dsn {
            None => bad(
                "store_dsn",
                format!("is required (set it here or in {STORE_DSN_ENV})"),
            ),
            Some(dsn) => {
                if let Err(e) = dsn.validate() {
                    bad("store_dsn", e.to_string());
                }
            }
        }
        if self.tls.allow_plaintext {
            if !self.listen.ip().is_loopback() {
                bad(
                    "tls.allow_plaintext",
                    format!(
                        "plain HTTP is only allowed on a loopback address, but listen is {}",
                        self.listen
                    ),
                );
            }
        } else {
            if self.tls.cert_file.as_os_str().is_empty() {
                bad("tls.cert_file", "must not be empty".to_owned());
            }
            if self.tls.key_file.as_os_str().is_empty() {
                bad("tls.key_file", "must not be empty".to_owned());
            }
        }
        if !(1..=3600).contains(&self.alerts.evaluation_interval_secs) {
            bad(
                "alerts.evaluation_interval_secs",
                format!(
                    "must be 1 to 3600 seconds, not {}",
                    self.alerts.evaluation_interval_secs
                ),
            );
        }
        self.auth.validate(&mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    pub fn transport(&self) -> Transport {
        if self.tls.allow_plaintext {
            Transport::PlainHttp
        } else {
            Transport::Https {
                cert_file: self.tls.cert_file.clone(),
                key_file: self.tls.key_file.clone(),
            }
        }
    }
}
