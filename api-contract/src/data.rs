//! The bodies that start data transfers (`POST …/export`, `POST …/dump`); their results are
//! files, fetched from `/runs/{id}/download`. An import's body is the CSV itself.

use serde::{Deserialize, Serialize};

use crate::runs::RunLimits;

#[derive(Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// A query (read-only) instead of a table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(flatten)]
    pub limits: RunLimits,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DumpRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Default true (definitions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(flatten)]
    pub limits: RunLimits,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The CLI sends only what is set; the API reads the limits flattened beside the fields,
    /// integers as JSON Schema allows them.
    #[test]
    fn transfer_bodies_leave_out_what_is_unset_and_read_their_limits() {
        let export = ExportRequest {
            schema: Some("public".into()),
            table: Some("orders".into()),
            ..ExportRequest::default()
        };
        assert_eq!(
            serde_json::to_value(&export).expect("json"),
            json!({"schema": "public", "table": "orders"})
        );
        let dump: DumpRequest =
            serde_json::from_value(json!({"schema_only": false, "timeout_ms": 60000.0}))
                .expect("dump");
        assert_eq!(dump.schema_only, Some(false));
        assert_eq!(dump.limits.timeout_ms, Some(60_000));
    }
}
