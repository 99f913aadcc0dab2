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
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceList {
    pub instances: Vec<Instance>,
}
