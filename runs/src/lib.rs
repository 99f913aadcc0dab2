//! The run contract: every kind of work the API can ask an agent to execute on a monitored
//! database (docs/CONTROL.md, "Kinds"), declared once.
//!
//! A run travels as a kind name (`runs.kind`, `RunRequest.kind`) and a JSON object of
//! parameters. [`RunKind`] is the one place that lists the names; [`RunParams`] has one arm per
//! kind holding that kind's parameter type, and is what the API builds, the store keeps
//! ([`RunParams::to_json`]) and the agent executes ([`RunParams::from_json`]). Everything that
//! decides something per kind (who may ask for it: [`RunParams::requires`]; which allow-list
//! [`Class`] it needs on the agent: [`RunParams::class`]; where its result lives:
//! [`RunKind::result`]) matches on them exhaustively, so a new kind is a compile error wherever
//! it is not handled yet. The wire keeps the name and the JSON: agents and APIs of different
//! versions still talk, and unknown fields are ignored.
//!
//! Adding a run kind:
//! 1. an arm in [`RunKind`] (its name in `as_str`, `ALL`, `result`);
//! 2. its parameter type in `params.rs` (serde, no `deny_unknown_fields`, defaults for what an
//!    older API would not send) and its arm in [`RunParams`] (`kind`, `from_json`, `to_json`,
//!    `requires`, `class`: a new [`Class`] if no existing one describes what it may do);
//! 3. a migration adding its name to the `CHECK` on `runs.kind` (the store test compares them);
//! 4. the agent's executor (`agent/src/ops/`, its arm in `ops::dispatch`);
//! 5. the API route that creates it, and its line in docs/CONTROL.md.
//!
//! The compiler lists the rest (the ingest's post-processing, result routes, read-only DSN).
//!
//! A run's life is [`RunStatus`] and [`Transition`] (`state.rs`): the statuses, which
//! statement may move a run from which status to which, and the SQL of each, executed by the
//! API (sqlx) and ingest (tokio-postgres) alike.

mod class;
mod params;
mod replication;
mod restore;
mod results;
mod state;

pub use class::{Class, UnknownClass};
pub use params::{
    BackupInfoParams, BackupParams, BackupRepo, BackupStanzaParams, BackupType, DumpSqlParams,
    ExplainParams, ExportCsvParams, ExtensionActionParams, ExtensionListParams, ExtensionVerb,
    ImportCsvParams, InstanceCheckParams, InstanceMetadataParams, MigrationParams, ParamsError,
    RepoSecret, RunParams, SchemaSnapshotParams, SqlParams, StanzaAction, TableDataParams,
};
pub use replication::{
    ColumnDef, ConninfoSecret, ConstraintDef, IndexDef, ReplicationDropParams,
    ReplicationPublishParams, ReplicationSubscribeParams, ReplicationValidateParams, StreamSide,
    StreamTable, TableDef,
};
pub use restore::{
    BackupDrillParams, BackupRestoreParams, RestoreTargetType, TablespaceMap, is_backup_label,
};
pub use results::{
    AvailableExtension, DatabaseSize, ExtensionActionResult, ExtensionListResult, FeatureCheck,
    ImportCsvResult, ImportLineError, InstalledExtension, InstanceCheckResult,
    InstanceMetadataResult, ResultColumn, SchemaDocument, SchemaExtension, SchemaFunction,
    SchemaObjects, SchemaSequence, SchemaTable, SchemaType, SchemaView, TableColumn,
    TableConstraint, TableIndex, TableTrigger,
};
pub use state::{
    PROGRESS_CHANNEL, RunStatus, STATUS_CHANNEL, Transition, UnknownStatus, progress_sql,
};

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// Every kind of run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunKind {
    Sql,
    Explain,
    InstanceCheck,
    InstanceMetadata,
    SchemaSnapshot,
    TableData,
    ExportCsv,
    ImportCsv,
    DumpSql,
    ExtensionList,
    ExtensionAction,
    Migration,
    BackupStanza,
    Backup,
    BackupInfo,
    BackupRestore,
    BackupDrill,
    ReplicationValidate,
    ReplicationPublish,
    ReplicationSubscribe,
    ReplicationDrop,
}

/// The least role a caller needs on the run's instance to ask for the run. It also decides who
/// may read the run's parameters and result besides its requester and the instance's admins:
/// whoever could have asked for the same run may read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Requires {
    /// A user of the instance (reads: SQL in a read-only transaction, EXPLAIN, exports).
    User,
    /// An admin of the instance (anything that writes, or reads every row).
    Admin,
}

/// What a finished run holds besides its summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultShape {
    /// Pages of JSON rows (`GET /runs/{id}/result`).
    Rows,
    /// Raw bytes of this content type (`GET /runs/{id}/download`).
    Bytes { content_type: &'static str },
    /// Nothing but the summary.
    SummaryOnly,
}

/// A kind name no part of this version knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown run kind `{0}`")]
pub struct UnknownKind(pub String);

impl RunKind {
    pub const ALL: [RunKind; 21] = [
        RunKind::Sql,
        RunKind::Explain,
        RunKind::InstanceCheck,
        RunKind::InstanceMetadata,
        RunKind::SchemaSnapshot,
        RunKind::TableData,
        RunKind::ExportCsv,
        RunKind::ImportCsv,
        RunKind::DumpSql,
        RunKind::ExtensionList,
        RunKind::ExtensionAction,
        RunKind::Migration,
        RunKind::BackupStanza,
        RunKind::Backup,
        RunKind::BackupInfo,
        RunKind::BackupRestore,
        RunKind::BackupDrill,
        RunKind::ReplicationValidate,
        RunKind::ReplicationPublish,
        RunKind::ReplicationSubscribe,
        RunKind::ReplicationDrop,
    ];

    /// The name stored in `runs.kind` and sent in `RunRequest.kind`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RunKind::Sql => "sql",
            RunKind::Explain => "explain",
            RunKind::InstanceCheck => "instance_check",
            RunKind::InstanceMetadata => "instance_metadata",
            RunKind::SchemaSnapshot => "schema_snapshot",
            RunKind::TableData => "table_data",
            RunKind::ExportCsv => "export_csv",
            RunKind::ImportCsv => "import_csv",
            RunKind::DumpSql => "dump_sql",
            RunKind::ExtensionList => "extension_list",
            RunKind::ExtensionAction => "extension_action",
            RunKind::Migration => "migration",
            RunKind::BackupStanza => "backup_stanza",
            RunKind::Backup => "backup",
            RunKind::BackupInfo => "backup_info",
            RunKind::ReplicationValidate => "replication_validate",
            RunKind::ReplicationPublish => "replication_publish",
            RunKind::ReplicationSubscribe => "replication_subscribe",
            RunKind::ReplicationDrop => "replication_drop",
            RunKind::BackupRestore => "backup_restore",
            RunKind::BackupDrill => "backup_drill",
        }
    }

    /// The role needed on the instance to ask for this run with these parameters (the same
    /// rule the routes that create runs enforce: [`RunParams::requires`]). Parameters that do
    /// not parse are an admin's: nothing this API creates looks like that.
    pub fn requires(self, params: &Value) -> Requires {
        RunParams::from_json(self, params).map_or(Requires::Admin, |p| p.requires())
    }

    /// Where a finished run's result lives.
    pub const fn result(self) -> ResultShape {
        match self {
            RunKind::Sql | RunKind::TableData => ResultShape::Rows,
            RunKind::ExportCsv => ResultShape::Bytes {
                content_type: "text/csv; charset=utf-8",
            },
            RunKind::DumpSql => ResultShape::Bytes {
                content_type: "application/sql",
            },
            RunKind::SchemaSnapshot => ResultShape::Bytes {
                content_type: "application/json",
            },
            RunKind::Explain
            | RunKind::InstanceCheck
            | RunKind::InstanceMetadata
            | RunKind::ImportCsv
            | RunKind::ExtensionList
            | RunKind::ExtensionAction
            | RunKind::Migration
            | RunKind::BackupStanza
            | RunKind::Backup
            | RunKind::BackupInfo
            | RunKind::BackupRestore
            | RunKind::BackupDrill
            | RunKind::ReplicationValidate
            | RunKind::ReplicationPublish
            | RunKind::ReplicationSubscribe
            | RunKind::ReplicationDrop => ResultShape::SummaryOnly,
        }
    }
}

impl fmt::Display for RunKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, UnknownKind> {
        RunKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_name_parses_back_to_its_kind() {
        for kind in RunKind::ALL {
            assert_eq!(kind.as_str().parse::<RunKind>(), Ok(kind));
        }
        let mut names: Vec<_> = RunKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RunKind::ALL.len(), "names are unique");
        assert_eq!(
            "rm_rf".parse::<RunKind>(),
            Err(UnknownKind("rm_rf".to_owned()))
        );
        assert!("SQL".parse::<RunKind>().is_err(), "names are exact");
    }

    #[test]
    fn writes_and_full_dumps_need_an_admin() {
        assert_eq!(RunKind::Sql.requires(&json!({})), Requires::User);
        assert_eq!(
            RunKind::Sql.requires(&json!({"write": false})),
            Requires::User
        );
        assert_eq!(
            RunKind::Sql.requires(&json!({"write": true})),
            Requires::Admin
        );
        assert_eq!(
            RunKind::Explain.requires(&json!({"analyze": true})),
            Requires::User
        );
        assert_eq!(
            RunKind::Explain.requires(&json!({"analyze": true, "write": true})),
            Requires::Admin
        );
        assert_eq!(RunKind::DumpSql.requires(&json!({})), Requires::User);
        assert_eq!(
            RunKind::DumpSql.requires(&json!({"schema_only": false})),
            Requires::Admin
        );
        assert_eq!(RunKind::ImportCsv.requires(&json!({})), Requires::Admin);
        assert_eq!(RunKind::Migration.requires(&json!({})), Requires::Admin);
        assert_eq!(
            RunKind::ExtensionAction.requires(&json!({})),
            Requires::Admin
        );
    }

    #[test]
    fn row_and_byte_results_are_where_the_routes_serve_them() {
        assert_eq!(RunKind::Sql.result(), ResultShape::Rows);
        assert_eq!(RunKind::TableData.result(), ResultShape::Rows);
        assert!(matches!(
            RunKind::DumpSql.result(),
            ResultShape::Bytes {
                content_type: "application/sql"
            }
        ));
        assert_eq!(RunKind::Explain.result(), ResultShape::SummaryOnly);
    }
}
