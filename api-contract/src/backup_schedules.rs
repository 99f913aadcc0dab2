//! Backup and restore drill schedules (docs/BACKUPS.md, "Schedules"): the body that adds one
//! ([`NewSchedule`]), a schedule as shown ([`Schedule`], [`ScheduleList`]) and its firings
//! ([`Firing`], [`FiringList`]).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ScheduledType {
    Full,
    Diff,
    Incr,
}
impl ScheduledType {
    pub const fn as_str(self) -> &'static str {
        match self {
            ScheduledType::Full => "full",
            ScheduledType::Diff => "diff",
            ScheduledType::Incr => "incr",
        }
    }
}

/// What a schedule fires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// A backup of `type` (a `backup` run).
    #[default]
    Backup,
    /// A restore drill of the latest backup (a `backup_drill` run; the agent must allow the
    /// `restore` class).
    Drill,
}
impl ScheduleKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ScheduleKind::Backup => "backup",
            ScheduleKind::Drill => "drill",
        }
    }
}

/// A schedule to add: of one repository (`repository_id`), or of the repositories of the
/// instances labelled `label_key` = `label_value` (those of `stanza` when given, else every
/// one); of backups (`type`) or of restore drills (`kind: drill`, with the drill's options).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    #[serde(default, deserialize_with = "crate::json_integer::option")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub repository_id: Option<i64>,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub label_key: Option<String>,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub label_value: Option<String>,
    /// With a label, optional: only the repositories of this stanza (without it, every
    /// repository of the labelled instances). Refused with `repository_id`.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    )]
    pub stanza: Option<String>,
    /// Five fields (minute hour day-of-month month day-of-week), or six with seconds first;
    /// `L`, `W`, `#` and names as croner reads them.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub cron: String,
    /// An IANA time zone name; default `UTC`.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub time_zone: Option<String>,
    /// Default `backup`.
    pub kind: Option<ScheduleKind>,
    /// The backup's type: required for a backup schedule, refused for a drill's.
    #[serde(rename = "type")]
    pub backup_type: Option<ScheduledType>,
    /// Drills: a read-only query run on the restored copy (e.g. row counts of chosen tables).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 65536))]
    pub check_sql: Option<String>,
    /// Drills: `bt_index_check` on the B-tree indexes when amcheck is available (default
    /// true).
    pub amcheck: Option<bool>,
    /// Drills: where the scratch copy is made (default: the agent's temporary directory).
    #[cfg_attr(feature = "openapi", schema(pattern = "^/", max_length = 4096))]
    pub scratch_dir: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Schedule {
    pub id: i64,
    pub repository_id: Option<i64>,
    /// The repository's instance (repository schedules).
    pub instance_id: Option<i64>,
    pub label_key: Option<String>,
    pub label_value: Option<String>,
    /// The repository's stanza, or a label schedule's (none: every repository of the label).
    pub stanza: Option<String>,
    pub cron: String,
    pub time_zone: String,
    /// `backup` or `drill`.
    pub kind: String,
    /// The backup's type (backup schedules).
    #[serde(rename = "type")]
    pub backup_type: Option<String>,
    /// A drill's check query: shown to the admins of its instance or label only.
    pub check_sql: Option<String>,
    /// Drills: whether amcheck runs.
    pub amcheck: Option<bool>,
    /// Drills: where the scratch copy is made.
    pub scratch_dir: Option<String>,
    /// The next firing (RFC 3339, UTC).
    pub next_fire_at: Option<String>,
    pub created_at: String,
    pub created_by: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleList {
    pub schedules: Vec<Schedule>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Started,
    Missed,
    Skipped,
}

/// One firing of a schedule for one repository.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Firing {
    pub schedule_id: i64,
    /// What the schedule fires: `backup` or `drill`.
    pub kind: String,
    pub repository_id: i64,
    pub instance_id: i64,
    /// When it was due (RFC 3339, UTC).
    pub fire_time: String,
    pub outcome: Outcome,
    /// Why it was missed or skipped.
    pub reason: Option<String>,
    /// The backup or drill run it started.
    pub run_id: Option<i64>,
    pub recorded_at: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FiringList {
    pub firings: Vec<Firing>,
}
