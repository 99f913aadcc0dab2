//! The schema explorer's answers: the latest snapshot ([`SchemaSnapshot`]), the recorded
//! changes ([`SchemaChanges`] of [`SchemaChange`]) and the foreign-key graph
//! ([`ForeignKeyGraph`]), the body that asks for a snapshot ([`SnapshotRequest`]); the
//! extensions an instance has ([`ExtensionList`]) and the body that changes one
//! ([`ExtensionAction`]).

use lasect_runs::{AvailableExtension, SchemaDocument};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchemaSnapshot {
    pub snapshot_id: i64,
    pub database: String,
    pub taken_at: String,
    // The document as ingest stored it, handed on whole: its readers (the console) use fields
    // that `SchemaDocument` leaves out, and a newer agent's fields pass through an older API.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub snapshot: Value,
}

impl SchemaSnapshot {
    /// The snapshot document, typed (missing fields default, unknown ones are ignored).
    pub fn document(&self) -> serde_json::Result<SchemaDocument> {
        serde_json::from_value(self.snapshot.clone())
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchemaChange {
    pub id: i64,
    pub detected_at: String,
    pub database: String,
    pub object_kind: String,
    pub object_name: String,
    /// added, dropped or altered.
    pub change: String,
    /// breaking or non_breaking.
    pub classification: String,
    // What changed (`from` and `to`, shaped by the kind of object and of change): shown, not
    // interpreted, so it stays JSON.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub detail: Value,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchemaChanges {
    pub changes: Vec<SchemaChange>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GraphNode {
    /// `schema.table`
    pub id: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GraphEdge {
    pub from: String,
    pub to: String,
    pub name: String,
    pub columns: Vec<String>,
    pub ref_columns: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForeignKeyGraph {
    pub snapshot_id: i64,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExtensionList {
    pub run_id: i64,
    /// `[{name, default_version, installed_version, schema, comment}]`
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub extensions: Vec<AvailableExtension>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    /// Database (default: the instance's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExtensionAction {
    /// enable, disable or update.
    #[cfg_attr(feature = "openapi", schema(pattern = "^(enable|disable|update)$"))]
    pub action: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default)]
    pub cascade: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}
