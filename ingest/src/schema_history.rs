//! Keeping schema snapshots and their changes (V16): called in the
//! transaction that finishes a successful `schema_snapshot` run. An
//! unchanged schema (same canonical digest as the latest snapshot of that
//! instance and database) only moves the latest snapshot's `taken_at`.

use serde_json::Value;

use crate::schema_diff::{canonical, diff};

#[derive(Debug, thiserror::Error)]
pub enum SchemaHistoryError {
    #[error("the schema document is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("the schema document has no schemas list")]
    Shape,
    #[error("store error: {0}")]
    Store(#[from] tokio_postgres::Error),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Same schema as the latest snapshot.
    Unchanged {
        snapshot: i64,
    },
    New {
        snapshot: i64,
        changes: usize,
    },
}

pub async fn record(
    tx: &tokio_postgres::Transaction<'_>,
    instance_id: i64,
    run_id: i64,
    database: &str,
    document: &[u8],
) -> Result<Recorded, SchemaHistoryError> {
    let doc: Value = serde_json::from_slice(document)?;
    if !doc["schemas"].is_array() {
        return Err(SchemaHistoryError::Shape);
    }
    let database = if database.is_empty() {
        doc["database"].as_str().unwrap_or("").to_owned()
    } else {
        database.to_owned()
    };
    let digest = lasect_pki::hash_token(&canonical(&doc));
    // Serialise snapshots of one instance and database (two runs finishing together).
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('lasect schema ' || $1::bigint || ' ' || $2))",
        &[&instance_id, &database],
    )
    .await?;
    let latest = tx
        .query_opt(
            "SELECT id, digest, snapshot FROM schema_snapshots
             WHERE instance_id = $1 AND database = $2 ORDER BY taken_at DESC, id DESC LIMIT 1",
            &[&instance_id, &database],
        )
        .await?;
    if let Some(row) = &latest {
        let (id, old_digest): (i64, String) = (row.get(0), row.get(1));
        if old_digest == digest {
            tx.execute(
                "UPDATE schema_snapshots SET taken_at = now(), run_id = $2 WHERE id = $1",
                &[&id, &run_id],
            )
            .await?;
            return Ok(Recorded::Unchanged { snapshot: id });
        }
    }
    let snapshot: i64 = tx
        .query_one(
            "INSERT INTO schema_snapshots (instance_id, database, run_id, digest, snapshot)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[&instance_id, &database, &run_id, &digest, &doc],
        )
        .await?
        .get(0);
    let Some(row) = latest else {
        return Ok(Recorded::New {
            snapshot,
            changes: 0,
        });
    };
    let (previous, old): (i64, Value) = (row.get(0), row.get(2));
    let changes = diff(&old, &doc);
    for c in &changes {
        tx.execute(
            "INSERT INTO schema_changes (instance_id, database, from_snapshot, to_snapshot,
                 object_kind, object_name, change, classification, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &instance_id,
                &database,
                &previous,
                &snapshot,
                &c.object_kind,
                &c.object_name,
                &c.change,
                &c.classification(),
                &c.detail,
            ],
        )
        .await?;
    }
    Ok(Recorded::New {
        snapshot,
        changes: changes.len(),
    })
}
