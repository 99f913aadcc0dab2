//! Logical replication streams as the API shows them (docs/REPLICATION.md "Streams"): a
//! stream ([`Stream`]) with its steps ([`StreamStep`]), the problems validation found
//! ([`Problem`]) and the subscription's backfill ([`Backfill`], [`BackfillTable`]); the list
//! ([`StreamList`]); the replication graph of `GET /api/v1/replication/topology`
//! ([`Topology`]: [`Node`]s and [`Edge`]s).

use serde::{Deserialize, Serialize};

/// One step of a stream's operations: a run on one of its instances.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamStep {
    pub n: i32,
    /// `validate_publisher`, `validate_subscriber`, `publish`, `subscribe`,
    /// `rollback_subscriber`, `rollback_publisher`, `remove_subscriber`, `remove_publisher`.
    pub step: String,
    pub instance_id: i64,
    pub run_id: Option<i64>,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub error: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
}

/// A logical replication stream.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stream {
    pub id: i64,
    pub publisher_instance_id: i64,
    pub publisher_instance: String,
    pub subscriber_instance_id: i64,
    pub subscriber_instance: String,
    pub publisher_database: Option<String>,
    pub subscriber_database: Option<String>,
    pub publication: String,
    pub slot_name: String,
    pub subscription: String,
    /// `schema.table`, as validation resolved them.
    pub tables: Vec<String>,
    pub schema: Option<String>,
    pub copy_schema: bool,
    /// What `copy_schema` created on the subscriber (`schema.table`).
    pub created_tables: Vec<String>,
    /// Without a password.
    pub conninfo: String,
    pub password_set: bool,
    /// `validating`, `invalid`, `validated` (dry run), `creating`, `syncing`,
    /// `rolling_back`, `failed`, `rollback_failed`, `removing`, `removed`, `remove_failed`.
    pub status: String,
    pub dry_run: bool,
    pub problems: Vec<Problem>,
    pub failed_step: Option<String>,
    pub error: Option<String>,
    pub requested_by: String,
    pub created_at: String,
    pub updated_at: String,
    pub steps: Vec<StreamStep>,
    /// The subscription's initial sync and then streaming (from the agents' samples); absent
    /// in lists and before the subscription exists.
    pub backfill: Option<Backfill>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamList {
    pub streams: Vec<Stream>,
}

/// A problem validation found, on one side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// `publisher` or `subscriber`.
    pub side: String,
    /// What was checked: `wal_level`, `max_replication_slots`, `replica_identity`,
    /// `target_table_missing`, `publisher_unreachable`, `privileges`, ...
    pub check: String,
    pub message: String,
}

/// One table of a subscription.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackfillTable {
    pub schema: String,
    pub table: String,
    /// `init`, `data_copy`, `finished`, `sync_done`, `ready`, or `unknown` (no sample yet).
    pub state: String,
    /// Rows the table-sync worker copied so far (while copying).
    pub rows_copied: Option<i64>,
    /// COPY bytes received so far (text format; while copying).
    pub bytes_copied: Option<i64>,
    /// The table on the publisher: live rows (estimate) and heap + TOAST bytes.
    pub publisher_rows: Option<i64>,
    pub publisher_bytes: Option<i64>,
    /// 0..=100; 100 once the table left `data_copy`; none while it copies when the
    /// subscriber has no copy progress (`copy_progress` `state_only`).
    pub percent: Option<f64>,
    pub rows_per_second: Option<f64>,
    pub bytes_per_second: Option<f64>,
    /// Seconds until the copy ends at the current throughput.
    pub eta_seconds: Option<f64>,
}

/// A subscription's backfill.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Backfill {
    /// `initial_sync` while a table is not ready, `streaming` once all are, `unknown` before
    /// the first sample.
    pub state: String,
    pub tables_total: usize,
    pub tables_ready: usize,
    /// `counted`: rows and bytes copied come from pg_stat_progress_copy (PostgreSQL 14+);
    /// `state_only`: the subscriber has no copy progress view (PostgreSQL 13), so a table
    /// being copied shows its state only, without rows, bytes, percent or ETA.
    pub copy_progress: String,
    pub percent: Option<f64>,
    pub rows_per_second: Option<f64>,
    pub eta_seconds: Option<f64>,
    /// When the newest state sample was taken (RFC 3339).
    pub sampled_at: Option<String>,
    pub tables: Vec<BackfillTable>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Topology {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// An instance Lasect watches, or a server it only knows from another's samples.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Node {
    /// `instance:<id>` or `external:<host>:<port>` (or `external:<address>/<name>`,
    /// `external:slot:<instance id>/<slot>` when only a sender or a slot is known).
    pub id: String,
    /// `instance` or `external`.
    pub kind: String,
    pub instance_id: Option<i64>,
    pub name: String,
    /// `primary`, `standby` or `unknown` (no identity sample yet, or an external node).
    pub role: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub labels: Option<serde_json::Value>,
    /// pg_control_system().system_identifier, in decimal (an unsigned 64-bit number).
    pub system_identifier: Option<String>,
    pub timeline_id: Option<i32>,
    /// WAL position in bytes (current on a primary, last received on a standby).
    pub wal_lsn: Option<i64>,
    pub host: Option<String>,
    pub port: Option<i32>,
    /// When the identity was sampled (RFC 3339).
    pub sampled_at: Option<String>,
}

/// One replication stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Edge {
    /// `physical` or `logical`.
    pub kind: String,
    /// The sending node's id (primary, upstream standby or publisher).
    pub from: String,
    /// The receiving node's id (standby or subscriber).
    pub to: String,
    /// Physical: the sender's state (`streaming`, `catchup`, ...) else the receiver's;
    /// logical: `streaming`, `initial_sync`, `stopped` or `disabled`; a slot nobody reads:
    /// `inactive`.
    pub state: String,
    pub sync_state: Option<String>,
    pub application_name: Option<String>,
    pub sent_lag_bytes: Option<i64>,
    pub write_lag_bytes: Option<i64>,
    pub flush_lag_bytes: Option<i64>,
    pub replay_lag_bytes: Option<i64>,
    pub write_lag_seconds: Option<f64>,
    pub flush_lag_seconds: Option<f64>,
    pub replay_lag_seconds: Option<f64>,
    /// Physical, from the standby: age of the last replayed transaction.
    pub replay_delay_seconds: Option<f64>,
    /// Physical: seconds since the receiver last heard from the sender.
    pub last_message_age_seconds: Option<f64>,
    /// Logical: when the subscriber last received a message (RFC 3339).
    pub last_message_at: Option<String>,
    pub slot_name: Option<String>,
    pub slot_active: Option<bool>,
    /// WAL the slot keeps on the sender, bytes.
    pub slot_retained_bytes: Option<i64>,
    pub slot_wal_status: Option<String>,
    pub subscription: Option<String>,
    pub subscriber_database: Option<String>,
    pub publisher_database: Option<String>,
    pub publications: Option<Vec<String>>,
    pub received_lsn: Option<i64>,
    pub latest_end_lsn: Option<i64>,
    /// Logical: WAL received but not yet reported applied (received − latest end).
    pub apply_lag_bytes: Option<i64>,
    /// Logical: the publisher's WAL position minus what the subscriber received.
    pub publisher_lag_bytes: Option<i64>,
    /// Logical: the subscribed tables and their sync state.
    pub tables: Option<Vec<EdgeTable>>,
    /// Logical, when the publisher is watched: what its publications of this subscription
    /// publish (`schema.table`); a table here and not in `tables` waits for
    /// `ALTER SUBSCRIPTION ... REFRESH PUBLICATION`.
    pub published_tables: Option<Vec<String>>,
    /// Logical, while the initial copy runs (`initial_sync`): per table what is copied against
    /// the table on the publisher, throughput and ETA (`api/src/replication_backfill.rs`).
    pub backfill: Option<Backfill>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EdgeTable {
    pub schema: String,
    pub table: String,
    /// `init`, `data_copy`, `finished`, `sync_done` or `ready`.
    pub state: String,
}
