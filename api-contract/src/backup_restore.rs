//! Restores, restore drills and what runs (docs/BACKUPS.md, "Restore", "Restore drills",
//! "Progress"): the bodies of `POST …/repositories/{repo}/restore` ([`RestoreRequest`]) and
//! `…/drills` ([`DrillRequest`]), the drills (`GET /api/v1/backups/drills`: [`DrillList`]) and
//! the backups, restores and drills running (`GET /api/v1/backups/running`:
//! [`RunningBackups`]).

use serde::{Deserialize, Serialize};

/// How far a restore replays WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TargetType {
    Latest,
    Time,
    Lsn,
    Xid,
    Name,
}

/// A restore of the repository's stanza into a directory of the agent's host.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// An absolute directory on the database host: absent or empty; with `delta`, the data
    /// directory of a stopped cluster. Never the monitored server's data directory.
    #[cfg_attr(feature = "openapi", schema(pattern = "^/", max_length = 4096))]
    pub to_dir: String,
    /// Default `latest` (every archived WAL segment).
    pub target_type: Option<TargetType>,
    /// The target: a timestamp (`2026-12-07 10:15:00+00`), an LSN (`0/3000060`), a
    /// transaction id or a restore point name; required unless `latest`.
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub target: Option<String>,
    /// A backup label; absent: the newest backup before the target.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[0-9]{8}-[0-9]{6}F(_[0-9]{8}-[0-9]{6}[DI])?$")
    )]
    pub set: Option<String>,
    /// Restore over a stopped cluster in `to_dir` with pgBackRest's `--delta`.
    #[serde(default)]
    pub delta: bool,
    /// Leave the restored cluster running (socket only, in a private directory).
    #[serde(default)]
    pub start: bool,
    /// Its port; default: a free one.
    #[serde(default, deserialize_with = "crate::json_integer::option")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65535))]
    pub port: Option<u16>,
    /// Stop just before the target instead of just after it (pgBackRest's
    /// `--target-exclusive`): for an xid, that transaction is not restored. Time, LSN and
    /// xid targets only.
    #[serde(default)]
    pub target_exclusive: bool,
    /// Tablespaces restored to another directory than their original one
    /// (`--tablespace-map`): each to an absolute directory of the database host that is
    /// absent or empty.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 64))]
    pub tablespace_map: Vec<TablespaceMapping>,
    /// Every tablespace not in `tablespace_map` below this directory, one subdirectory per
    /// tablespace name (`--tablespace-map-all`).
    #[cfg_attr(feature = "openapi", schema(pattern = "^/", max_length = 4096))]
    pub tablespace_map_all: Option<String>,
}

/// One tablespace of a restore and where it goes.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TablespaceMapping {
    /// The tablespace's name (or oid) in the backup.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 63))]
    pub name: String,
    /// An absolute directory on the database host, absent or empty.
    #[cfg_attr(feature = "openapi", schema(pattern = "^/", max_length = 4096))]
    pub path: String,
}

/// A restore drill of the repository's latest backup.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DrillRequest {
    /// A read-only query run on the restored copy (e.g. row counts of chosen tables).
    #[cfg_attr(feature = "openapi", schema(max_length = 65536))]
    pub check_sql: Option<String>,
    /// `bt_index_check` on the B-tree indexes when amcheck is available (default true).
    pub amcheck: Option<bool>,
    /// Where the scratch copy is made (default: the agent's temporary directory).
    #[cfg_attr(feature = "openapi", schema(pattern = "^/", max_length = 4096))]
    pub scratch_dir: Option<String>,
}

/// One restore drill.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Drill {
    pub run_id: i64,
    pub instance_id: i64,
    pub stanza: Option<String>,
    /// The run's status (`succeeded`: passed; `failed`, `timed_out`, `cancelled`: did not).
    pub status: String,
    /// `null` while it runs.
    pub passed: Option<bool>,
    /// Why it did not pass.
    pub reason: Option<String>,
    /// The backup restored.
    pub backup: Option<String>,
    /// Measured restore time: restore, recovery and promotion.
    pub rto_seconds: Option<f64>,
    /// The data window: from the last restorable transaction to the drill.
    pub rpo_seconds: Option<f64>,
    pub requested_at: String,
    pub finished_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DrillList {
    pub drills: Vec<Drill>,
}

/// A backup, restore or restore drill queued or running, and how far it has got.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunningBackup {
    pub run_id: i64,
    pub instance_id: i64,
    /// `backup`, `backup_restore` or `backup_drill`.
    pub kind: String,
    pub stanza: Option<String>,
    /// `full`, `diff` or `incr` (backups).
    #[serde(rename = "type")]
    pub backup_type: Option<String>,
    /// `queued`, `dispatched` or `running`.
    pub status: String,
    /// What a restore or drill is doing: `restore` (pgBackRest writes the files), `recovery`
    /// (WAL replayed up to the target), `checks` (a drill's), `done`; null for backups.
    pub stage: Option<String>,
    /// Percent done (null before the first report): of a backup as pgBackRest reports it;
    /// of a restore, the bytes written against the backup's size (100 once its files are
    /// all written).
    pub percent: Option<f64>,
    /// Bytes copied and to copy: a backup's when the installed pgBackRest reports them
    /// (2.45 does not), a restore's always.
    pub bytes_done: Option<i64>,
    pub bytes_total: Option<i64>,
    /// When the agent last reported progress.
    pub progress_at: Option<String>,
    pub started_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunningBackups {
    pub backups: Vec<RunningBackup>,
}
