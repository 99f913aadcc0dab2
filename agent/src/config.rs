//! The agent's TOML configuration (default `/etc/lasect/agent.toml`).
//!
//! Loading is two steps: [`AgentConfig::from_toml_str`] / [`AgentConfig::load`]
//! parse the file and report unknown keys as warnings rather than errors (an
//! agent rolled back to an older release must still start with a newer config
//! file), then [`AgentConfig::validate`] checks every field and reports all
//! problems at once, each naming its field path.
//!
//! ```toml
//! state_dir = "/var/lib/lasect-agent"
//! [ingest]
//! endpoint = "https://ingest.example.com:7443"
//! server_name = "lasect-ingest"      # optional; default: the endpoint's host
//! [tls]
//! ca_file = "/etc/lasect/tls/ca.pem"
//! # Both or neither; without them the identity stored by `lasect-agent
//! # enroll` in state_dir is used and renewed (see `identity`).
//! cert_file = "/etc/lasect/tls/agent.pem"
//! key_file = "/etc/lasect/tls/agent.key"
//! [collect]
//! interval_secs = 10
//! host = true
//! max_connections = 2                # per instance
//! intervals = { statement = 30, table = 60 }
//! databases = { include = ["*"], exclude = ["tmp_*"] }
//! [[collect.custom]]                 # user-defined SQL metrics, see `custom_config`
//! name = "queue_depth"
//! sql = "SELECT queue, count(*) AS depth FROM jobs GROUP BY queue"
//! labels = ["queue"]
//! values = ["depth"]
//! [sender]
//! max_batches_in_memory = 8640      # held in memory only while the spool cannot be written
//! window = 4                        # pushes in flight at once
//! delta = true                      # send batches as deltas against earlier ones
//! [spool]
//! max_bytes = 1073741824            # oldest metrics batches are dropped beyond it
//! fsync = "every_batch"             # or: fsync_interval_ms = 1000
//! [metrics]
//! listen = "127.0.0.1:9187"         # optional Prometheus endpoint (plain HTTP)
//! [[instances]]
//! name = "main"
//! dsn = "host=/var/run/postgresql dbname=postgres user=lasect_agent"
//! # Read-only runs log in as this unprivileged role (default: dsn); a
//! # superuser or server-file/program/signal role is refused for them
//! # unless allow_privileged_runs = true.
//! run_dsn = "host=/var/run/postgresql dbname=postgres user=lasect_run"
//! intervals = { statement = 10 }    # optional per-instance overrides, also
//!                                     # max_connections and databases
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;
use tonic::codegen::http::Uri;

use crate::identity::{ClientIdentity, IdentityStore};

/// Where the agent looks for its configuration without `--config`.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/lasect/agent.toml";

pub const DEFAULT_STATE_DIR: &str = "/var/lib/lasect-agent";
const MAX_INTERVAL_SECS: u64 = 3600;
/// About 100 days of batches at a 1 s interval; a bound against typos, not a tuning limit.
const MAX_BATCHES_IN_MEMORY: usize = 10_000_000;
const MAX_WINDOW: usize = 64;
/// Enough for a few segments of a few records.
const MIN_SPOOL_BYTES: u64 = 64 << 10;

#[derive(Debug, Clone, Deserialize)]
pub struct AgentConfig {
    /// Directory for the agent's own persistent state (the sequence file, the spool).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    pub ingest: IngestConfig,
    pub tls: TlsConfig,
    #[serde(default)]
    pub collect: CollectConfig,
    #[serde(default)]
    pub sender: SenderConfig,
    #[serde(default)]
    pub spool: SpoolConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub logs: LogsConfig,
    #[serde(default)]
    pub instances: Vec<InstanceConfig>,
    /// `[control]`, see `control_config`.
    #[serde(default)]
    pub control: crate::control_config::ControlConfig,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IngestConfig {
    /// `https://host:port` of lasect-ingest.
    pub endpoint: String,
    /// Name the ingest certificate must carry; defaults to the endpoint's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TlsConfig {
    /// PEM bundle of the Lasect CA, which signs the ingest certificate.
    pub ca_file: PathBuf,
    /// PEM client certificate of this agent (its CN is the agent id). Set
    /// with `key_file`, it takes precedence over the enrolled identity.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// `[logs]`: the `log` family (the server's log files).
#[derive(Debug, Clone, Deserialize)]
pub struct LogsConfig {
    /// Follow the instances' log files (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Replace literal values in logged statements by `?` (default true).
    #[serde(default = "default_true")]
    pub redact: bool,
    /// Longer lines are cut and counted, 256..=1048576 (default 8192).
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// Events and plans sent per `log` round (default interval 1 s); the
    /// rest are dropped and counted, 1..=100000 (default 1000).
    #[serde(default = "default_max_events_per_interval")]
    pub max_events_per_interval: usize,
}

impl LogsConfig {
    /// A multi-line entry's fields may span many lines; this bounds each.
    pub fn max_field_bytes(&self) -> usize {
        self.max_line_bytes.saturating_mul(8)
    }
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            redact: true,
            max_line_bytes: default_max_line_bytes(),
            max_events_per_interval: default_max_events_per_interval(),
        }
    }
}

fn default_max_line_bytes() -> usize {
    8192
}

fn default_max_events_per_interval() -> usize {
    1000
}

#[derive(Debug, Clone, Deserialize)]
pub struct CollectConfig {
    /// Seconds between collection rounds, 1..=3600 (default 10).
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    /// Collect `host_cpu` and `host_memory` (default true).
    #[serde(default = "default_true")]
    pub host: bool,
    /// Seconds between rounds per family (`database`, `statement`, `host`),
    /// each 1..=3600; families not named use their defaults
    /// (`collect::schedule::FamilyKind::default_interval_secs`).
    #[serde(default)]
    pub intervals: BTreeMap<String, u64>,
    /// Connections per instance, 1..=16 (default 2): one to the DSN's
    /// database, the rest rotate over the other databases for the
    /// per-database families (`table`, `index`).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Which databases the per-database families visit (default: every
    /// database that accepts connections, templates excluded).
    #[serde(default)]
    pub databases: DatabaseFilter,
    /// User-defined SQL metrics, run on every instance (`[[collect.custom]]`).
    #[serde(default)]
    pub custom: Vec<crate::custom_config::CustomMetricConfig>,
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self {
            interval_secs: default_interval_secs(),
            host: true,
            intervals: BTreeMap::new(),
            max_connections: default_max_connections(),
            databases: DatabaseFilter::default(),
            custom: Vec::new(),
        }
    }
}

/// Database name patterns; `*` matches any run of characters, `?` one.
/// A database is visited when it matches an `include` pattern (or there
/// are none) and no `exclude` pattern.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DatabaseFilter {
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

const MAX_CONNECTIONS: usize = 16;

fn default_max_connections() -> usize {
    2
}

#[derive(Debug, Clone, Deserialize)]
pub struct SenderConfig {
    /// Batches held in memory while the spool cannot be written (disk full;
    /// default 8640, a day at 10 s); beyond it the oldest is dropped and counted.
    #[serde(default = "default_max_batches_in_memory")]
    pub max_batches_in_memory: usize,
    /// Pushes in flight at once, 1..=64 (default 4).
    #[serde(default = "default_window")]
    pub window: usize,
    /// Send batches as deltas against earlier batches ingest kept (default
    /// true; about half the bytes on the wire). Ingest decides whether it
    /// keeps bases; without them the agent sends whole batches anyway.
    #[serde(default = "default_true")]
    pub delta: bool,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            max_batches_in_memory: default_max_batches_in_memory(),
            window: default_window(),
            delta: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct SpoolConfig {
    /// Bound of the spool files (default 1 GiB, at least 64 KiB).
    #[serde(default = "default_spool_max_bytes")]
    pub max_bytes: u64,
    /// `"every_batch"` (the default unless `fsync_interval_ms` is set).
    #[serde(default)]
    pub fsync: Option<String>,
    /// Fsync at most this many ms after a write instead, 1..=60000.
    #[serde(default)]
    pub fsync_interval_ms: Option<u64>,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            max_bytes: default_spool_max_bytes(),
            fsync: None,
            fsync_interval_ms: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MetricsConfig {
    /// Address of the Prometheus endpoint (`GET /metrics`); none by default.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InstanceConfig {
    /// Unique name of the instance on this agent, `^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$`.
    pub name: String,
    /// libpq-style connection string or URL (may hold a password).
    pub dsn: Dsn,
    /// The connection of the read-only runs (`sql`, `explain`, `export_csv`,
    /// `table_data`, `schema_snapshot`); default: `dsn`. Its login role should
    /// be unprivileged (e.g. granted `pg_read_all_data` and `pg_monitor`): a
    /// superuser or a member of `pg_execute_server_program`,
    /// `pg_read_server_files`, `pg_write_server_files` or `pg_signal_backend`
    /// is refused unless `allow_privileged_runs` (see `ops::privileges`).
    /// Write kinds (opt-in classes) and the instance check use `dsn`.
    #[serde(default)]
    pub run_dsn: Option<Dsn>,
    /// Let read-only runs log in as a privileged role (default false): they
    /// still run in READ ONLY transactions, which do not stop `COPY … TO
    /// PROGRAM`, `pg_read_file`, `pg_terminate_backend` and the like.
    #[serde(default)]
    pub allow_privileged_runs: bool,
    /// Per-family intervals for this instance; override `[collect.intervals]`.
    #[serde(default)]
    pub intervals: BTreeMap<String, u64>,
    /// Overrides `collect.max_connections` for this instance.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Overrides `collect.databases` for this instance.
    #[serde(default)]
    pub databases: Option<DatabaseFilter>,
}

/// A connection string. It may contain a password, so it never prints; the
/// driver gets it through `expose_secret`, parsed by `lasect_pgtls::PgConfig`.
pub type Dsn = lasect_pki::Secret;

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}
fn default_interval_secs() -> u64 {
    10
}
fn default_true() -> bool {
    true
}
fn default_max_batches_in_memory() -> usize {
    8640
}
fn default_window() -> usize {
    4
}
fn default_spool_max_bytes() -> u64 {
    1 << 30
}

/// A parsed configuration plus the keys nobody understood.
#[derive(Debug)]
pub struct LoadedConfig {
    pub config: AgentConfig,
    /// Dotted paths of unknown keys, e.g. `collect.statements`.
    pub unknown_keys: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
}

/// One bad field: its path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem `validate()` found, in field order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: ")?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl AgentConfig {
    /// Reads and parses a config file; see [`AgentConfig::from_toml_str`].
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses TOML; unknown keys are collected, not refused.
    pub fn from_toml_str(text: &str) -> Result<LoadedConfig, toml::de::Error> {
        let deserializer = toml::Deserializer::parse(text)?;
        let mut unknown_keys = Vec::new();
        let config = serde_ignored::deserialize(deserializer, |path| {
            unknown_keys.push(path.to_string());
        })?;
        Ok(LoadedConfig {
            config,
            unknown_keys,
        })
    }

    /// Checks every field, including that the TLS files exist and hold PEM
    /// of the right kind, and that every DSN parses.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = Vec::new();
        let mut bad = |field: &str, message: String| {
            errors.push(FieldError {
                field: field.to_owned(),
                message,
            });
        };

        if self.state_dir.as_os_str().is_empty() {
            bad("state_dir", "must not be empty".into());
        }
        for (field, message) in self.control.problems() {
            bad(&field, message);
        }

        match self.endpoint_host() {
            Ok(host) => {
                let name = self.ingest.server_name.as_deref().unwrap_or(&host);
                let field = if self.ingest.server_name.is_some() {
                    "ingest.server_name"
                } else {
                    "ingest.endpoint"
                };
                if ServerName::try_from(name).is_err() {
                    bad(
                        field,
                        format!("{name:?} is not a valid DNS name or IP address"),
                    );
                }
            }
            Err(message) => bad("ingest.endpoint", message),
        }

        if let Err(m) = check_pem_certs(&self.tls.ca_file) {
            bad("tls.ca_file", m);
        }
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(cert), Some(key)) => {
                if let Err(m) = check_pem_certs(cert) {
                    bad("tls.cert_file", m);
                }
                if let Err(m) = check_pem_key(key) {
                    bad("tls.key_file", m);
                }
            }
            (Some(_), None) => bad(
                "tls.key_file",
                "must be set together with tls.cert_file".into(),
            ),
            (None, Some(_)) => bad(
                "tls.cert_file",
                "must be set together with tls.key_file".into(),
            ),
            (None, None) => {
                if !IdentityStore::new(&self.state_dir).exists() {
                    bad(
                        "tls.cert_file",
                        format!(
                            "not set, and no enrolled identity in {}: run `lasect-agent enroll` \
                             or set tls.cert_file and tls.key_file",
                            self.state_dir.display()
                        ),
                    );
                }
            }
        }

        if !(256..=1 << 20).contains(&self.logs.max_line_bytes) {
            bad(
                "logs.max_line_bytes",
                format!("{} is out of range 256..=1048576", self.logs.max_line_bytes),
            );
        }
        if !(1..=100_000).contains(&self.logs.max_events_per_interval) {
            bad(
                "logs.max_events_per_interval",
                format!(
                    "{} is out of range 1..=100000",
                    self.logs.max_events_per_interval
                ),
            );
        }

        let interval = self.collect.interval_secs;
        if !(1..=MAX_INTERVAL_SECS).contains(&interval) {
            bad(
                "collect.interval_secs",
                format!("{interval} is out of range 1..={MAX_INTERVAL_SECS}"),
            );
        }
        for (field, message) in check_intervals("collect.intervals", &self.collect.intervals) {
            bad(&field, message);
        }
        for (field, message) in check_connections_and_databases(
            "collect",
            Some(self.collect.max_connections),
            Some(&self.collect.databases),
        ) {
            bad(&field, message);
        }
        for (field, message) in crate::custom_config::check("collect.custom", &self.collect.custom)
        {
            bad(&field, message);
        }

        let window = self.sender.window;
        if !(1..=MAX_WINDOW).contains(&window) {
            bad(
                "sender.window",
                format!("{window} is out of range 1..={MAX_WINDOW}"),
            );
        }
        if self.spool.max_bytes < MIN_SPOOL_BYTES {
            bad(
                "spool.max_bytes",
                format!(
                    "{} is below the minimum of {MIN_SPOOL_BYTES}",
                    self.spool.max_bytes
                ),
            );
        }
        match (self.spool.fsync.as_deref(), self.spool.fsync_interval_ms) {
            (Some("every_batch"), Some(_)) => bad(
                "spool.fsync",
                "set either fsync = \"every_batch\" or fsync_interval_ms, not both".into(),
            ),
            (Some("every_batch") | None, _) => {}
            (Some(other), _) => bad(
                "spool.fsync",
                format!("{other:?} is not supported (use \"every_batch\" or fsync_interval_ms)"),
            ),
        }
        if let Some(ms) = self.spool.fsync_interval_ms
            && !(1..=60_000).contains(&ms)
        {
            bad(
                "spool.fsync_interval_ms",
                format!("{ms} is out of range 1..=60000"),
            );
        }

        let max = self.sender.max_batches_in_memory;
        if !(1..=MAX_BATCHES_IN_MEMORY).contains(&max) {
            bad(
                "sender.max_batches_in_memory",
                format!("{max} is out of range 1..={MAX_BATCHES_IN_MEMORY}"),
            );
        }

        if self.instances.is_empty() {
            bad(
                "instances",
                "no instances configured; add at least one [[instances]] table".into(),
            );
        }
        let mut seen = HashSet::new();
        for (i, instance) in self.instances.iter().enumerate() {
            if !is_valid_instance_name(&instance.name) {
                bad(
                    &format!("instances[{i}].name"),
                    format!(
                        "{:?} must match ^[a-zA-Z0-9][a-zA-Z0-9._-]{{0,62}}$",
                        instance.name
                    ),
                );
            } else if !seen.insert(instance.name.as_str()) {
                bad(
                    &format!("instances[{i}].name"),
                    format!("duplicate name {:?}", instance.name),
                );
            }
            if let Err(m) = check_dsn(&instance.dsn) {
                bad(&format!("instances[{i}].dsn"), m);
            }
            if let Some(Err(m)) = instance.run_dsn.as_ref().map(check_dsn) {
                bad(&format!("instances[{i}].run_dsn"), m);
            }
            let prefix = format!("instances[{i}].intervals");
            for (field, message) in check_intervals(&prefix, &instance.intervals) {
                bad(&field, message);
            }
            for (field, message) in check_connections_and_databases(
                &format!("instances[{i}]"),
                instance.max_connections,
                instance.databases.as_ref(),
            ) {
                bad(&field, message);
            }
        }

        if errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationError { errors })
        }
    }

    /// The host part of `ingest.endpoint`, or why the endpoint is unusable.
    fn endpoint_host(&self) -> Result<String, String> {
        endpoint_host(&self.ingest.endpoint)
    }

    /// The client certificate to use: `[tls]` files when set, otherwise
    /// the enrolled identity of the state dir.
    pub fn client_identity(&self) -> ClientIdentity {
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(cert_file), Some(key_file)) => ClientIdentity::Files {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
            },
            _ => ClientIdentity::Enrolled(IdentityStore::new(&self.state_dir)),
        }
    }

    /// The name the ingest certificate is verified against.
    pub fn tls_server_name(&self) -> Option<String> {
        self.ingest
            .server_name
            .clone()
            .or_else(|| self.endpoint_host().ok())
    }

    /// A one-line description for logs; never includes a DSN.
    pub fn summary(&self) -> String {
        let names: Vec<&str> = self.instances.iter().map(|i| i.name.as_str()).collect();
        format!(
            "endpoint={} server_name={} interval_secs={} host={} max_batches_in_memory={} window={} spool_max_bytes={} state_dir={} instances=[{}]",
            self.ingest.endpoint,
            self.tls_server_name().unwrap_or_else(|| "?".into()),
            self.collect.interval_secs,
            self.collect.host,
            self.sender.max_batches_in_memory,
            self.sender.window,
            self.spool.max_bytes,
            self.state_dir.display(),
            names.join(", "),
        )
    }
}

/// Problems of a per-family interval table: unknown family names (a typo
/// would silently keep the default) and out-of-range values.
/// The host part of an `https://host:port` ingest endpoint, or why it is unusable.
pub fn endpoint_host(endpoint: &str) -> Result<String, String> {
    let uri: Uri = endpoint
        .parse()
        .map_err(|e| format!("{endpoint:?} is not a valid URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("{endpoint:?} must use https://"));
    }
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{endpoint:?} has no host"))?;
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(format!("{endpoint:?} must not have a path"));
    }
    // IPv6 literals come bracketed; certificate names do not have brackets.
    Ok(host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned())
}

fn check_intervals(prefix: &str, intervals: &BTreeMap<String, u64>) -> Vec<(String, String)> {
    use crate::collect::schedule::FamilyKind;
    let mut problems = Vec::new();
    for (family, secs) in intervals {
        let field = format!("{prefix}.{family}");
        if FamilyKind::from_name(family).is_none() {
            let known: Vec<&str> = FamilyKind::configurable().map(|f| f.name()).collect();
            problems.push((
                field,
                format!("unknown family; known: {}", known.join(", ")),
            ));
        } else if !(1..=MAX_INTERVAL_SECS).contains(secs) {
            problems.push((
                field,
                format!("{secs} is out of range 1..={MAX_INTERVAL_SECS}"),
            ));
        }
    }
    problems
}

fn check_connections_and_databases(
    prefix: &str,
    max_connections: Option<usize>,
    databases: Option<&DatabaseFilter>,
) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if let Some(max) = max_connections
        && !(1..=MAX_CONNECTIONS).contains(&max)
    {
        problems.push((
            format!("{prefix}.max_connections"),
            format!("{max} is out of range 1..={MAX_CONNECTIONS}"),
        ));
    }
    if let Some(filter) = databases {
        for (list, patterns) in [("include", &filter.include), ("exclude", &filter.exclude)] {
            for (j, pattern) in patterns.iter().enumerate() {
                if pattern.is_empty() || pattern.len() > 63 || pattern.contains('\0') {
                    problems.push((
                        format!("{prefix}.databases.{list}[{j}]"),
                        "must be 1..=63 bytes without NUL".into(),
                    ));
                }
            }
        }
    }
    problems
}

fn is_valid_instance_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return false;
    };
    bytes.len() <= 63
        && first.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_pem_certs(path: &Path) -> Result<(), String> {
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| pem_error(path, e))?;
    let mut count = 0;
    for cert in iter {
        cert.map_err(|e| pem_error(path, e))?;
        count += 1;
    }
    if count == 0 {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(())
}

fn check_pem_key(path: &Path) -> Result<(), String> {
    PrivateKeyDer::from_pem_file(path)
        .map(drop)
        .map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                format!("{} holds no PEM private key", path.display())
            }
            e => pem_error(path, e),
        })
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => format!("cannot read {}: {io}", path.display()),
        e => format!("{} is not valid PEM: {e}", path.display()),
    }
}

/// Parses a DSN and checks what the driver would only complain about at
/// connect time. Messages never repeat the DSN, which may hold a password.
fn check_dsn(dsn: &Dsn) -> Result<(), String> {
    let config = lasect_pgtls::PgConfig::parse(dsn.expose_secret())
        .map_err(|e| format!("cannot parse: {e}"))?;
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        return Err("no host (e.g. host=/var/run/postgresql or host=127.0.0.1)".into());
    }
    if config.get_user().is_none() {
        return Err("no user (e.g. user=lasect_agent)".into());
    }
    Ok(())
}
