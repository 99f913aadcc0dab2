//! `table` and `index`: per-relation statistics of every visited database
//! (pg_stat_user_* + pg_statio_user_* + sizes), gathered in one pass over
//! the databases so both families share each database's connection.
//!
//! Version differences: PostgreSQL 16 added `n_tup_newpage_upd` and
//! `last_idx_scan`; older servers send them as absent. At most
//! [`MAX_RELATIONS`] rows per database and family are read (largest first)
//! so a database with a huge catalog cannot make the agent grow without
//! bound. A database that cannot be read (connection refused, lock
//! timeout on a size) is skipped for the round and warned about once.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use lasect_proto::v1::{IndexRow, IndexSnapshot, TableRow, TableSnapshot};
use tokio_postgres::{Client, Row};

use super::FamilyError;
use super::databases::{self, DatabaseConnections};
use crate::config::DatabaseFilter;

/// Rows read per database and family, at most.
pub const MAX_RELATIONS: i64 = 10_000;

const PG16: i32 = 160_000;

pub fn table_query(server_version_num: i32) -> String {
    let newpage = if server_version_num >= PG16 {
        "s.n_tup_newpage_upd::int8"
    } else {
        "NULL::int8"
    };
    format!(
        "SELECT s.relid, s.schemaname::text AS schemaname, s.relname::text AS relname, \
         s.seq_scan::int8 AS seq_scan, s.seq_tup_read::int8 AS seq_tup_read, \
         s.idx_scan::int8 AS idx_scan, s.idx_tup_fetch::int8 AS idx_tup_fetch, \
         s.n_tup_ins::int8 AS n_tup_ins, s.n_tup_upd::int8 AS n_tup_upd, \
         s.n_tup_del::int8 AS n_tup_del, s.n_tup_hot_upd::int8 AS n_tup_hot_upd, \
         {newpage} AS n_tup_newpage_upd, \
         s.n_live_tup::int8 AS n_live_tup, s.n_dead_tup::int8 AS n_dead_tup, \
         s.n_mod_since_analyze::int8 AS n_mod_since_analyze, \
         s.n_ins_since_vacuum::int8 AS n_ins_since_vacuum, \
         s.vacuum_count::int8 AS vacuum_count, s.autovacuum_count::int8 AS autovacuum_count, \
         s.analyze_count::int8 AS analyze_count, s.autoanalyze_count::int8 AS autoanalyze_count, \
         s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze, \
         io.heap_blks_read::int8 AS heap_blks_read, io.heap_blks_hit::int8 AS heap_blks_hit, \
         io.idx_blks_read::int8 AS idx_blks_read, io.idx_blks_hit::int8 AS idx_blks_hit, \
         io.toast_blks_read::int8 AS toast_blks_read, io.toast_blks_hit::int8 AS toast_blks_hit, \
         pg_relation_size(s.relid)::int8 AS heap_bytes, \
         CASE WHEN c.reltoastrelid <> 0 THEN pg_total_relation_size(c.reltoastrelid)::int8 END AS toast_bytes, \
         pg_indexes_size(s.relid)::int8 AS indexes_bytes \
         FROM pg_stat_user_tables s \
         JOIN pg_statio_user_tables io ON io.relid = s.relid \
         JOIN pg_class c ON c.oid = s.relid \
         ORDER BY c.relpages DESC, s.relid LIMIT {MAX_RELATIONS}"
    )
}

pub fn index_query(server_version_num: i32) -> String {
    let last_scan = if server_version_num >= PG16 {
        "s.last_idx_scan"
    } else {
        "NULL::timestamptz"
    };
    // Unused: never scanned and enforcing no constraint (a unique, primary
    // key or exclusion index is needed even when never scanned).
    format!(
        "SELECT s.indexrelid, s.relid, s.schemaname::text AS schemaname, \
         s.relname::text AS relname, s.indexrelname::text AS indexrelname, \
         s.idx_scan::int8 AS idx_scan, s.idx_tup_read::int8 AS idx_tup_read, \
         s.idx_tup_fetch::int8 AS idx_tup_fetch, \
         io.idx_blks_read::int8 AS idx_blks_read, io.idx_blks_hit::int8 AS idx_blks_hit, \
         pg_relation_size(s.indexrelid)::int8 AS size_bytes, {last_scan} AS last_idx_scan, \
         i.indisunique AS is_unique, i.indisprimary AS is_primary, \
         NOT i.indisvalid AS invalid, \
         (s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary \
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = s.indexrelid)) AS unused \
         FROM pg_stat_user_indexes s \
         JOIN pg_statio_user_indexes io ON io.indexrelid = s.indexrelid \
         JOIN pg_index i ON i.indexrelid = s.indexrelid \
         JOIN pg_class c ON c.oid = s.indexrelid \
         ORDER BY c.relpages DESC, s.indexrelid LIMIT {MAX_RELATIONS}"
    )
}

fn micros(row: &Row, column: &str) -> Result<Option<i64>, tokio_postgres::Error> {
    Ok(row
        .try_get::<_, Option<DateTime<Utc>>>(column)?
        .map(|t| t.timestamp_micros()))
}

fn to_table(row: &Row, datname: &str) -> Result<TableRow, tokio_postgres::Error> {
    let n = |c: &str| row.try_get::<_, Option<i64>>(c);
    Ok(TableRow {
        datname: datname.to_owned(),
        relid: row.try_get("relid")?,
        schemaname: row.try_get("schemaname")?,
        relname: row.try_get("relname")?,
        seq_scan: n("seq_scan")?,
        seq_tup_read: n("seq_tup_read")?,
        idx_scan: n("idx_scan")?,
        idx_tup_fetch: n("idx_tup_fetch")?,
        n_tup_ins: n("n_tup_ins")?,
        n_tup_upd: n("n_tup_upd")?,
        n_tup_del: n("n_tup_del")?,
        n_tup_hot_upd: n("n_tup_hot_upd")?,
        n_tup_newpage_upd: n("n_tup_newpage_upd")?,
        n_live_tup: n("n_live_tup")?,
        n_dead_tup: n("n_dead_tup")?,
        n_mod_since_analyze: n("n_mod_since_analyze")?,
        n_ins_since_vacuum: n("n_ins_since_vacuum")?,
        vacuum_count: n("vacuum_count")?,
        autovacuum_count: n("autovacuum_count")?,
        analyze_count: n("analyze_count")?,
        autoanalyze_count: n("autoanalyze_count")?,
        last_vacuum_unix_micros: micros(row, "last_vacuum")?,
        last_autovacuum_unix_micros: micros(row, "last_autovacuum")?,
        last_analyze_unix_micros: micros(row, "last_analyze")?,
        last_autoanalyze_unix_micros: micros(row, "last_autoanalyze")?,
        heap_blks_read: n("heap_blks_read")?,
        heap_blks_hit: n("heap_blks_hit")?,
        idx_blks_read: n("idx_blks_read")?,
        idx_blks_hit: n("idx_blks_hit")?,
        toast_blks_read: n("toast_blks_read")?,
        toast_blks_hit: n("toast_blks_hit")?,
        heap_bytes: n("heap_bytes")?,
        toast_bytes: n("toast_bytes")?,
        indexes_bytes: n("indexes_bytes")?,
    })
}

fn to_index(row: &Row, datname: &str) -> Result<IndexRow, tokio_postgres::Error> {
    let n = |c: &str| row.try_get::<_, Option<i64>>(c);
    Ok(IndexRow {
        datname: datname.to_owned(),
        indexrelid: row.try_get("indexrelid")?,
        relid: row.try_get("relid")?,
        schemaname: row.try_get("schemaname")?,
        relname: row.try_get("relname")?,
        indexrelname: row.try_get("indexrelname")?,
        idx_scan: n("idx_scan")?,
        idx_tup_read: n("idx_tup_read")?,
        idx_tup_fetch: n("idx_tup_fetch")?,
        idx_blks_read: n("idx_blks_read")?,
        idx_blks_hit: n("idx_blks_hit")?,
        size_bytes: n("size_bytes")?,
        last_idx_scan_unix_micros: micros(row, "last_idx_scan")?,
        is_unique: row.try_get("is_unique")?,
        is_primary: row.try_get("is_primary")?,
        invalid: row.try_get("invalid")?,
        unused: row.try_get::<_, Option<bool>>("unused")?.unwrap_or(false),
    })
}

/// What a pass over the databases produced; `None` = not due.
#[derive(Debug, Default)]
pub struct Relations {
    pub tables: Option<TableSnapshot>,
    pub indexes: Option<IndexSnapshot>,
}

/// Per-instance state: which databases are failing (warned once each).
#[derive(Debug, Default)]
pub struct RelationsCollector {
    failing: BTreeSet<String>,
    warned_budget: bool,
}

/// What one pass needs from its instance.
pub struct Pass<'a> {
    pub instance: &'a str,
    pub home: &'a Client,
    pub others: &'a mut DatabaseConnections,
    pub filter: &'a DatabaseFilter,
    pub tables: bool,
    pub indexes: bool,
}

impl RelationsCollector {
    pub async fn collect(&mut self, pass: Pass<'_>) -> Result<Relations, FamilyError> {
        let facts = pass
            .home
            .query_one(
                "SELECT current_database()::text, current_setting('server_version_num')::int4",
                &[],
            )
            .await?;
        let home_db: String = facts.try_get(0)?;
        let version: i32 = facts.try_get(1)?;
        let names = databases::discover(pass.home, pass.filter).await?;
        let mut out = Relations {
            tables: pass.tables.then(TableSnapshot::default),
            indexes: pass.indexes.then(IndexSnapshot::default),
        };
        if pass.others.capacity() == 0 && names.iter().any(|n| *n != home_db) && !self.warned_budget
        {
            tracing::warn!(
                instance = pass.instance,
                database = %home_db,
                "max_connections = 1: table and index cover only the DSN's database"
            );
            self.warned_budget = true;
        }
        for datname in names {
            let result = if datname == home_db {
                read(pass.home, &datname, version, &mut out).await
            } else if pass.others.capacity() == 0 {
                continue;
            } else {
                match pass.others.get(&datname, pass.instance).await {
                    Ok(client) => read(client, &datname, version, &mut out).await,
                    Err(e) => Err(e.to_string()),
                }
            };
            match result {
                Ok(()) => {
                    if self.failing.remove(&datname) {
                        tracing::info!(instance = pass.instance, database = %datname, "reading table statistics again");
                    }
                }
                Err(error) => {
                    if self.failing.insert(datname.clone()) {
                        tracing::warn!(
                            instance = pass.instance,
                            database = %datname,
                            %error,
                            "cannot read table statistics of a database; skipped (logged again when it recovers)"
                        );
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Reads one database into `out`; on error nothing of it is added.
async fn read(
    client: &Client,
    datname: &str,
    server_version_num: i32,
    out: &mut Relations,
) -> Result<(), String> {
    let describe = |e: tokio_postgres::Error| FamilyError::from(e).to_string();
    let mut tables = Vec::new();
    if out.tables.is_some() {
        let rows = client
            .query(&table_query(server_version_num), &[])
            .await
            .map_err(describe)?;
        for row in &rows {
            tables.push(to_table(row, datname).map_err(describe)?);
        }
    }
    let mut indexes = Vec::new();
    if out.indexes.is_some() {
        let rows = client
            .query(&index_query(server_version_num), &[])
            .await
            .map_err(describe)?;
        for row in &rows {
            indexes.push(to_index(row, datname).map_err(describe)?);
        }
    }
    if let Some(t) = &mut out.tables {
        t.tables.extend(tables);
    }
    if let Some(i) = &mut out.indexes {
        i.indexes.extend(indexes);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_follows_the_server_version() {
        for v in [130_000, 140_000, 150_000] {
            assert!(table_query(v).contains("NULL::int8 AS n_tup_newpage_upd"));
            assert!(index_query(v).contains("NULL::timestamptz AS last_idx_scan"));
        }
        for v in [160_000, 170_002] {
            assert!(table_query(v).contains("s.n_tup_newpage_upd::int8 AS n_tup_newpage_upd"));
            assert!(index_query(v).contains("s.last_idx_scan AS last_idx_scan"));
        }
        assert!(table_query(170_000).contains(&format!("LIMIT {MAX_RELATIONS}")));
    }
}
