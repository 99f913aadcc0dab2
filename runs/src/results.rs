//! The structured results of the kinds whose summary has a fixed shape: what the agent writes
//! into `runs.summary` (or `error_detail`) and what the CLI reads back.
//!
//! Every field has a default: a result written by an older agent that lacked a field still
//! reads, as the untyped lookups it replaces did. Unknown fields are ignored for the same reason.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `instance_check`: what the agent found about the server and its own role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceCheckResult {
    /// The server is recent enough (13 or later).
    pub ok: bool,
    pub server_version_num: i32,
    pub version: String,
    pub in_recovery: bool,
    pub user: String,
    pub superuser: bool,
    pub database: String,
    pub features: Vec<FeatureCheck>,
}

/// One thing Lasect does with the instance, and why it will not work when it will not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureCheck {
    pub feature: String,
    pub ok: bool,
    /// Set when not ok.
    pub reason: Option<String>,
}

/// `instance_metadata`: version, uptime, sizes and what is installed. Replication and roles
/// are shown as the agent wrote them, so they stay JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceMetadataResult {
    pub version: String,
    pub server_version_num: i32,
    pub started_at: Option<String>,
    pub uptime_s: Option<i64>,
    pub in_recovery: bool,
    pub replication: Value,
    pub roles: Vec<Value>,
    pub extensions: Vec<InstalledExtension>,
    pub databases: Vec<DatabaseSize>,
}

/// An extension installed in the database the agent connects to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstalledExtension {
    pub name: String,
    pub version: String,
    pub database: String,
}

/// A database of the server; no size when the role may not connect to it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseSize {
    pub name: String,
    pub size_bytes: Option<i64>,
}

/// `import_csv`: a line of the file that was refused, and why (`errors` of its result or of
/// its error detail).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportLineError {
    /// 1-based line of the file.
    pub line: u64,
    pub error: String,
}

/// A column of a row result (`sql`, `table_data`): its name and PostgreSQL type name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResultColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_check_reads_what_the_agent_writes_and_missing_fields_default() {
        let check: InstanceCheckResult = serde_json::from_value(json!({
            "ok": true, "server_version_num": 150004, "version": "15.4", "in_recovery": false,
            "user": "lasect", "superuser": false, "database": "postgres",
            "features": [{"feature": "logs", "ok": false, "reason": "no pg_ls_logdir"},
                         {"feature": "settings", "ok": true, "reason": null}],
            "later_field": 1
        }))
        .expect("check");
        assert_eq!(check.features.len(), 2);
        assert_eq!(check.features[0].reason.as_deref(), Some("no pg_ls_logdir"));
        let old: InstanceCheckResult =
            serde_json::from_value(json!({"version": "13.1"})).expect("old check");
        assert_eq!(old.version, "13.1");
        assert!(old.features.is_empty());
    }

    #[test]
    fn metadata_sizes_may_be_null_and_columns_read_their_type() {
        let m: InstanceMetadataResult = serde_json::from_value(json!({
            "uptime_s": null, "databases": [{"name": "app", "size_bytes": null}],
            "extensions": [{"name": "plpgsql", "version": "1.0", "database": "app"}]
        }))
        .expect("metadata");
        assert_eq!(m.uptime_s, None);
        assert_eq!(m.databases[0].size_bytes, None);
        let c: ResultColumn =
            serde_json::from_value(json!({"name": "n", "type": "int4"})).expect("column");
        assert_eq!(c.type_name, "int4");
        assert_eq!(
            serde_json::to_value(&c).expect("json"),
            json!({"name": "n", "type": "int4"})
        );
    }
}
