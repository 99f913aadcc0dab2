//! The parameters of the logical replication run kinds (docs/REPLICATION.md, "Streams"): a
//! stream is validated on both instances, then the publisher's agent creates the publication
//! and the slot, the subscriber's agent the subscription (and the tables `--copy-schema`
//! asked for); removal and rollback drop them again, subscriber first.
//!
//! The subscriber reaches the publisher through a conninfo without a password: the password
//! is stored encrypted with the stream (`replication_streams`, migrations V32) and ingest adds
//! it to what it hands the subscriber's agent ([`ConninfoSecret`]), never to `runs.params`.

use serde::{Deserialize, Serialize};

/// Which end of a stream a run works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamSide {
    Publisher,
    Subscriber,
}

impl StreamSide {
    pub const fn as_str(self) -> &'static str {
        match self {
            StreamSide::Publisher => "publisher",
            StreamSide::Subscriber => "subscriber",
        }
    }
}

/// A table of a stream.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamTable {
    pub schema: String,
    pub table: String,
}

/// A column of a published table as the publisher's agent read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    /// `format_type(atttypid, atttypmod)`: what `CREATE TABLE` takes back.
    #[serde(rename = "type")]
    pub type_sql: String,
    #[serde(default)]
    pub not_null: bool,
    /// `pg_get_expr` of the column's default; none for a serial or identity column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// A column that numbers its rows itself: `serial` (a default from a sequence the column
    /// owns), `identity_always` or `identity_by_default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<String>,
}

/// A CHECK or UNIQUE constraint of a published table: its name and
/// `pg_get_constraintdef` (`CHECK ((qty >= 0))`, `UNIQUE (code)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConstraintDef {
    pub name: String,
    pub definition: String,
}

/// An index of a published table that no constraint owns: its name, whether it is unique,
/// and what follows `USING` in `pg_get_indexdef` (`btree (code)`, `btree (lower(note)) WHERE
/// …`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    pub name: String,
    #[serde(default)]
    pub unique: bool,
    pub using: String,
}

/// A published table's definition: what the subscriber's columns are checked against and
/// what `--copy-schema` creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    pub schema: String,
    pub table: String,
    #[serde(default)]
    pub columns: Vec<ColumnDef>,
    /// The primary key's columns in key order; empty when the table has none.
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// CHECK and UNIQUE constraints (foreign keys are not copied: what they reference may not
    /// be replicated, and the apply workers do not fire them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<ConstraintDef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<IndexDef>,
}

/// The password of a stream's conninfo on its way to the subscriber's agent: `Debug` never
/// shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConninfoSecret(pub String);

impl std::fmt::Debug for ConninfoSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `replication_validate`: every check of one end, reported as a list of problems in the
/// summary (the run succeeds when it could check; an empty list means ready).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationValidateParams {
    pub side: StreamSide,
    /// The publisher: the tables asked for (with `schema`, none: every table of it).
    #[serde(default)]
    pub tables: Vec<StreamTable>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default)]
    pub publication: String,
    #[serde(default)]
    pub slot: String,
    #[serde(default)]
    pub subscription: String,
    /// The subscriber: what the publisher publishes, as its validation read it.
    #[serde(default)]
    pub definitions: Vec<TableDef>,
    /// The subscriber: tables missing here are to be created (else a problem).
    #[serde(default)]
    pub copy_schema: bool,
    /// The publisher: the user the subscriber will connect as (its privileges are checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_user: Option<String>,
    /// The subscriber: how it reaches the publisher, without a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conninfo: Option<String>,
    /// `replication_streams.id`: ingest adds the stored password by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<i64>,
    /// Only in what ingest sends the agent, never in `runs.params`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<ConninfoSecret>,
    pub database: Option<String>,
}

/// `replication_publish`: `CREATE PUBLICATION … FOR TABLE …` and the logical slot the
/// subscription will use (created here, so that the subscription needs no slot of its own
/// and a failure after this step has a slot to drop).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationPublishParams {
    pub publication: String,
    pub slot: String,
    #[serde(default)]
    pub tables: Vec<StreamTable>,
    pub database: Option<String>,
}

/// `replication_subscribe`: the tables `--copy-schema` creates, then `CREATE SUBSCRIPTION …
/// WITH (create_slot = false, slot_name = …)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationSubscribeParams {
    pub subscription: String,
    pub publication: String,
    pub slot: String,
    #[serde(default)]
    pub conninfo: String,
    #[serde(default)]
    pub create_tables: Vec<TableDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<i64>,
    /// Only in what ingest sends the agent, never in `runs.params`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<ConninfoSecret>,
    pub database: Option<String>,
}

/// `replication_drop`: on the subscriber, the subscription (disabled and detached from its
/// slot first, so the drop never needs the publisher) and the tables this stream created; on
/// the publisher, the slot, the table-sync slots of `suboid` and the publication. Each is
/// dropped only if it exists, so a rollback and a repeated remove are the same run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationDropParams {
    pub side: StreamSide,
    #[serde(default)]
    pub subscription: String,
    #[serde(default)]
    pub publication: String,
    #[serde(default)]
    pub slot: String,
    /// The subscription's oid (from the subscriber's drop): its table-sync slots on the
    /// publisher are named `pg_<suboid>_sync_<relid>_<system id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suboid: Option<i64>,
    #[serde(default)]
    pub drop_tables: Vec<StreamTable>,
    pub database: Option<String>,
}
