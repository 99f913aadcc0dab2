//! pgBackRest's `info --output=json` (2.45), typed: the part of it the catalogue stores. An
//! unexpected shape is an error naming the field, never a row with holes.
//!
//! The document is an array of stanzas; each has `name`, `status` {`code`, `message`},
//! `backup` [each with `label`, `type`, `prior`, `timestamp` {`start`, `stop`} (Unix
//! seconds), `info` {`size`, `delta`, `repository` {`size`, `delta`}}, `archive` {`start`,
//! `stop`}, `lsn` {`start`, `stop`}, `error`, `database` {`id`}], `archive` [{`id` ("16-1"),
//! `database` {`id`}, `min`, `max`}] and `db` [{`id`, `version`, `system-id`}]. Fields this
//! module does not read are ignored (newer pgBackRest versions add some).

use serde::Deserialize;

/// The run kind's own type: pgBackRest spells its backup types the same in `info` as in
/// `--type`.
pub use lasect_runs::BackupType;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoError {
    #[error("pgBackRest's info is not the JSON this version reads: {0}")]
    Shape(String),
    #[error("pgBackRest's info has no stanza {0:?}")]
    NoStanza(String),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Stanza {
    pub name: String,
    pub status: Status,
    #[serde(default)]
    pub backup: Vec<Backup>,
    #[serde(default)]
    pub archive: Vec<Archive>,
    #[serde(default)]
    pub db: Vec<Db>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    pub code: i32,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Backup {
    pub label: String,
    #[serde(rename = "type")]
    pub backup_type: BackupType,
    pub prior: Option<String>,
    pub timestamp: Span<i64>,
    pub info: Sizes,
    pub archive: Option<Span<Option<String>>>,
    pub lsn: Option<Span<Option<String>>>,
    #[serde(default)]
    pub error: Option<bool>,
    pub database: DbRef,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Span<T> {
    pub start: T,
    pub stop: T,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Sizes {
    pub size: i64,
    pub delta: i64,
    pub repository: RepoSizes,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RepoSizes {
    pub size: Option<i64>,
    pub delta: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DbRef {
    pub id: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Archive {
    pub id: String,
    pub database: DbRef,
    pub min: Option<String>,
    pub max: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Db {
    pub id: i64,
    pub version: String,
}

/// The stanza `name` of an info document.
pub fn parse(document: &serde_json::Value, name: &str) -> Result<Stanza, InfoError> {
    let stanzas: Vec<Stanza> =
        serde_json::from_value(document.clone()).map_err(|e| InfoError::Shape(e.to_string()))?;
    stanzas
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| InfoError::NoStanza(name.to_owned()))
}

impl Stanza {
    /// The archive of the current database (the highest database id: a stanza-upgrade adds
    /// one), whose WAL a restore of the newest backups replays.
    pub fn current_archive(&self) -> Option<&Archive> {
        self.archive.iter().max_by_key(|a| a.database.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Captured from pgBackRest 2.45 (Debian 12) after a full and an incremental backup.
    const REAL: &str = include_str!("pgbackrest-2.45-info.json");

    #[test]
    fn a_real_info_document_reads_whole() {
        let doc: serde_json::Value = serde_json::from_str(REAL).expect("valid JSON");
        let s = parse(&doc, "cap").expect("the stanza");
        assert_eq!((s.status.code, s.status.message.as_str()), (0, "ok"));
        assert_eq!(s.backup.len(), 2);
        let (full, incr) = (&s.backup[0], &s.backup[1]);
        assert_eq!(full.backup_type, BackupType::Full);
        assert_eq!(full.prior, None);
        assert_eq!(incr.backup_type, BackupType::Incr);
        assert_eq!(incr.prior.as_deref(), Some(full.label.as_str()));
        assert!(full.timestamp.start <= full.timestamp.stop);
        assert!(full.info.size > 0 && full.info.repository.size.is_some_and(|n| n > 0));
        assert_eq!(
            full.lsn.as_ref().map(|l| l.start.as_deref()),
            Some(Some("0/2000028"))
        );
        let archive = s.current_archive().expect("an archive");
        assert_eq!(archive.id, "15-1");
        assert_eq!(archive.min.as_deref(), Some("000000010000000000000001"));
        assert_eq!(s.db[0].version, "15");
        assert!(matches!(
            parse(&doc, "other"),
            Err(InfoError::NoStanza(n)) if n == "other"
        ));
    }

    #[test]
    fn an_unexpected_shape_names_what_is_wrong() {
        for (doc, needle) in [
            (json!({"name": "s"}), "sequence"),
            (json!([{"name": "s"}]), "status"),
            (
                json!([{"name": "s", "status": {"code": 0, "message": "ok"},
                        "backup": [{"label": "x", "type": "snapshot"}]}]),
                "snapshot",
            ),
            (
                json!([{"name": "s", "status": {"code": "0", "message": "ok"}}]),
                "expected i32",
            ),
        ] {
            let e = parse(&doc, "s").expect_err("refused").to_string();
            assert!(e.contains(needle), "{doc}: {e}");
        }
    }
}
