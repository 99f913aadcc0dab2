//! Backups as the API shows them: the stored pgBackRest catalogue of an instance
//! (`GET /api/v1/backups`: [`Catalogue`], per repository [`RepositoryCatalogue`], each backup
//! a [`CatalogueBackup`]).

use serde::{Deserialize, Serialize};

/// One backup in a repository.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CatalogueBackup {
    pub label: String,
    /// `full`, `diff` or `incr`.
    #[serde(rename = "type")]
    pub backup_type: String,
    /// The backup it depends on (diff and incr).
    pub prior: Option<String>,
    pub started_at: String,
    pub stopped_at: String,
    pub duration_secs: i64,
    /// The database's size, and what this backup copied of it (bytes).
    pub database_size: Option<i64>,
    pub delta_size: Option<i64>,
    /// The size in the repository (compressed), and of what this backup added.
    pub repo_size: Option<i64>,
    pub repo_delta_size: Option<i64>,
    pub wal_start: Option<String>,
    pub wal_stop: Option<String>,
    pub lsn_start: Option<String>,
    pub lsn_stop: Option<String>,
    /// pgBackRest found a page checksum error while copying.
    pub error: bool,
}

/// The catalogue of one repository (stanza).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RepositoryCatalogue {
    pub repository_id: i64,
    pub stanza: String,
    /// When the agent's `pgbackrest info` was taken; null before the first.
    pub refreshed_at: Option<String>,
    /// The run it came from.
    pub run_id: Option<i64>,
    /// pgBackRest's stanza status (0 = ok).
    pub status_code: Option<i32>,
    pub status_message: Option<String>,
    /// The WAL archive of the current database: its id (e.g. `16-1`) and range.
    pub archive_id: Option<String>,
    pub archive_min: Option<String>,
    pub archive_max: Option<String>,
    /// The recovery window: earliest and latest point in time known restorable.
    pub earliest_restorable: Option<String>,
    pub latest_restorable: Option<String>,
    /// Why the latest catalogue could not be read, when it could not (the previous one stays).
    pub problem: Option<String>,
    /// Oldest first.
    pub backups: Vec<CatalogueBackup>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Catalogue {
    pub instance_id: i64,
    pub repositories: Vec<RepositoryCatalogue>,
}
