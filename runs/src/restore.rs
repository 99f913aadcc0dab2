//! Parameters of the restore kinds (docs/BACKUPS.md, "Restore" and "Restore drills"):
//! `backup_restore` restores a stanza into a directory of the agent's host, `backup_drill`
//! restores the latest backup into a scratch directory, checks it and removes it.

use serde::{Deserialize, Serialize};

use crate::params::BackupRepo;

/// How far recovery replays WAL (pgBackRest's `--type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestoreTargetType {
    /// Every archived WAL segment: the latest point.
    #[default]
    Latest,
    /// `--type=time`: a timestamp with time zone, e.g. `2026-12-07 10:15:00+00`.
    Time,
    /// `--type=lsn`: a WAL position, e.g. `0/3000060`.
    Lsn,
    /// `--type=xid`: a transaction id.
    Xid,
    /// `--type=name`: a restore point made with `pg_create_restore_point()`.
    Name,
}

impl RestoreTargetType {
    pub const ALL: [RestoreTargetType; 5] = [
        RestoreTargetType::Latest,
        RestoreTargetType::Time,
        RestoreTargetType::Lsn,
        RestoreTargetType::Xid,
        RestoreTargetType::Name,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            RestoreTargetType::Latest => "latest",
            RestoreTargetType::Time => "time",
            RestoreTargetType::Lsn => "lsn",
            RestoreTargetType::Xid => "xid",
            RestoreTargetType::Name => "name",
        }
    }
}

/// `backup_restore`: `pgbackrest restore` of one stanza into `to_dir`, recovery run to its
/// target, the cluster promoted and then stopped, or left running on `port` when `start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRestoreParams {
    pub stanza: String,
    #[serde(default)]
    pub repo: BackupRepo,
    /// An absolute directory on the agent's host: absent or empty, or with `delta` the data
    /// directory of a stopped cluster of the same stanza.
    pub to_dir: String,
    #[serde(default)]
    pub target_type: RestoreTargetType,
    /// The target's value; required for every type but `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A backup label (`--set`); absent: the latest backup that precedes the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
    /// `--delta` over a stopped cluster in `to_dir` (the operator's confirmation).
    #[serde(default)]
    pub delta: bool,
    /// Leave the restored cluster running for inspection.
    #[serde(default)]
    pub start: bool,
    /// The port of the restored cluster (socket only, in a private directory); absent: a free
    /// one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Stop just before the target (`--target-exclusive`) instead of just after it: for an
    /// xid, the transaction itself is not restored. Time, LSN and xid targets only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub target_exclusive: bool,
    /// Tablespaces restored elsewhere than their original path (`--tablespace-map=name=path`),
    /// by tablespace name (or oid), each to an absolute directory that is absent or empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tablespace_map: Vec<TablespaceMap>,
    /// Every tablespace not in `tablespace_map` below this directory, one subdirectory per
    /// tablespace (`--tablespace-map-all`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tablespace_map_all: Option<String>,
}

/// One tablespace of a restore moved to another directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TablespaceMap {
    /// The tablespace's name (or its oid) in the backup.
    pub name: String,
    /// Where its files go on the agent's host.
    pub path: String,
}

/// `backup_drill`: restore the latest backup into a scratch directory, start it, check it,
/// measure the restore time and the data window, remove the scratch copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupDrillParams {
    pub stanza: String,
    #[serde(default)]
    pub repo: BackupRepo,
    /// A read-only query run on the restored cluster (e.g. row counts of chosen tables); its
    /// first rows are kept in the summary. Absent: only consistency and amcheck.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_sql: Option<String>,
    /// `bt_index_check` on every B-tree index of the DSN's database when amcheck is available.
    #[serde(default = "yes")]
    pub amcheck: bool,
    /// Where the scratch directory is made (absent: the agent's temporary directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch_dir: Option<String>,
}

const fn yes() -> bool {
    true
}

/// A backup label as pgBackRest writes it: `20261207-083000F`, or a differential or incremental
/// on top of one, `20261207-083000F_20261207-093000D` / `…I`. Checked by the API (422 before a
/// run exists) and again by the agent before it goes on pgBackRest's command line.
pub fn is_backup_label(label: &str) -> bool {
    let stamp = |p: &[u8]| {
        p.len() == 15
            && p.iter().enumerate().all(|(i, c)| {
                if i == 8 {
                    *c == b'-'
                } else {
                    c.is_ascii_digit()
                }
            })
    };
    let b = label.as_bytes();
    match b.len() {
        16 => stamp(&b[..15]) && b[15] == b'F',
        33 => {
            stamp(&b[..15])
                && b[15] == b'F'
                && b[16] == b'_'
                && stamp(&b[17..32])
                && matches!(b[32], b'D' | b'I')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RunKind, RunParams};
    use serde_json::json;

    #[test]
    fn a_restore_defaults_to_the_latest_point_and_a_drill_to_amcheck() {
        let Ok(RunParams::BackupRestore(r)) = RunParams::from_json(
            RunKind::BackupRestore,
            &json!({"stanza": "main", "to_dir": "/srv/r"}),
        ) else {
            panic!("a restore with only its directory");
        };
        assert_eq!(r.target_type, RestoreTargetType::Latest);
        assert!(!r.delta && !r.start && r.target.is_none());
        let Ok(RunParams::BackupDrill(d)) =
            RunParams::from_json(RunKind::BackupDrill, &json!({"stanza": "main"}))
        else {
            panic!("a drill with only its stanza");
        };
        assert!(d.amcheck && d.check_sql.is_none());
        assert!(
            RunParams::from_json(
                RunKind::BackupRestore,
                &json!({"stanza": "main", "to_dir": "/r", "target_type": "epoch"})
            )
            .is_err()
        );
        let names: Vec<&str> = RestoreTargetType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(names, ["latest", "time", "lsn", "xid", "name"]);
    }
}
