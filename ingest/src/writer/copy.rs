//! Table-driven binary COPY: any metric table's rows become one buffer in
//! PostgreSQL's binary COPY format, sent with a single `copy_in`, so the
//! cost per row is encoding only (no write call or await per row).
//!
//! Binary COPY format (PostgreSQL docs, "COPY — Binary Format"):
//! - header: the 11-byte signature `PGCOPY\n\xff\r\n\0`, an `int32` flags
//!   field (0: no OIDs) and an `int32` header-extension length (0);
//! - per row: an `int16` field count, then per field an `int32` byte length
//!   (-1 for NULL) followed by the value in the type's binary send format
//!   (what `ToSql` writes);
//! - trailer: an `int16` -1.
//!
//! All integers are big-endian (network order). Every row of a table starts
//! with `time` and the key column (`instance_id` or `agent_id`), then the
//! value columns of its [`Table`] descriptor, in order.

use std::pin::pin;

use bytes::{BufMut, BytesMut};
use deadpool_postgres::Transaction;
use futures::SinkExt;
use tokio_postgres::types::{IsNull, ToSql, Type};

use super::{StoreError, prepare, query};
use crate::validate::schema::{Key, Table, Value};
use crate::validate::{InstanceText, MetricRow, TableRows};

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Copies the rows of every table of the batch.
pub(super) async fn tables(
    tx: &Transaction<'_>,
    agent_id: &str,
    instance_ids: &[i64],
    tables: &[TableRows],
) -> Result<(), StoreError> {
    for t in tables.iter().filter(|t| !t.rows.is_empty()) {
        let buffer = encode(t.table, agent_id, instance_ids, &t.rows)?;
        send(tx, t.table, buffer).await?;
    }
    Ok(())
}

/// The `COPY … FROM STDIN` statement of a table.
fn copy_statement(table: &Table) -> String {
    let key = match table.key {
        Key::Instance => "instance_id",
        Key::Agent => "agent_id",
    };
    let columns: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    format!(
        "COPY {} (time, {key}, {}) FROM STDIN (FORMAT binary)",
        table.name,
        columns.join(", ")
    )
}

async fn send(tx: &Transaction<'_>, table: &Table, buffer: BytesMut) -> Result<(), StoreError> {
    let action = "copying metric rows";
    let statement = prepare(tx, action, &copy_statement(table)).await?;
    let sink = tx.copy_in(&statement).await.map_err(query(action))?;
    let mut sink = pin!(sink);
    sink.send(buffer.freeze()).await.map_err(query(action))?;
    sink.finish().await.map_err(query(action))?;
    Ok(())
}

/// Encodes `rows` of `table` as a complete binary COPY stream.
fn encode(
    table: &'static Table,
    agent_id: &str,
    instance_ids: &[i64],
    rows: &[MetricRow],
) -> Result<BytesMut, StoreError> {
    let fields = i16::try_from(table.columns.len() + 2)
        .map_err(|_| StoreError::Encode(format!("{} has too many columns", table.name)))?;
    // A rough guess (12 bytes per field) saves most re-allocations.
    let mut buf = BytesMut::with_capacity(19 + rows.len() * (2 + usize::from(fields as u16) * 12));
    buf.put_slice(SIGNATURE);
    buf.put_i32(0);
    buf.put_i32(0);
    for row in rows {
        if row.values.len() != table.columns.len() {
            return Err(StoreError::Encode(format!(
                "{}: a row has {} values for {} columns",
                table.name,
                row.values.len(),
                table.columns.len()
            )));
        }
        buf.put_i16(fields);
        field(&mut buf, table, "time", &row.time, &Type::TIMESTAMPTZ)?;
        match table.key {
            Key::Instance => {
                let id = row
                    .instance
                    .and_then(|i| instance_ids.get(i))
                    .ok_or_else(|| StoreError::MissingInstance(format!("{:?}", row.instance)))?;
                field(&mut buf, table, "instance_id", id, &Type::INT8)?;
            }
            Key::Agent => field(&mut buf, table, "agent_id", &agent_id, &Type::TEXT)?,
        }
        for ((name, ty), value) in table.columns.iter().zip(&row.values) {
            let ty = ty.pg_type();
            match value {
                Value::Int4(v) => field(&mut buf, table, name, v, &ty)?,
                Value::Int8(v) => field(&mut buf, table, name, v, &ty)?,
                Value::Float8(v) => field(&mut buf, table, name, v, &ty)?,
                Value::Text(v) => field(&mut buf, table, name, v, &ty)?,
                Value::Bool(v) => field(&mut buf, table, name, v, &ty)?,
                Value::Timestamptz(v) => field(&mut buf, table, name, v, &ty)?,
            }
        }
    }
    buf.put_i16(-1);
    Ok(buf)
}

/// Appends one length-prefixed field; `to_sql_checked` refuses a value
/// whose Rust type does not match the column type.
fn field(
    buf: &mut BytesMut,
    table: &Table,
    column: &str,
    value: &dyn ToSql,
    ty: &Type,
) -> Result<(), StoreError> {
    let at = buf.len();
    buf.put_i32(0);
    let is_null = value
        .to_sql_checked(ty, buf)
        .map_err(|e| StoreError::Encode(format!("{}.{column}: {e}", table.name)))?;
    let len = match is_null {
        IsNull::Yes => {
            buf.truncate(at + 4);
            -1
        }
        IsNull::No => i32::try_from(buf.len() - at - 4).map_err(|_| {
            StoreError::Encode(format!("{}.{column}: value larger than 2 GiB", table.name))
        })?,
    };
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Stores statement texts once per (instance, queryid); a text already
/// stored is kept (texts of a queryid do not change).
pub(super) async fn statement_texts(
    tx: &Transaction<'_>,
    instance_ids: &[i64],
    texts: &[InstanceText],
) -> Result<(), StoreError> {
    if texts.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(texts.len());
    for t in texts {
        let id = instance_ids
            .get(t.instance)
            .ok_or_else(|| StoreError::MissingInstance(format!("#{}", t.instance)))?;
        ids.push(*id);
    }
    let queryids: Vec<i64> = texts.iter().map(|t| t.text.queryid).collect();
    let queries: Vec<&str> = texts.iter().map(|t| t.text.query.as_str()).collect();
    let times: Vec<_> = texts.iter().map(|t| t.time).collect();
    let action = "storing statement texts";
    let statement = prepare(
        tx,
        action,
        "INSERT INTO statement_texts (instance_id, queryid, query, first_seen)
         SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::timestamptz[])
         ON CONFLICT DO NOTHING",
    )
    .await?;
    tx.execute(&statement, &[&ids, &queryids, &queries, &times])
        .await
        .map_err(query(action))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::validate::schema::{HOST_CPU, STATEMENT, TABLES};

    #[test]
    fn statements_name_every_column() {
        assert_eq!(
            copy_statement(&HOST_CPU),
            "COPY metric_host_cpu (time, agent_id, cpu_count, usage_percent, load1, load5, load15) \
             FROM STDIN (FORMAT binary)"
        );
        assert!(
            copy_statement(&STATEMENT)
                .starts_with("COPY metric_statement (time, instance_id, queryid,")
        );
        for t in TABLES {
            assert!(!t.columns.is_empty(), "{}", t.name);
        }
    }

    #[test]
    fn encodes_header_rows_nulls_and_trailer() {
        let time = Utc
            .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
            .single()
            .expect("time");
        let row = MetricRow {
            time,
            instance: None,
            values: vec![
                Value::Int4(Some(2)),
                Value::Float8(Some(1.0)),
                Value::Float8(None),
                Value::Float8(Some(0.0)),
                Value::Float8(Some(0.0)),
            ],
        };
        let buf = encode(&HOST_CPU, "a", &[], &[row]).expect("encode");
        assert_eq!(&buf[..11], SIGNATURE);
        assert_eq!(&buf[11..19], &[0u8; 8]);
        assert_eq!(&buf[19..21], &7i16.to_be_bytes());
        // time: 8 bytes, 2000-01-01 is PostgreSQL's epoch (0 µs).
        assert_eq!(&buf[21..25], &8i32.to_be_bytes());
        assert_eq!(&buf[25..33], &[0u8; 8]);
        // agent_id "a"
        assert_eq!(&buf[33..38], &[0, 0, 0, 1, b'a']);
        assert_eq!(&buf[buf.len() - 2..], &(-1i16).to_be_bytes());
        // The NULL load5 is a -1 length without bytes.
        let null = (-1i32).to_be_bytes();
        assert!(buf.windows(4).any(|w| w == null));
    }

    #[test]
    fn refuses_a_value_of_the_wrong_type_or_count() {
        let time = Utc
            .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
            .single()
            .expect("time");
        let mut values = vec![Value::Float8(Some(0.0)); 5];
        let wrong = MetricRow {
            time,
            instance: None,
            values: values.clone(),
        };
        assert!(matches!(
            encode(&HOST_CPU, "a", &[], &[wrong]),
            Err(StoreError::Encode(_))
        ));
        values.pop();
        let short = MetricRow {
            time,
            instance: None,
            values,
        };
        assert!(matches!(
            encode(&HOST_CPU, "a", &[], &[short]),
            Err(StoreError::Encode(_))
        ));
    }
}
