//! Instances over the API: one as `GET /api/v1/instances` lists it ([`Instance`]) and the list
//! ([`InstanceList`]).

use serde::{Deserialize, Serialize};

/// An instance as the API shows it. Times are RFC 3339 in UTC.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Instance {
    pub id: i64,
    pub name: String,
    pub agent_id: String,
    pub server_version_num: Option<i32>,
    pub version: Option<String>,
    pub in_recovery: Option<bool>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub labels: serde_json::Value,
    pub created_at: String,
    pub last_seen: Option<String>,
    /// `agent` (from an agent's config file) or `api` (added through the API).
    pub source: String,
    /// `validating`, `active` or `removed`.
    pub state: String,
    /// The DSN of an API-added instance, password replaced by `********`.
    pub dsn: Option<String>,
    /// Last health report of the serving agent.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub health: Option<serde_json::Value>,
    pub health_at: Option<String>,
    /// Key figures from the latest samples (list only; absent on a single instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub figures: Option<KeyFigures>,
}

/// An instance's key figures from its samples of the last hour; a field is null when no
/// sample of that hour gives it (a rate needs two samples).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyFigures {
    /// Sessions in the latest `activity` sample, and the server's `max_connections`.
    pub connections: Option<i64>,
    pub max_connections: Option<i64>,
    /// Commits and rollbacks per second between the two latest `database` samples.
    pub tps: Option<f64>,
    /// Blocks hit / (hit + read) between the two latest `database` samples, in percent.
    pub cache_hit_percent: Option<f64>,
    /// A standby's replay delay (latest `standby` sample), or a primary's largest replay lag of
    /// its WAL senders (latest `replication` sample).
    pub replication_lag_seconds: Option<f64>,
    pub replication_lag_bytes: Option<i64>,
    /// The fullest file system holding the instance's data, WAL or tablespaces, in percent.
    pub disk_used_percent: Option<f64>,
    /// Sum of the databases' sizes in the latest `database` sample.
    pub database_size_bytes: Option<i64>,
    /// When the latest sample that gave a figure was taken.
    pub sampled_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceList {
    pub instances: Vec<Instance>,
}

// The body of `POST /api/v1/instances`.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddInstance {
    /// libpq connection string or URL (at most 4096 characters). The agent connects with it; it
    /// may hold a password.
    #[cfg_attr(feature = "openapi", schema(max_length = 4096))]
    pub dsn: String,
    /// Unique per agent, `[A-Za-z0-9][A-Za-z0-9._-]{0,62}`; default from host, port and dbname.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The agent that serves it; may be omitted when there is exactly one agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Label values are strings.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = std::collections::HashMap<String, String>)
    )]
    pub labels: serde_json::Map<String, serde_json::Value>,
    /// The connection of the read-only runs (sql, explain, export, table data, schema
    /// snapshots); default: `dsn`. Its login role should be unprivileged (e.g. granted only
    /// pg_read_all_data and pg_monitor): the agent refuses read-only runs that would log in as a
    /// superuser or a member of pg_execute_server_program, pg_read_server_files,
    /// pg_write_server_files or pg_signal_backend. Encrypted like `dsn`, never returned.
    #[cfg_attr(feature = "openapi", schema(max_length = 4096))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_dsn: Option<String>,
    /// Let read-only runs log in as such a privileged role anyway (default false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_privileged_runs: bool,
}

// `POST /api/v1/instances` when the agent checked the instance in time (201).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddedInstance {
    pub instance: Instance,
    /// What the agent found: version, role, features that will not work and why.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub check: serde_json::Value,
}

// `POST /api/v1/instances/{id}/test` when the agent answered in time.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckResult {
    pub run_id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub check: serde_json::Value,
}

// `GET /api/v1/instances/{id}` (and its refresh when the agent answered in time).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceDetail {
    pub instance: Instance,
    /// Last `instance_metadata` result: version, uptime, replication, roles, extensions, sizes.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Value>,
    pub metadata_at: Option<String>,
    /// The connection of read-only runs without its password, when it has its own.
    pub run_dsn_redacted: Option<String>,
    /// Read-only runs may log in as a privileged role.
    pub allow_privileged_runs: bool,
}

#[cfg(test)]
mod tests {
    use super::AddInstance;

    #[test]
    fn an_add_body_sends_only_what_is_set_and_the_api_reads_it_back() {
        let body = AddInstance {
            dsn: "host=db".into(),
            name: None,
            agent: Some("a1".into()),
            labels: serde_json::Map::new(),
            run_dsn: None,
            allow_privileged_runs: false,
        };
        let json = serde_json::to_value(&body).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({"dsn": "host=db", "agent": "a1", "labels": {}})
        );
        let back: AddInstance = serde_json::from_value(json).expect("the API reads it");
        assert_eq!(back.agent.as_deref(), Some("a1"));
        assert!(!back.allow_privileged_runs);
    }
}
