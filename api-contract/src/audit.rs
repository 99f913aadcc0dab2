//! The audit log (admin only): one entry ([`AuditRow`]) and a page of them ([`AuditList`]).

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditRow {
    pub id: i64,
    pub time: String,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub source: Option<String>,
    pub outcome: String,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditList {
    pub entries: Vec<AuditRow>,
}
