//! The ingest configuration file (TOML, default `/etc/lasect/ingest.toml`).
//!
//! ```toml
//! listen = "0.0.0.0:7443"                 # IP:port; default 0.0.0.0:7443
//! store_dsn = "host=... dbname=lasect user=lasect"   # or LASECT_STORE_DSN (see below)
//! [tls]                                   # required
//! ca_file = "/etc/lasect/tls/ca.pem"      # client certs must chain to it
//! cert_file = "/etc/lasect/tls/ingest.pem"
//! key_file = "/etc/lasect/tls/ingest.key"
//! [limits]                                # optional, defaults shown
//! max_message_bytes = 4194304             # gRPC decoding limit
//! max_uncompressed_bytes = 33554432       # decompressed payload limit
//! max_samples_per_batch = 100000
//! max_inflight_batches = 1024             # pushes being decoded or written at once
//! max_inflight_bytes = 268435456          # their decompressed bytes, at most
//! max_batches_per_agent_per_sec = 20      # per-agent token bucket: refill rate
//! agent_burst_batches = 200               #   and bucket size
//! delta_bases_max_bytes = 536870912       # samples kept for delta pushes (0 = off)
//! [metrics]                               # optional; absent = no /metrics
//! listen = "127.0.0.1:9188"               # plain HTTP, no auth: keep it private
//! [store]                                 # optional, defaults shown
//! pool_size = 8
//! maintenance_interval_secs = 3600
//! [agents]                                # optional, defaults shown
//! refresh_interval_secs = 5               # re-read disabled agents, store agent reports
//! [enrollment]                            # optional; absent = Enroll/Renew refused
//! ca_cert = "/etc/lasect/tls/ca.pem"      # the CA that signs agent certificates
//! ca_key = "/etc/lasect/tls/ca.key"       #   and its key (keep it 0600)
//! cert_validity_secs = 604800             # 7 days; agents renew at about 2/3 of it
//! ```
//!
//! The store DSN is chosen by the rule of [`lasect_pgtls::source`]: the
//! `store_dsn` of a file named with `--config` wins over `LASECT_STORE_DSN`,
//! which wins over the default file's (so deployments that keep the DSN in
//! the environment and the file at its default path work as before). The
//! winner is logged at start.
//!
//! Unknown keys are errors. Unlike the agent config, which is rolled out over
//! a fleet and must survive a rollback, this file sits on a few central
//! hosts: a misspelt limit silently falling back to its default is worse
//! than a service that refuses to start and says why.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use lasect_pgtls::source::{ChosenDsn, DsnCandidates, DsnSource};
use lasect_pki::Secret;
use serde::Deserialize;

/// Where the binary looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/lasect/ingest.toml";

/// What besides the file decides the store DSN.
#[derive(Debug, Clone, Default)]
pub struct DsnInputs {
    /// The file was named with `--config` (not the default path).
    pub config_explicit: bool,
    /// `LASECT_STORE_DSN`, if set and not empty.
    pub env: Option<Secret>,
}

/// A bound against typos, far above what one process can use: each
/// admitted push may hold up to `max_message_bytes` of request.
const MAX_INFLIGHT_BATCHES: usize = 100_000;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub store_dsn: Secret,
    /// Where `store_dsn` came from, and whether `LASECT_STORE_DSN` lost.
    pub store_dsn_source: DsnSource,
    pub env_dsn_ignored: bool,
    pub tls: TlsFiles,
    pub limits: Limits,
    pub store: StoreSettings,
    /// Where `/metrics` is served (plain HTTP), if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    pub agents: AgentsSettings,
    /// `None`: Enroll and Renew answer FAILED_PRECONDITION.
    pub enrollment: Option<Enrollment>,
    pub secrets: SecretsSettings,
    pub runs: RunsSettings,
}

/// `[secrets]`: the key file shared with lasect-api that decrypts the DSNs
/// of instances added through the API (docs/CONTROL.md, "Secrets"). Without
/// it, such instances are not handed to their agents.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretsSettings {
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// `[runs]`: work handed to agents over the Control stream.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RunsSettings {
    /// How long result pages are kept after a run ends (default 7 days).
    pub result_ttl_secs: u64,
    /// A run dispatched or running for its timeout plus this without a
    /// result is failed (default 60).
    pub result_grace_secs: u64,
}

impl Default for RunsSettings {
    fn default() -> Self {
        Self {
            result_ttl_secs: 7 * 24 * 3600,
            result_grace_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsSettings {
    /// Seconds between reads of the disabled agents (a disabled agent is
    /// refused at most this long after the store says so) and writes of
    /// what agents report about themselves (default 5).
    pub refresh_interval_secs: u64,
}

impl Default for AgentsSettings {
    fn default() -> Self {
        Self {
            refresh_interval_secs: 5,
        }
    }
}

/// `[enrollment]`: the CA that signs enrolling and renewing agents' CSRs.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    /// Lifetime of issued agent certificates (default 7 days).
    #[serde(default = "default_cert_validity_secs")]
    pub cert_validity_secs: u64,
}

fn default_cert_validity_secs() -> u64 {
    7 * 24 * 3600
}

/// Shortest and longest agent certificate lifetime accepted in the config.
const MIN_CERT_VALIDITY_SECS: u64 = 10;
const MAX_CERT_VALIDITY_SECS: u64 = 400 * 24 * 3600;

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
    /// Pushes admitted at once (decoding, waiting for a store connection
    /// or writing); beyond it a push is answered `RESOURCE_EXHAUSTED` at
    /// once (default 1024: 100 agents draining backlogs keep 400 pushes in
    /// flight, and the more that wait, the larger the groups the writers
    /// commit at once: on 2 cores `make bench` wrote 15 % more rows/s with
    /// 400 in flight than with 192 under the former 256. An admitted push
    /// waits about as long as the store takes to write what is ahead of
    /// it, half a second there; memory is bounded by `max_inflight_bytes`).
    pub max_inflight_batches: usize,
    /// Decompressed bytes those pushes may hold together, by their declared
    /// size (default 256 MiB; at least `max_uncompressed_bytes`).
    pub max_inflight_bytes: usize,
    /// Sustained pushes per second one agent may make (default 20: an agent
    /// at a 10 s interval replays its backlog at 200× real time).
    pub max_batches_per_agent_per_sec: u32,
    /// Pushes an agent may make in a burst above that rate (default 200).
    pub agent_burst_batches: u32,
    /// Memory for the samples kept as bases of agents' delta pushes
    /// (default 512 MiB: about 5,000 agents of a mid-sized server's
    /// families; past it the least recently seen agents send whole
    /// batches until they have bases again). 0 turns delta pushes off.
    pub delta_bases_max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 << 20,
            max_uncompressed_bytes: 32 << 20,
            max_samples_per_batch: 100_000,
            max_inflight_batches: 1024,
            max_inflight_bytes: 256 << 20,
            max_batches_per_agent_per_sec: 20,
            agent_burst_batches: 200,
            delta_bases_max_bytes: 512 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Connections to the store (default 8), in all: two of them (one when
    /// it is 2) are the writers' own, the rest serve everything else. One
    /// more than it says is opened when it is 1.
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
    pub store_dsn: Option<Secret>,
    pub tls: TlsFiles,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub store: StoreSettings,
    #[serde(default)]
    pub metrics: Option<MetricsFile>,
    #[serde(default)]
    pub agents: AgentsSettings,
    #[serde(default)]
    pub enrollment: Option<Enrollment>,
    #[serde(default)]
    pub secrets: SecretsSettings,
    #[serde(default)]
    pub runs: RunsSettings,
}

/// `[metrics]`: present means served.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsFile {
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
}

fn default_metrics_listen() -> String {
    "127.0.0.1:9188".to_owned()
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
    /// Reads, parses and validates the file at `path`; the store DSN is
    /// chosen from it and `inputs` (module docs).
    pub fn load(path: &Path, inputs: DsnInputs) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path, inputs)
    }

    /// Parses and validates config text read from `path`.
    pub fn from_toml(text: &str, path: &Path, inputs: DsnInputs) -> Result<Self, ConfigError> {
        let mut file: ConfigFile = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let chosen = DsnCandidates {
            flag: None,
            config_path: path.to_owned(),
            config_explicit: inputs.config_explicit,
            file: file.store_dsn.take(),
            env: inputs.env,
        }
        .choose();
        let (source, env_ignored) = match chosen {
            Some(c) => {
                file.store_dsn = Some(c.dsn);
                (c.source, c.env_ignored)
            }
            // Reported by `validate` as a missing field.
            None => (DsnSource::Env, false),
        };
        file.validate(source, env_ignored)
    }

    /// The start-up log line naming the DSN's source and server, never its password.
    pub fn describe_store_dsn(&self) -> String {
        ChosenDsn {
            dsn: self.store_dsn.expose_secret(),
            source: self.store_dsn_source.clone(),
            env_ignored: self.env_dsn_ignored,
        }
        .describe()
    }
}

impl ConfigFile {
    /// Checks every field and reports every problem found, one per field.
    /// `store_dsn` is the one already chosen, from `store_dsn_source`.
    pub fn validate(
        self,
        store_dsn_source: DsnSource,
        env_dsn_ignored: bool,
    ) -> Result<Config, ConfigError> {
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
            Some(dsn) if dsn.expose_secret().trim().is_empty() => {
                bad("store_dsn", "is empty".to_owned());
                None
            }
            Some(dsn) => {
                // The parse error text never contains the DSN itself.
                if let Err(e) = lasect_pgtls::PgConfig::parse(dsn.expose_secret()) {
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
            ("limits.max_inflight_batches", l.max_inflight_batches),
            ("limits.max_inflight_bytes", l.max_inflight_bytes),
            (
                "limits.max_batches_per_agent_per_sec",
                l.max_batches_per_agent_per_sec as usize,
            ),
            ("limits.agent_burst_batches", l.agent_burst_batches as usize),
            ("store.pool_size", self.store.pool_size),
        ] {
            if value == 0 {
                bad(field, "must be greater than 0".to_owned());
            }
        }
        if l.max_inflight_bytes < l.max_uncompressed_bytes {
            bad(
                "limits.max_inflight_bytes",
                format!(
                    "must be at least limits.max_uncompressed_bytes ({}), or the largest \
                     allowed batch could never be admitted",
                    l.max_uncompressed_bytes
                ),
            );
        }
        if l.max_inflight_batches > MAX_INFLIGHT_BATCHES {
            bad(
                "limits.max_inflight_batches",
                format!("must be at most {MAX_INFLIGHT_BATCHES}"),
            );
        }
        let metrics_listen = match &self.metrics {
            None => None,
            Some(m) => match m.listen.parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    bad(
                        "metrics.listen",
                        format!(
                            "`{}` is not an IP:port address (e.g. 127.0.0.1:9188)",
                            m.listen
                        ),
                    );
                    None
                }
            },
        };
        if self.store.maintenance_interval_secs == 0 {
            bad(
                "store.maintenance_interval_secs",
                "must be greater than 0".to_owned(),
            );
        }

        if !(1..=3600).contains(&self.agents.refresh_interval_secs) {
            bad(
                "agents.refresh_interval_secs",
                "must be between 1 and 3600".to_owned(),
            );
        }
        if let Some(e) = &self.enrollment {
            for (field, path) in [
                ("enrollment.ca_cert", &e.ca_cert),
                ("enrollment.ca_key", &e.ca_key),
            ] {
                if let Some(reason) = unreadable_file(path) {
                    bad(field, reason);
                }
            }
            if !(MIN_CERT_VALIDITY_SECS..=MAX_CERT_VALIDITY_SECS).contains(&e.cert_validity_secs) {
                bad(
                    "enrollment.cert_validity_secs",
                    format!(
                        "must be between {MIN_CERT_VALIDITY_SECS} and {MAX_CERT_VALIDITY_SECS}"
                    ),
                );
            }
        }

        // The API creates the key file on its first start, which may come after ingest's:
        // a missing file is read when first needed (and reported then), not refused here.
        if self
            .secrets
            .key_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            bad("secrets.key_file", "is empty".to_owned());
        }
        if !(60..=366 * 24 * 3600).contains(&self.runs.result_ttl_secs) {
            bad(
                "runs.result_ttl_secs",
                "must be between 60 and 31622400 (366 days)".to_owned(),
            );
        }
        if !(5..=3600).contains(&self.runs.result_grace_secs) {
            bad(
                "runs.result_grace_secs",
                "must be between 5 and 3600".to_owned(),
            );
        }

        match (listen, store_dsn) {
            (Some(listen), Some(store_dsn)) if errors.is_empty() => Ok(Config {
                listen,
                store_dsn,
                store_dsn_source,
                env_dsn_ignored,
                tls: self.tls,
                limits: self.limits,
                store: self.store,
                metrics_listen,
                agents: self.agents,
                enrollment: self.enrollment,
                secrets: self.secrets,
                runs: self.runs,
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
