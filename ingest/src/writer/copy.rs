//! Binary COPY of a batch's metric rows, one COPY per family table; column
//! lists and types follow `V1__foundation.sql`.

use std::pin::pin;

use deadpool_postgres::Transaction;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::{StoreError, prepare, query};
use crate::validate::{Batch, DATABASE_COUNTERS, HOST_MEMORY_COLUMNS};

pub(super) async fn database(
    tx: &Transaction<'_>,
    instance_ids: &[i64],
    batch: &Batch,
) -> Result<(), StoreError> {
    if batch.databases.is_empty() {
        return Ok(());
    }
    let statement = format!(
        "COPY metric_database (time, instance_id, datid, datname, numbackends, {}, stats_reset)
         FROM STDIN (FORMAT binary)",
        DATABASE_COUNTERS.join(", ")
    );
    let mut types = vec![
        Type::TIMESTAMPTZ,
        Type::INT8,
        Type::INT8,
        Type::TEXT,
        Type::INT4,
    ];
    types.extend(std::iter::repeat_n(Type::INT8, DATABASE_COUNTERS.len()));
    types.push(Type::TIMESTAMPTZ);

    let action = "copying metric_database rows";
    let statement = prepare(tx, action, &statement).await?;
    let sink = tx.copy_in(&statement).await.map_err(query(action))?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
    for row in &batch.databases {
        let instance_id = instance_ids
            .get(row.instance)
            .ok_or_else(|| StoreError::MissingInstance(format!("#{}", row.instance)))?;
        let s = &row.stats;
        let mut values: Vec<&(dyn ToSql + Sync)> =
            vec![&row.time, instance_id, &s.datid, &s.datname, &s.numbackends];
        values.extend(s.counters.iter().map(|c| c as &(dyn ToSql + Sync)));
        values.push(&s.stats_reset);
        writer
            .as_mut()
            .write(&values)
            .await
            .map_err(query(action))?;
    }
    writer.finish().await.map_err(query(action))?;
    Ok(())
}

pub(super) async fn host_cpu(
    tx: &Transaction<'_>,
    agent_id: &str,
    batch: &Batch,
) -> Result<(), StoreError> {
    if batch.host_cpu.is_empty() {
        return Ok(());
    }
    let action = "copying metric_host_cpu rows";
    let statement = prepare(
        tx,
        action,
        "COPY metric_host_cpu (time, agent_id, cpu_count, usage_percent, load1, load5, load15)
         FROM STDIN (FORMAT binary)",
    )
    .await?;
    let sink = tx.copy_in(&statement).await.map_err(query(action))?;
    let types = [
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::INT4,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::FLOAT8,
    ];
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
    for row in &batch.host_cpu {
        let c = &row.value;
        writer
            .as_mut()
            .write(&[
                &row.time,
                &agent_id,
                &c.cpu_count,
                &c.usage_percent,
                &c.load1,
                &c.load5,
                &c.load15,
            ])
            .await
            .map_err(query(action))?;
    }
    writer.finish().await.map_err(query(action))?;
    Ok(())
}

pub(super) async fn host_memory(
    tx: &Transaction<'_>,
    agent_id: &str,
    batch: &Batch,
) -> Result<(), StoreError> {
    if batch.host_memory.is_empty() {
        return Ok(());
    }
    let statement = format!(
        "COPY metric_host_memory (time, agent_id, {}) FROM STDIN (FORMAT binary)",
        HOST_MEMORY_COLUMNS.join(", ")
    );
    let mut types = vec![Type::TIMESTAMPTZ, Type::TEXT];
    types.extend(std::iter::repeat_n(Type::INT8, HOST_MEMORY_COLUMNS.len()));

    let action = "copying metric_host_memory rows";
    let statement = prepare(tx, action, &statement).await?;
    let sink = tx.copy_in(&statement).await.map_err(query(action))?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
    for row in &batch.host_memory {
        let mut values: Vec<&(dyn ToSql + Sync)> = vec![&row.time, &agent_id];
        values.extend(row.value.bytes.iter().map(|b| b as &(dyn ToSql + Sync)));
        writer
            .as_mut()
            .write(&values)
            .await
            .map_err(query(action))?;
    }
    writer.finish().await.map_err(query(action))?;
    Ok(())
}
