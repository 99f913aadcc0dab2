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

/// `import_csv`: what was imported (all or nothing: `rows_imported` is 0 when a line was
/// refused, and `errors` says which).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportCsvResult {
    pub rows_imported: u64,
    /// CSV records read, the header not counted (a quoted field may span lines).
    pub records: u64,
    pub errors: Vec<ImportLineError>,
}

/// `extension_list`: every extension the server has, installed or not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExtensionListResult {
    pub extensions: Vec<AvailableExtension>,
}

/// An extension of `pg_available_extensions`, with where and which version is installed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AvailableExtension {
    pub name: String,
    pub default_version: Option<String>,
    /// Not installed: none.
    pub installed_version: Option<String>,
    pub schema: Option<String>,
    pub comment: Option<String>,
}

/// `extension_action`: the extension and its version once the action is done.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExtensionActionResult {
    pub name: String,
    pub action: String,
    /// None once it is disabled (dropped).
    pub installed_version: Option<String>,
}

/// `schema_snapshot`: the document the agent builds in one catalog snapshot and ingest stores
/// (`schema_snapshots.snapshot`), as the CLI reads it. The API hands the stored document on
/// as it is, so readers of fields not declared here (the console) still see them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchemaDocument {
    pub database: String,
    pub server_version_num: i32,
    pub extensions: Vec<SchemaExtension>,
    pub schemas: Vec<SchemaObjects>,
}

/// An extension installed in the database, and the schema of its objects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchemaExtension {
    pub name: String,
    pub version: String,
    pub schema: String,
}

/// One schema (namespace) and what it holds; extension members are left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchemaObjects {
    pub name: String,
    pub tables: Vec<SchemaTable>,
    pub views: Vec<SchemaView>,
    pub functions: Vec<SchemaFunction>,
    pub types: Vec<SchemaType>,
    pub sequences: Vec<SchemaSequence>,
}

/// A table: ordinary, partitioned or foreign (`kind`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchemaTable {
    pub name: String,
    pub kind: String,
    /// `schema.table` of its parent when it is a partition.
    pub partition_of: Option<String>,
    pub size_bytes: i64,
    pub row_estimate: i64,
    pub columns: Vec<TableColumn>,
    pub constraints: Vec<TableConstraint>,
    pub indexes: Vec<TableIndex>,
    pub triggers: Vec<TableTrigger>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TableColumn {
    pub name: String,
    /// As `format_type` writes it (`character varying(20)`).
    #[serde(rename = "type")]
    pub type_name: String,
    pub nullable: bool,
    pub default: Option<String>,
    /// `a` (always) or `d` (by default) for an identity column.
    pub identity: Option<String>,
    /// `s` for a stored generated column.
    pub generated: Option<String>,
}

// A column the document does not say is NOT NULL is not shown as one.
impl Default for TableColumn {
    fn default() -> Self {
        TableColumn {
            name: String::new(),
            type_name: String::new(),
            nullable: true,
            default: None,
            identity: None,
            generated: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TableConstraint {
    pub name: String,
    /// `primary_key`, `unique`, `check`, `foreign_key`, `exclusion`.
    #[serde(rename = "type")]
    pub kind: String,
    pub definition: String,
    /// None for a constraint on no column (a table-wide check).
    pub columns: Option<Vec<String>>,
    /// Foreign keys: the table and columns referred to.
    pub ref_schema: Option<String>,
    pub ref_table: Option<String>,
    pub ref_columns: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TableIndex {
    pub name: String,
    pub definition: String,
    pub unique: bool,
    pub primary: bool,
    pub valid: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TableTrigger {
    pub name: String,
    pub definition: String,
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchemaView {
    pub name: String,
    pub materialized: bool,
    pub definition: Option<String>,
    pub columns: Vec<ResultColumn>,
    /// `schema.table` of the relations it reads.
    pub depends_on: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchemaFunction {
    pub name: String,
    /// `name(argument types)`, unique in its schema.
    pub signature: String,
    /// None for a procedure.
    pub returns: Option<String>,
    /// `prokind`: f, p, a or w.
    pub kind: String,
    pub language: String,
    /// `provolatile`: i, s or v.
    pub volatility: String,
    /// Of the source: a changed body shows as a change without the text being stored.
    pub definition_md5: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchemaType {
    pub name: String,
    /// `enum`, `composite`, `domain` or `range`.
    pub kind: String,
    /// An enum's labels, in order.
    pub values: Option<Vec<String>>,
    /// A domain's base type.
    pub definition: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchemaSequence {
    pub name: String,
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

    /// The catalog's NULLs (a check constraint on no column, a procedure's result, a domain's
    /// enum labels) read as none; a column not said to be NOT NULL is nullable.
    #[test]
    fn a_schema_document_reads_the_catalogs_nulls() {
        let doc: SchemaDocument = serde_json::from_value(json!({
            "database": "app", "server_version_num": 170002,
            "extensions": [{"name": "plpgsql", "version": "1.0", "schema": "pg_catalog"}],
            "schemas": [{"name": "public", "tables": [{
                "name": "orders", "kind": "table", "partition_of": null, "size_bytes": 8192,
                "row_estimate": 0,
                "columns": [{"name": "id", "type": "bigint", "nullable": false, "default": null,
                             "identity": "a", "generated": null},
                            {"name": "note", "type": "text"}],
                "constraints": [{"name": "positive", "type": "check",
                                 "definition": "CHECK (true)", "columns": null,
                                 "ref_schema": null, "ref_table": null, "ref_columns": null}],
                "indexes": [], "triggers": []}],
              "views": [], "types": [{"name": "d", "kind": "domain", "values": null,
                                      "definition": "integer"}],
              "functions": [{"name": "p", "signature": "p()", "returns": null, "kind": "p",
                             "language": "sql", "volatility": "v", "definition_md5": "x"}],
              "sequences": [{"name": "orders_id_seq"}]}]
        }))
        .expect("document");
        let table = &doc.schemas[0].tables[0];
        assert!(!table.columns[0].nullable);
        assert!(table.columns[1].nullable, "not said NOT NULL");
        assert_eq!(table.constraints[0].columns, None);
        assert_eq!(doc.schemas[0].functions[0].returns, None);
        assert_eq!(
            doc.schemas[0].types[0].definition.as_deref(),
            Some("integer")
        );
        let old: ImportCsvResult =
            serde_json::from_value(json!({"rows_imported": 2})).expect("import");
        assert_eq!((old.rows_imported, old.records), (2, 0));
    }
}
