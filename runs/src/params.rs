//! The parameters of every kind (docs/CONTROL.md, "Kinds"), as types.
//!
//! They travel as a JSON object (`runs.params`, `RunRequest.params_json`); the API builds a
//! [`RunParams`] and stores [`RunParams::to_json`], the agent parses it once with
//! [`RunParams::from_json`]. Two versions meet on the wire (an older agent, a newer API or the
//! reverse), so the types accept fields they do not know (no `deny_unknown_fields`) and absent
//! or null optional fields take the defaults the agent has always applied.
//!
//! What the types cannot say is checked where it always was: the agent refuses a blank
//! statement, a `limit` outside 1..=1000, a non-positive migration timeout, a version string
//! that is not plain, an export with both or neither of `table` and `sql`.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::replication::{
    ReplicationDropParams, ReplicationPublishParams, ReplicationSubscribeParams,
    ReplicationValidateParams,
};
use crate::{BackupDrillParams, BackupRestoreParams, Class, Requires, RunKind};

/// Parameters that do not fit their kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("the parameters of a `{kind}` run must be a JSON object")]
    NotAnObject { kind: RunKind },
    /// `field` is the path of the offending value (`write`, `params[2]`), empty when the
    /// object as a whole is wrong (a missing field: the message names it).
    #[error("{}{message}", field_prefix(.field))]
    Field {
        kind: RunKind,
        field: String,
        message: String,
    },
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("`{field}`: ")
    }
}

/// `sql`: one statement, `$1`… bound from `params`; read-only unless `write`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SqlParams {
    /// Absent reads as empty, which the agent refuses ("`sql` is required").
    #[serde(default)]
    pub sql: String,
    #[serde(default, deserialize_with = "text_values")]
    pub params: Vec<Option<String>>,
    #[serde(default, deserialize_with = "false_if_null")]
    pub write: bool,
    pub database: Option<String>,
}

/// `explain`: EXPLAIN (FORMAT JSON[, BUFFERS, ANALYZE]) of one statement.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExplainParams {
    /// Absent reads as empty, which the agent refuses ("`sql` is required").
    #[serde(default)]
    pub sql: String,
    #[serde(default, deserialize_with = "text_values")]
    pub params: Vec<Option<String>>,
    #[serde(default, deserialize_with = "false_if_null")]
    pub analyze: bool,
    /// Let ANALYZE commit what the statement writes.
    #[serde(default, deserialize_with = "false_if_null")]
    pub write: bool,
    pub database: Option<String>,
}

/// `instance_check`: nothing (the DSN travels in `RunRequest.dsn`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InstanceCheckParams {}

/// `instance_metadata`: nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InstanceMetadataParams {}

/// `schema_snapshot`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SchemaSnapshotParams {
    pub database: Option<String>,
}

/// `table_data`: one page of a table's rows after a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDataParams {
    #[serde(default = "public", deserialize_with = "public_if_null")]
    pub schema: String,
    pub table: String,
    /// The key of the last row seen (a page's `next_after`): strings or numbers, which the
    /// agent binds in text form; it refuses anything else.
    pub after: Option<Vec<Value>>,
    /// 1..=1000 (checked by the agent).
    #[serde(default = "hundred", deserialize_with = "hundred_if_null")]
    pub limit: u64,
    pub database: Option<String>,
}

/// `export_csv`: a table, or one read-only query, as CSV.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExportCsvParams {
    /// With `table` (default `public` there).
    pub schema: Option<String>,
    pub table: Option<String>,
    pub sql: Option<String>,
    pub database: Option<String>,
}

/// `import_csv`: the run's input appended to a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportCsvParams {
    #[serde(default = "public", deserialize_with = "public_if_null")]
    pub schema: String,
    pub table: String,
    #[serde(default = "yes", deserialize_with = "true_if_null")]
    pub header: bool,
    /// The CSV's columns when it has no header (default: the table's, in order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    pub database: Option<String>,
}

/// `dump_sql`: `pg_dump` of the database, a schema or a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpSqlParams {
    pub schema: Option<String>,
    pub table: Option<String>,
    /// `false` dumps every row too (an admin's).
    #[serde(default = "yes", deserialize_with = "true_if_null")]
    pub schema_only: bool,
    pub database: Option<String>,
}

/// `extension_list`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExtensionListParams {
    pub database: Option<String>,
}

/// What `extension_action` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtensionVerb {
    Enable,
    Disable,
    Update,
}

impl ExtensionVerb {
    pub const ALL: [ExtensionVerb; 3] = [
        ExtensionVerb::Enable,
        ExtensionVerb::Disable,
        ExtensionVerb::Update,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ExtensionVerb::Enable => "enable",
            ExtensionVerb::Disable => "disable",
            ExtensionVerb::Update => "update",
        }
    }
}

/// `extension_action`: CREATE / DROP / ALTER … UPDATE of one available extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionActionParams {
    pub action: ExtensionVerb,
    pub name: String,
    /// A plain version string (checked by the agent).
    pub version: Option<String>,
    pub schema: Option<String>,
    #[serde(default, deserialize_with = "false_if_null")]
    pub cascade: bool,
    pub database: Option<String>,
}

/// `migration`: one step of a fleet migration. The store creates these runs itself
/// (`lasect_start_migration_target`, migrations V16), with this shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationParams {
    /// Absent reads as empty, which the agent refuses ("`sql` is required").
    #[serde(default)]
    pub sql: String,
    #[serde(default, deserialize_with = "false_if_null")]
    pub dry_run: bool,
    /// Positive (checked by the agent).
    #[serde(default = "lock_ms", deserialize_with = "lock_ms_if_null")]
    pub lock_timeout_ms: i64,
    /// Positive (checked by the agent).
    #[serde(default = "statement_ms", deserialize_with = "statement_ms_if_null")]
    pub statement_timeout_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_id: Option<i64>,
    pub database: Option<String>,
}

/// Where pgBackRest keeps the backups of a stanza, as the agent needs it to write its config
/// (`repo1-*`). Never a secret: the cipher passphrase and object-store keys are stored
/// encrypted (`backup_repositories`, migrations V26) and travel apart from the parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BackupRepo {
    /// `backup_repositories.id`, for the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_id: Option<i64>,
    /// `repo1-path`: an absolute directory on the database host (posix repositories).
    #[serde(default)]
    pub path: String,
    /// A persistent pgBackRest config file the agent writes and keeps (what the server's
    /// `archive_command` names); absent: a temporary config removed after each command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_path: Option<String>,
    /// `repo1-cipher-type` (`aes-256-cbc`); absent: no encryption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher_type: Option<String>,
    /// `repo1-retention-full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_full: Option<u32>,
    /// `repo1-retention-diff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_diff: Option<u32>,
    /// `repo1-retention-full-type`: `count` (pgBackRest's default) or `time` (then
    /// `retention_full` is in days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_full_type: Option<String>,
    /// `repo1-cipher-pass`: never stored in `runs.params` nor sent by the API; ingest decrypts
    /// it from `backup_repositories` and adds it to what it hands the serving agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher_pass: Option<RepoSecret>,
    /// `repo1-type`: `s3`, `gcs` or `azure`; absent: `posix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_type: Option<String>,
    /// The object store's bucket (S3, GCS) or container (Azure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// `repo1-s3-endpoint`, `-azure-endpoint`, `-gcs-endpoint` (a host, or host:port for GCS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// `repo1-s3-region` (S3 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `repo1-s3-key` (the access key id) or `repo1-azure-account`: not secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// `repo1-s3-key-type`, `-azure-key-type`, `-gcs-key-type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
    /// `repo1-s3-uri-style`, `-azure-uri-style`: `host` or `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_style: Option<String>,
    /// `repo1-storage-port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_port: Option<u16>,
    /// `repo1-storage-verify-tls` (absent: pgBackRest's default, verify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_tls: Option<bool>,
    /// `repo1-storage-ca-file`: a CA file on the database host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// The object store's secret: `repo1-s3-key-secret`, `-azure-key`, or the GCS key (the
    /// service key's JSON, or the token). Like `cipher_pass`: added by ingest on delivery,
    /// never in `runs.params`; the agent passes it in pgBackRest's environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<RepoSecret>,
}

/// A repository secret on its way to the agent: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RepoSecret(pub String);

impl std::fmt::Debug for RepoSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// What `backup_stanza` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StanzaAction {
    Create,
    Upgrade,
    Check,
}

impl StanzaAction {
    pub const ALL: [StanzaAction; 3] = [
        StanzaAction::Create,
        StanzaAction::Upgrade,
        StanzaAction::Check,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            StanzaAction::Create => "create",
            StanzaAction::Upgrade => "upgrade",
            StanzaAction::Check => "check",
        }
    }
}

/// `backup_stanza`: `pgbackrest stanza-create`, `stanza-upgrade` or `check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStanzaParams {
    pub stanza: String,
    pub action: StanzaAction,
    #[serde(default)]
    pub repo: BackupRepo,
}

/// pgBackRest's backup types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    Full,
    Diff,
    Incr,
}

impl BackupType {
    pub const ALL: [BackupType; 3] = [BackupType::Full, BackupType::Diff, BackupType::Incr];

    pub const fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "full",
            BackupType::Diff => "diff",
            BackupType::Incr => "incr",
        }
    }
}

/// `backup`: `pgbackrest backup --type=…` of one stanza.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupParams {
    pub stanza: String,
    #[serde(rename = "type")]
    pub backup_type: BackupType,
    #[serde(default)]
    pub repo: BackupRepo,
}

/// `backup_info`: the catalogue of a stanza (`pgbackrest info --output=json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfoParams {
    pub stanza: String,
    #[serde(default)]
    pub repo: BackupRepo,
}

/// A run's parameters, one arm per kind: the kind is the arm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunParams {
    Sql(SqlParams),
    Explain(ExplainParams),
    InstanceCheck(InstanceCheckParams),
    InstanceMetadata(InstanceMetadataParams),
    SchemaSnapshot(SchemaSnapshotParams),
    TableData(TableDataParams),
    ExportCsv(ExportCsvParams),
    ImportCsv(ImportCsvParams),
    DumpSql(DumpSqlParams),
    ExtensionList(ExtensionListParams),
    ExtensionAction(ExtensionActionParams),
    Migration(MigrationParams),
    BackupStanza(BackupStanzaParams),
    Backup(BackupParams),
    BackupInfo(BackupInfoParams),
    BackupRestore(BackupRestoreParams),
    BackupDrill(BackupDrillParams),
    ReplicationValidate(ReplicationValidateParams),
    ReplicationPublish(ReplicationPublishParams),
    ReplicationSubscribe(ReplicationSubscribeParams),
    ReplicationDrop(ReplicationDropParams),
}

impl RunParams {
    pub const fn kind(&self) -> RunKind {
        match self {
            RunParams::Sql(_) => RunKind::Sql,
            RunParams::Explain(_) => RunKind::Explain,
            RunParams::InstanceCheck(_) => RunKind::InstanceCheck,
            RunParams::InstanceMetadata(_) => RunKind::InstanceMetadata,
            RunParams::SchemaSnapshot(_) => RunKind::SchemaSnapshot,
            RunParams::TableData(_) => RunKind::TableData,
            RunParams::ExportCsv(_) => RunKind::ExportCsv,
            RunParams::ImportCsv(_) => RunKind::ImportCsv,
            RunParams::DumpSql(_) => RunKind::DumpSql,
            RunParams::ExtensionList(_) => RunKind::ExtensionList,
            RunParams::ExtensionAction(_) => RunKind::ExtensionAction,
            RunParams::Migration(_) => RunKind::Migration,
            RunParams::BackupStanza(_) => RunKind::BackupStanza,
            RunParams::Backup(_) => RunKind::Backup,
            RunParams::BackupInfo(_) => RunKind::BackupInfo,
            RunParams::ReplicationValidate(_) => RunKind::ReplicationValidate,
            RunParams::ReplicationPublish(_) => RunKind::ReplicationPublish,
            RunParams::ReplicationSubscribe(_) => RunKind::ReplicationSubscribe,
            RunParams::ReplicationDrop(_) => RunKind::ReplicationDrop,
            RunParams::BackupRestore(_) => RunKind::BackupRestore,
            RunParams::BackupDrill(_) => RunKind::BackupDrill,
        }
    }

    /// Parses the JSON object of a run of `kind`. Fields this version does not know are
    /// ignored; a field of the wrong type is an error naming it.
    pub fn from_json(kind: RunKind, params: &Value) -> Result<Self, ParamsError> {
        if !params.is_object() {
            return Err(ParamsError::NotAnObject { kind });
        }
        Ok(match kind {
            RunKind::Sql => RunParams::Sql(parse(kind, params)?),
            RunKind::Explain => RunParams::Explain(parse(kind, params)?),
            RunKind::InstanceCheck => RunParams::InstanceCheck(parse(kind, params)?),
            RunKind::InstanceMetadata => RunParams::InstanceMetadata(parse(kind, params)?),
            RunKind::SchemaSnapshot => RunParams::SchemaSnapshot(parse(kind, params)?),
            RunKind::TableData => RunParams::TableData(parse(kind, params)?),
            RunKind::ExportCsv => RunParams::ExportCsv(parse(kind, params)?),
            RunKind::ImportCsv => RunParams::ImportCsv(parse(kind, params)?),
            RunKind::DumpSql => RunParams::DumpSql(parse(kind, params)?),
            RunKind::ExtensionList => RunParams::ExtensionList(parse(kind, params)?),
            RunKind::ExtensionAction => RunParams::ExtensionAction(parse(kind, params)?),
            RunKind::Migration => RunParams::Migration(parse(kind, params)?),
            RunKind::BackupStanza => RunParams::BackupStanza(parse(kind, params)?),
            RunKind::Backup => RunParams::Backup(parse(kind, params)?),
            RunKind::BackupInfo => RunParams::BackupInfo(parse(kind, params)?),
            RunKind::ReplicationValidate => RunParams::ReplicationValidate(parse(kind, params)?),
            RunKind::ReplicationPublish => RunParams::ReplicationPublish(parse(kind, params)?),
            RunKind::ReplicationSubscribe => RunParams::ReplicationSubscribe(parse(kind, params)?),
            RunKind::ReplicationDrop => RunParams::ReplicationDrop(parse(kind, params)?),
            RunKind::BackupRestore => RunParams::BackupRestore(parse(kind, params)?),
            RunKind::BackupDrill => RunParams::BackupDrill(parse(kind, params)?),
        })
    }

    /// The JSON object stored in `runs.params` and sent as `RunRequest.params_json`.
    pub fn to_json(&self) -> Value {
        let value = match self {
            RunParams::Sql(p) => serde_json::to_value(p),
            RunParams::Explain(p) => serde_json::to_value(p),
            RunParams::InstanceCheck(p) => serde_json::to_value(p),
            RunParams::InstanceMetadata(p) => serde_json::to_value(p),
            RunParams::SchemaSnapshot(p) => serde_json::to_value(p),
            RunParams::TableData(p) => serde_json::to_value(p),
            RunParams::ExportCsv(p) => serde_json::to_value(p),
            RunParams::ImportCsv(p) => serde_json::to_value(p),
            RunParams::DumpSql(p) => serde_json::to_value(p),
            RunParams::ExtensionList(p) => serde_json::to_value(p),
            RunParams::ExtensionAction(p) => serde_json::to_value(p),
            RunParams::Migration(p) => serde_json::to_value(p),
            RunParams::BackupStanza(p) => serde_json::to_value(p),
            RunParams::Backup(p) => serde_json::to_value(p),
            RunParams::BackupInfo(p) => serde_json::to_value(p),
            RunParams::ReplicationValidate(p) => serde_json::to_value(p),
            RunParams::ReplicationPublish(p) => serde_json::to_value(p),
            RunParams::ReplicationSubscribe(p) => serde_json::to_value(p),
            RunParams::ReplicationDrop(p) => serde_json::to_value(p),
            RunParams::BackupRestore(p) => serde_json::to_value(p),
            RunParams::BackupDrill(p) => serde_json::to_value(p),
        };
        // Plain structs of strings, numbers and JSON values always serialize; the fallback
        // only keeps the signature free of an error nobody can cause.
        value.unwrap_or_else(|_| Value::Object(serde_json::Map::new()))
    }

    /// The role needed on the instance to ask for this run (the rule the routes enforce and
    /// run visibility follows: `api/src/runs/access.rs`).
    pub const fn requires(&self) -> Requires {
        match self {
            // A write, or an ANALYZE allowed to write, is an admin's.
            RunParams::Sql(SqlParams { write: true, .. })
            | RunParams::Explain(ExplainParams { write: true, .. }) => Requires::Admin,
            RunParams::Sql(_) | RunParams::Explain(_) => Requires::User,
            // A data dump holds every row of every table.
            RunParams::DumpSql(DumpSqlParams {
                schema_only: false, ..
            }) => Requires::Admin,
            RunParams::DumpSql(_)
            | RunParams::InstanceCheck(_)
            | RunParams::InstanceMetadata(_)
            | RunParams::SchemaSnapshot(_)
            | RunParams::TableData(_)
            | RunParams::ExportCsv(_)
            | RunParams::ExtensionList(_) => Requires::User,
            // The catalogue too: it names the repository and the server's files.
            RunParams::ImportCsv(_)
            | RunParams::ExtensionAction(_)
            | RunParams::Migration(_)
            | RunParams::BackupStanza(_)
            | RunParams::Backup(_)
            | RunParams::BackupInfo(_)
            | RunParams::BackupRestore(_)
            | RunParams::BackupDrill(_)
            | RunParams::ReplicationValidate(_)
            | RunParams::ReplicationPublish(_)
            | RunParams::ReplicationSubscribe(_)
            | RunParams::ReplicationDrop(_) => Requires::Admin,
        }
    }

    /// The class the agent's `[control] allow` list must name for this run; `None`: always
    /// allowed (the checks the API relies on to add an instance).
    pub const fn class(&self) -> Option<Class> {
        Some(match self {
            RunParams::InstanceCheck(_) | RunParams::InstanceMetadata(_) => return None,
            RunParams::Sql(SqlParams { write: true, .. }) => Class::SqlWrite,
            RunParams::Sql(_) => Class::Sql,
            // EXPLAIN ANALYZE executes the statement; with `write` it commits.
            RunParams::Explain(ExplainParams {
                analyze: true,
                write: true,
                ..
            }) => Class::SqlWrite,
            RunParams::Explain(ExplainParams { analyze: true, .. }) => Class::ExplainAnalyze,
            RunParams::Explain(_) => Class::Explain,
            RunParams::SchemaSnapshot(_) => Class::Schema,
            RunParams::TableData(_) => Class::TableData,
            RunParams::ExportCsv(_) => Class::Export,
            RunParams::ImportCsv(_) => Class::Import,
            RunParams::DumpSql(_) => Class::Dump,
            RunParams::ExtensionList(_) => Class::Extensions,
            RunParams::ExtensionAction(_) => Class::ExtensionsWrite,
            RunParams::Migration(_) => Class::Ddl,
            RunParams::BackupStanza(_) | RunParams::Backup(_) | RunParams::BackupInfo(_) => {
                Class::Backup
            }
            RunParams::ReplicationValidate(_)
            | RunParams::ReplicationPublish(_)
            | RunParams::ReplicationSubscribe(_)
            | RunParams::ReplicationDrop(_) => Class::Replication,
            // They write a data directory and start a server on this host.
            RunParams::BackupRestore(_) | RunParams::BackupDrill(_) => Class::Restore,
        })
    }
}

fn parse<T: DeserializeOwned>(kind: RunKind, params: &Value) -> Result<T, ParamsError> {
    serde_path_to_error::deserialize(params).map_err(|e| {
        let path = e.path().to_string();
        ParamsError::Field {
            kind,
            // `.` is the object itself.
            field: if path == "." { String::new() } else { path },
            message: e.into_inner().to_string(),
        }
    })
}

fn public() -> String {
    "public".to_owned()
}
const fn yes() -> bool {
    true
}
const fn hundred() -> u64 {
    100
}
const fn lock_ms() -> i64 {
    5000
}
const fn statement_ms() -> i64 {
    60_000
}

// Null has always meant "absent" to the agent: these keep it so.
fn false_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}
fn true_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
}
fn public_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_else(public))
}
fn hundred_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(d)?.unwrap_or_else(hundred))
}
fn lock_ms_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(Option::<i64>::deserialize(d)?.unwrap_or_else(lock_ms))
}
fn statement_ms_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(Option::<i64>::deserialize(d)?.unwrap_or_else(statement_ms))
}

/// One bound parameter in text form: the agent has always taken numbers and booleans too.
struct TextValue(Option<String>);

impl<'de> Deserialize<'de> for TextValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(TextValue(None)),
            Value::String(s) => Ok(TextValue(Some(s))),
            Value::Number(n) => Ok(TextValue(Some(n.to_string()))),
            Value::Bool(b) => Ok(TextValue(Some(b.to_string()))),
            _ => Err(D::Error::custom(
                "must be a string, number, boolean or null",
            )),
        }
    }
}

fn text_values<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Option<String>>, D::Error> {
    Ok(Option::<Vec<TextValue>>::deserialize(d)?
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::{
        ColumnDef, ConninfoSecret, ConstraintDef, IndexDef, StreamSide, StreamTable, TableDef,
    };
    use serde_json::json;

    /// One run of every kind, with every field away from its default.
    fn one_of_each() -> Vec<RunParams> {
        vec![
            RunParams::Sql(SqlParams {
                sql: "SELECT $1, $2".into(),
                params: vec![Some("x'; --".into()), None],
                write: true,
                database: Some("app".into()),
            }),
            RunParams::Explain(ExplainParams {
                sql: "SELECT 1".into(),
                params: vec![None],
                analyze: true,
                write: false,
                database: Some("app".into()),
            }),
            RunParams::InstanceCheck(InstanceCheckParams {}),
            RunParams::InstanceMetadata(InstanceMetadataParams {}),
            RunParams::SchemaSnapshot(SchemaSnapshotParams {
                database: Some("app".into()),
            }),
            RunParams::TableData(TableDataParams {
                schema: "sales".into(),
                table: "orders".into(),
                after: Some(vec![json!("7"), json!(8)]),
                limit: 5,
                database: None,
            }),
            RunParams::ExportCsv(ExportCsvParams {
                schema: None,
                table: None,
                sql: Some("SELECT 1".into()),
                database: Some("app".into()),
            }),
            RunParams::ImportCsv(ImportCsvParams {
                schema: "sales".into(),
                table: "orders".into(),
                header: false,
                columns: Some(vec!["id".into(), "note".into()]),
                database: None,
            }),
            RunParams::DumpSql(DumpSqlParams {
                schema: Some("sales".into()),
                table: Some("orders".into()),
                schema_only: false,
                database: None,
            }),
            RunParams::ExtensionList(ExtensionListParams {
                database: Some("app".into()),
            }),
            RunParams::ExtensionAction(ExtensionActionParams {
                action: ExtensionVerb::Update,
                name: "pg_trgm".into(),
                version: Some("1.6".into()),
                schema: Some("ext".into()),
                cascade: true,
                database: None,
            }),
            RunParams::Migration(MigrationParams {
                sql: "CREATE TABLE t (id int)".into(),
                dry_run: true,
                lock_timeout_ms: 100,
                statement_timeout_ms: 200,
                migration_id: Some(9),
                database: Some("app".into()),
            }),
            RunParams::BackupStanza(BackupStanzaParams {
                stanza: "main".into(),
                action: StanzaAction::Check,
                repo: BackupRepo {
                    repository_id: Some(3),
                    path: "/var/lib/pgbackrest".into(),
                    config_path: Some("/etc/pgbackrest/lasect.conf".into()),
                    cipher_type: Some("aes-256-cbc".into()),
                    retention_full: Some(2),
                    retention_diff: Some(6),
                    retention_full_type: Some("time".into()),
                    cipher_pass: Some(RepoSecret("never in runs.params".into())),
                    repo_type: Some("s3".into()),
                    bucket: Some("backups".into()),
                    endpoint: Some("s3.eu-west-1.amazonaws.com".into()),
                    region: Some("eu-west-1".into()),
                    key_id: Some("AKIA2LASECTRUNSKEY01".into()),
                    key_type: Some("shared".into()),
                    uri_style: Some("path".into()),
                    storage_port: Some(9443),
                    verify_tls: Some(true),
                    ca_file: Some("/etc/ssl/certs/store-ca.pem".into()),
                    secret_key: Some(RepoSecret("never in runs.params either".into())),
                },
            }),
            RunParams::Backup(BackupParams {
                stanza: "main".into(),
                backup_type: BackupType::Incr,
                repo: BackupRepo {
                    path: "/r".into(),
                    ..BackupRepo::default()
                },
            }),
            RunParams::BackupInfo(BackupInfoParams {
                stanza: "main".into(),
                repo: BackupRepo::default(),
            }),
            RunParams::BackupRestore(BackupRestoreParams {
                stanza: "main".into(),
                repo: BackupRepo::default(),
                to_dir: "/srv/restored".into(),
                target_type: crate::RestoreTargetType::Time,
                target: Some("2026-12-07 10:15:00+00".into()),
                set: Some("20261207-083000F".into()),
                delta: true,
                start: true,
                port: Some(5499),
                target_exclusive: true,
                tablespace_map: vec![crate::TablespaceMap {
                    name: "archive".into(),
                    path: "/srv/restored-archive".into(),
                }],
                tablespace_map_all: Some("/srv/restored-tablespaces".into()),
            }),
            RunParams::BackupDrill(BackupDrillParams {
                stanza: "main".into(),
                repo: BackupRepo::default(),
                check_sql: Some("SELECT count(*) FROM orders".into()),
                amcheck: false,
                scratch_dir: Some("/srv/scratch".into()),
            }),
            RunParams::ReplicationValidate(ReplicationValidateParams {
                side: StreamSide::Subscriber,
                tables: vec![orders()],
                schema: None,
                publication: "lasect_pub_1".into(),
                slot: "lasect_slot_1".into(),
                subscription: "lasect_sub_1".into(),
                definitions: vec![orders_def()],
                copy_schema: true,
                replication_user: Some("replicator".into()),
                conninfo: Some("host=10.0.0.1 port=5432 dbname=app user=replicator".into()),
                stream_id: Some(1),
                password: Some(ConninfoSecret("never in runs.params".into())),
                database: Some("app".into()),
            }),
            RunParams::ReplicationPublish(ReplicationPublishParams {
                publication: "lasect_pub_1".into(),
                slot: "lasect_slot_1".into(),
                tables: vec![orders()],
                database: None,
            }),
            RunParams::ReplicationSubscribe(ReplicationSubscribeParams {
                subscription: "lasect_sub_1".into(),
                publication: "lasect_pub_1".into(),
                slot: "lasect_slot_1".into(),
                conninfo: "host=10.0.0.1 dbname=app".into(),
                create_tables: vec![orders_def()],
                stream_id: Some(1),
                password: None,
                database: None,
            }),
            RunParams::ReplicationDrop(ReplicationDropParams {
                side: StreamSide::Publisher,
                subscription: "lasect_sub_1".into(),
                publication: "lasect_pub_1".into(),
                slot: "lasect_slot_1".into(),
                suboid: Some(16_400),
                drop_tables: vec![orders()],
                database: None,
            }),
        ]
    }

    fn orders() -> StreamTable {
        StreamTable {
            schema: "sales".into(),
            table: "orders".into(),
        }
    }

    fn orders_def() -> TableDef {
        TableDef {
            schema: "sales".into(),
            table: "orders".into(),
            columns: vec![ColumnDef {
                name: "id".into(),
                type_sql: "bigint".into(),
                not_null: true,
                default: None,
                generated: Some("identity_always".into()),
            }],
            primary_key: vec!["id".into()],
            constraints: vec![ConstraintDef {
                name: "orders_id_positive".into(),
                definition: "CHECK ((id > 0))".into(),
            }],
            indexes: vec![IndexDef {
                name: "orders_id_desc".into(),
                unique: false,
                using: "btree (id DESC)".into(),
            }],
        }
    }

    fn parse(kind: &str, params: Value) -> Result<RunParams, ParamsError> {
        RunParams::from_json(kind.parse().expect("a kind"), &params)
    }

    #[test]
    fn every_kind_round_trips_through_its_json() {
        let all = one_of_each();
        let mut kinds: Vec<RunKind> = all.iter().map(RunParams::kind).collect();
        kinds.sort_unstable();
        let mut every = RunKind::ALL.to_vec();
        every.sort_unstable();
        assert_eq!(kinds, every, "one of each kind");
        for params in all {
            let json = params.to_json();
            assert!(json.is_object(), "{json}");
            assert_eq!(
                RunParams::from_json(params.kind(), &json).as_ref(),
                Ok(&params),
                "{json}"
            );
        }
    }

    #[test]
    fn the_shapes_the_api_and_the_store_have_always_written_parse() {
        // As the API's routes built them before the contract, and as migrations V16 builds a
        // fleet migration's runs (nulls stripped).
        let sql = parse(
            "sql",
            json!({"sql": "SELECT $1", "params": ["42", null], "write": false, "database": null}),
        );
        assert_eq!(
            sql,
            Ok(RunParams::Sql(SqlParams {
                sql: "SELECT $1".into(),
                params: vec![Some("42".into()), None],
                write: false,
                database: None,
            }))
        );
        let page = parse(
            "table_data",
            json!({"schema": "public", "table": "orders", "after": ["41"], "limit": 100, "database": null}),
        );
        assert!(
            matches!(&page, Ok(RunParams::TableData(p)) if p.after == Some(vec![json!("41")])),
            "{page:?}"
        );
        let import = parse(
            "import_csv",
            json!({"schema": null, "table": "orders", "header": true, "database": null}),
        );
        assert!(
            matches!(&import, Ok(RunParams::ImportCsv(p)) if p.schema == "public" && p.header),
            "{import:?}"
        );
        let action = parse(
            "extension_action",
            json!({"action": "enable", "name": "pg_trgm", "version": null, "schema": null, "cascade": false, "database": null}),
        );
        assert!(
            matches!(&action, Ok(RunParams::ExtensionAction(p)) if p.action == ExtensionVerb::Enable),
            "{action:?}"
        );
        let step = parse(
            "migration",
            json!({"sql": "ALTER TABLE t ADD c int", "dry_run": true, "lock_timeout_ms": 5000,
                   "statement_timeout_ms": 60000, "migration_id": 3}),
        );
        assert!(
            matches!(&step, Ok(RunParams::Migration(p)) if p.dry_run && p.migration_id == Some(3)),
            "{step:?}"
        );
        assert_eq!(
            parse("instance_check", json!({})),
            Ok(RunParams::InstanceCheck(InstanceCheckParams {}))
        );
        // The agent has always bound numbers and booleans in text form.
        assert!(matches!(
            parse("explain", json!({"sql": "SELECT $1, $2", "params": [7, true]})),
            Ok(RunParams::Explain(p)) if p.params == [Some("7".into()), Some("true".into())]
        ));
    }

    #[test]
    fn absent_or_null_fields_take_the_agents_defaults() {
        for empty in [
            json!({"table": "t"}),
            json!({"table": "t", "schema": null, "header": null, "schema_only": null, "limit": null}),
        ] {
            let Ok(RunParams::ImportCsv(import)) = parse("import_csv", empty.clone()) else {
                panic!("import_csv {empty}");
            };
            assert_eq!((import.schema.as_str(), import.header), ("public", true));
            let Ok(RunParams::TableData(page)) = parse("table_data", empty.clone()) else {
                panic!("table_data {empty}");
            };
            assert_eq!((page.schema.as_str(), page.limit), ("public", 100));
            let Ok(RunParams::DumpSql(dump)) = parse("dump_sql", empty.clone()) else {
                panic!("dump_sql {empty}");
            };
            assert!(dump.schema_only);
        }
        let Ok(RunParams::Migration(m)) = parse("migration", json!({"sql": "SELECT 1"})) else {
            panic!("migration");
        };
        assert_eq!((m.lock_timeout_ms, m.statement_timeout_ms), (5000, 60_000));
        assert!(!m.dry_run);
        let Ok(RunParams::Sql(s)) = parse("sql", json!({"sql": "SELECT 1", "write": null})) else {
            panic!("sql");
        };
        assert!(!s.write && s.params.is_empty());
    }

    #[test]
    fn fields_a_newer_api_adds_are_ignored() {
        for params in one_of_each() {
            let mut json = params.to_json();
            json.as_object_mut()
                .expect("an object")
                .insert("from_the_future".into(), json!({"any": ["thing"]}));
            assert_eq!(
                RunParams::from_json(params.kind(), &json).as_ref(),
                Ok(&params),
                "{json}"
            );
        }
    }

    #[test]
    fn a_wrong_value_is_an_error_naming_its_field() {
        let field = |kind: &str, params: Value| match parse(kind, params) {
            Err(ParamsError::Field { field, message, .. }) => (field, message),
            other => panic!("expected a field error, got {other:?}"),
        };
        let (name, message) = field("sql", json!({"sql": "SELECT 1", "write": "yes"}));
        assert_eq!(name, "write");
        assert!(message.contains("boolean"), "{message}");
        assert_eq!(
            field(
                "sql",
                json!({"sql": "SELECT $1", "params": ["a", {"b": 1}]})
            )
            .0,
            "params[1]"
        );
        assert_eq!(
            field("table_data", json!({"table": "t", "limit": -1})).0,
            "limit"
        );
        assert_eq!(
            field("extension_action", json!({"action": "drop", "name": "x"})).0,
            "action"
        );
        // A missing field: the message names it.
        let (name, message) = field("table_data", json!({"schema": "s"}));
        assert_eq!(name, "");
        assert!(message.contains("`table`"), "{message}");
        let shown = parse("dump_sql", json!({"schema_only": "no"}))
            .expect_err("a string is no flag")
            .to_string();
        assert!(shown.starts_with("`schema_only`: "), "{shown}");
        assert_eq!(
            parse("sql", json!(["SELECT 1"])),
            Err(ParamsError::NotAnObject { kind: RunKind::Sql })
        );
    }

    #[test]
    fn the_allow_list_class_of_every_kind() {
        let class = |kind: &str, params: Value| {
            parse(kind, params)
                .unwrap_or_else(|e| panic!("{kind}: {e}"))
                .class()
                .map(Class::as_str)
        };
        let cases = [
            ("sql", json!({"sql": "x"}), Some("sql")),
            ("sql", json!({"sql": "x", "write": true}), Some("sql_write")),
            ("explain", json!({"sql": "x"}), Some("explain")),
            // `write` without ANALYZE executes nothing.
            (
                "explain",
                json!({"sql": "x", "write": true}),
                Some("explain"),
            ),
            (
                "explain",
                json!({"sql": "x", "analyze": true}),
                Some("explain_analyze"),
            ),
            (
                "explain",
                json!({"sql": "x", "analyze": true, "write": true}),
                Some("sql_write"),
            ),
            ("instance_check", json!({}), None),
            ("instance_metadata", json!({}), None),
            ("schema_snapshot", json!({}), Some("schema")),
            ("table_data", json!({"table": "t"}), Some("table_data")),
            ("export_csv", json!({"sql": "x"}), Some("export")),
            ("import_csv", json!({"table": "t"}), Some("import")),
            ("dump_sql", json!({}), Some("dump")),
            ("dump_sql", json!({"schema_only": false}), Some("dump")),
            ("extension_list", json!({}), Some("extensions")),
            (
                "extension_action",
                json!({"action": "disable", "name": "x"}),
                Some("extensions_write"),
            ),
            (
                "migration",
                json!({"sql": "x", "dry_run": true}),
                Some("ddl"),
            ),
            (
                "backup_stanza",
                json!({"stanza": "s", "action": "check"}),
                Some("backup"),
            ),
            (
                "backup",
                json!({"stanza": "s", "type": "full", "repo": {"path": "/r"}}),
                Some("backup"),
            ),
            ("backup_info", json!({"stanza": "s"}), Some("backup")),
            (
                "backup_restore",
                json!({"stanza": "s", "to_dir": "/d"}),
                Some("restore"),
            ),
            ("backup_drill", json!({"stanza": "s"}), Some("restore")),
            (
                "replication_validate",
                json!({"side": "publisher"}),
                Some("replication"),
            ),
            (
                "replication_publish",
                json!({"publication": "p", "slot": "s"}),
                Some("replication"),
            ),
            (
                "replication_subscribe",
                json!({"subscription": "s", "publication": "p", "slot": "s"}),
                Some("replication"),
            ),
            (
                "replication_drop",
                json!({"side": "subscriber"}),
                Some("replication"),
            ),
        ];
        for (kind, params, expected) in cases {
            assert_eq!(class(kind, params.clone()), expected, "{kind} {params}");
        }
        // The names of `[control] allow`, in the order of docs/CONTROL.md.
        let names: Vec<&str> = Class::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "sql",
                "sql_write",
                "explain",
                "explain_analyze",
                "schema",
                "table_data",
                "export",
                "import",
                "dump",
                "extensions",
                "extensions_write",
                "ddl",
                "backup",
                "restore",
                "replication"
            ]
        );
        for c in Class::ALL {
            assert_eq!(c.as_str().parse::<Class>(), Ok(c));
        }
        assert!("drop_everything".parse::<Class>().is_err());
    }

    #[test]
    fn who_may_ask_for_each_kind() {
        let requires = |kind: &str, params: Value| {
            parse(kind, params)
                .unwrap_or_else(|e| panic!("{kind}: {e}"))
                .requires()
        };
        let cases = [
            ("sql", json!({"sql": "x"}), Requires::User),
            ("sql", json!({"sql": "x", "write": true}), Requires::Admin),
            (
                "explain",
                json!({"sql": "x", "analyze": true}),
                Requires::User,
            ),
            (
                "explain",
                json!({"sql": "x", "write": true}),
                Requires::Admin,
            ),
            ("instance_check", json!({}), Requires::User),
            ("instance_metadata", json!({}), Requires::User),
            ("schema_snapshot", json!({}), Requires::User),
            ("table_data", json!({"table": "t"}), Requires::User),
            ("export_csv", json!({"table": "t"}), Requires::User),
            ("import_csv", json!({"table": "t"}), Requires::Admin),
            ("dump_sql", json!({}), Requires::User),
            ("dump_sql", json!({"schema_only": false}), Requires::Admin),
            ("extension_list", json!({}), Requires::User),
            (
                "extension_action",
                json!({"action": "enable", "name": "x"}),
                Requires::Admin,
            ),
            ("migration", json!({"sql": "x"}), Requires::Admin),
            (
                "backup_stanza",
                json!({"stanza": "s", "action": "create"}),
                Requires::Admin,
            ),
            (
                "backup",
                json!({"stanza": "s", "type": "diff"}),
                Requires::Admin,
            ),
            ("backup_info", json!({"stanza": "s"}), Requires::Admin),
            (
                "backup_restore",
                json!({"stanza": "s", "to_dir": "/d"}),
                Requires::Admin,
            ),
            ("backup_drill", json!({"stanza": "s"}), Requires::Admin),
            (
                "replication_validate",
                json!({"side": "subscriber"}),
                Requires::Admin,
            ),
            (
                "replication_drop",
                json!({"side": "publisher"}),
                Requires::Admin,
            ),
        ];
        for (kind, params, expected) in cases {
            assert_eq!(requires(kind, params.clone()), expected, "{kind} {params}");
            let kind: RunKind = kind.parse().expect("a kind");
            assert_eq!(kind.requires(&params), expected, "{kind} {params}");
        }
        // What does not parse was not made by this API: only an admin's.
        assert_eq!(
            RunKind::TableData.requires(&json!({"table": 7})),
            Requires::Admin
        );
        assert_eq!(RunKind::Sql.requires(&json!("SELECT 1")), Requires::Admin);
    }
}
