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
//! All integers are big-endian (network order); values are written in each
//! type's binary send format directly (see [`put_value`]), which the
//! round-trip tests in `tests/ingest` check against the real server. Every
//! row of a table starts
//! with `time` and the key column (`instance_id` or `agent_id`), then the
//! value columns of its [`Table`] descriptor, in order.

use std::collections::BTreeMap;
use std::pin::pin;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use futures::SinkExt;

use super::{StoreError, prepare, query};
use crate::validate::schema::{ColumnType, Key, Table, Value};
use crate::validate::{Batch, InstanceText, MetricRow};

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// A stored batch of a group with the ids of its instances, in the order
/// of `batch.instances`.
pub(super) struct Part<'a> {
    pub agent_id: &'a str,
    pub instance_ids: Vec<i64>,
    pub batch: &'a Batch,
}

/// The rows one batch has for a table, with what keys them.
struct Rows<'a> {
    agent_id: &'a str,
    instance_ids: &'a [i64],
    rows: &'a [MetricRow],
}

/// Copies the rows of every table of every part, one COPY per table.
pub(super) async fn tables(tx: &Transaction<'_>, parts: &[Part<'_>]) -> Result<(), StoreError> {
    let mut by_table: BTreeMap<&'static str, (&'static Table, Vec<Rows<'_>>)> = BTreeMap::new();
    for part in parts {
        for t in part.batch.tables.iter().filter(|t| !t.rows.is_empty()) {
            by_table
                .entry(t.table.name)
                .or_insert_with(|| (t.table, Vec::new()))
                .1
                .push(Rows {
                    agent_id: part.agent_id,
                    instance_ids: &part.instance_ids,
                    rows: &t.rows,
                });
        }
    }
    for (table, rows) in by_table.into_values() {
        let buffer = encode(table, &rows)?;
        send(tx, table, buffer).await?;
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

/// Encodes the rows of `table` of every batch in `parts` as one complete
/// binary COPY stream.
fn encode(table: &'static Table, parts: &[Rows<'_>]) -> Result<BytesMut, StoreError> {
    let fields = i16::try_from(table.columns.len() + 2)
        .map_err(|_| StoreError::Encode(format!("{} has too many columns", table.name)))?;
    let count: usize = parts.iter().map(|p| p.rows.len()).sum();
    // A rough guess (12 bytes per field) saves most re-allocations.
    let mut buf = BytesMut::with_capacity(19 + count * (2 + usize::from(fields as u16) * 12));
    buf.put_slice(SIGNATURE);
    buf.put_i32(0);
    buf.put_i32(0);
    for part in parts {
        encode_rows(&mut buf, table, fields, part)?;
    }
    buf.put_i16(-1);
    Ok(buf)
}

fn encode_rows(
    buf: &mut BytesMut,
    table: &'static Table,
    fields: i16,
    part: &Rows<'_>,
) -> Result<(), StoreError> {
    // The agent's id is the same for every row of the part.
    let agent_id = i32::try_from(part.agent_id.len())
        .map_err(|_| StoreError::Encode(format!("{}.agent_id: too long", table.name)))?;
    for row in part.rows {
        if row.values.len() != table.columns.len() {
            return Err(StoreError::Encode(format!(
                "{}: a row has {} values for {} columns",
                table.name,
                row.values.len(),
                table.columns.len()
            )));
        }
        buf.put_i16(fields);
        put_time(buf, &row.time);
        match table.key {
            Key::Instance => {
                let id = row
                    .instance
                    .and_then(|i| part.instance_ids.get(i))
                    .ok_or_else(|| StoreError::MissingInstance(format!("{:?}", row.instance)))?;
                buf.put_i32(8);
                buf.put_i64(*id);
            }
            Key::Agent => {
                buf.put_i32(agent_id);
                buf.put_slice(part.agent_id.as_bytes());
            }
        }
        for ((name, ty), value) in table.columns.iter().zip(&row.values) {
            put_value(buf, table, name, *ty, value)?;
        }
    }
    Ok(())
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A `timestamptz` in binary send format: µs since 2000-01-01 UTC. Every
/// time validation lets through (years 1970..=9999) fits.
fn put_time(buf: &mut BytesMut, time: &DateTime<Utc>) {
    buf.put_i32(8);
    buf.put_i64(time.timestamp_micros() - PG_EPOCH_MICROS);
}

/// Appends one length-prefixed field in the binary send format of its
/// column type, written directly rather than through `ToSql` (no dynamic
/// dispatch or length back-patching per field); a value whose type does not
/// match its column is refused, as `ToSql::to_sql_checked` would.
fn put_value(
    buf: &mut BytesMut,
    table: &Table,
    column: &str,
    ty: ColumnType,
    value: &Value,
) -> Result<(), StoreError> {
    if value.column_type() != ty {
        return Err(StoreError::Encode(format!(
            "{}.{column}: a {:?} value for a {ty:?} column",
            table.name,
            value.column_type()
        )));
    }
    match value {
        Value::Int4(None)
        | Value::Int8(None)
        | Value::Float8(None)
        | Value::Text(None)
        | Value::Bool(None)
        | Value::Timestamptz(None)
        | Value::Jsonb(None) => buf.put_i32(-1),
        Value::Int4(Some(v)) => {
            buf.put_i32(4);
            buf.put_i32(*v);
        }
        Value::Int8(Some(v)) => {
            buf.put_i32(8);
            buf.put_i64(*v);
        }
        // float8send: the IEEE 754 bits in network order.
        Value::Float8(Some(v)) => {
            buf.put_i32(8);
            buf.put_f64(*v);
        }
        Value::Bool(Some(v)) => {
            buf.put_i32(1);
            buf.put_u8(u8::from(*v));
        }
        Value::Text(Some(v)) => {
            let len = i32::try_from(v.len()).map_err(|_| {
                StoreError::Encode(format!("{}.{column}: value larger than 2 GiB", table.name))
            })?;
            buf.put_i32(len);
            buf.put_slice(v.as_bytes());
        }
        Value::Timestamptz(Some(t)) => put_time(buf, t),
        // jsonb_send: a version byte (1) then the JSON text.
        Value::Jsonb(Some(json)) => {
            let text = json.to_string();
            let len = i32::try_from(text.len() + 1).map_err(|_| {
                StoreError::Encode(format!("{}.{column}: value larger than 2 GiB", table.name))
            })?;
            buf.put_i32(len);
            buf.put_u8(1);
            buf.put_slice(text.as_bytes());
        }
    }
    Ok(())
}

/// Stores statement texts once per (instance, queryid); a text already
/// stored is kept (texts of a queryid do not change).
pub(super) async fn statement_texts(
    tx: &Transaction<'_>,
    parts: &[Part<'_>],
) -> Result<(), StoreError> {
    // Keyed and sorted: one row per key, locked in the same order by
    // concurrent groups. The earliest sighting is the first_seen kept.
    let mut texts: BTreeMap<(i64, i64), &InstanceText> = BTreeMap::new();
    for part in parts {
        for t in &part.batch.statement_texts {
            let id = part
                .instance_ids
                .get(t.instance)
                .ok_or_else(|| StoreError::MissingInstance(format!("#{}", t.instance)))?;
            texts
                .entry((*id, t.text.queryid))
                .and_modify(|known| {
                    if t.time < known.time {
                        *known = t;
                    }
                })
                .or_insert(t);
        }
    }
    if texts.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = texts.keys().map(|(id, _)| *id).collect();
    let queryids: Vec<i64> = texts.keys().map(|(_, q)| *q).collect();
    let queries: Vec<&str> = texts.values().map(|t| t.text.query.as_str()).collect();
    let times: Vec<_> = texts.values().map(|t| t.time).collect();
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

    fn rows<'a>(agent_id: &'a str, rows: &'a [MetricRow]) -> Rows<'a> {
        Rows {
            agent_id,
            instance_ids: &[],
            rows,
        }
    }

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

    /// A host_cpu row at PostgreSQL's epoch (0 µs) with a NULL load5.
    fn host_cpu_row() -> MetricRow {
        let time = Utc
            .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
            .single()
            .expect("time");
        MetricRow {
            time,
            instance: None,
            values: vec![
                Value::Int4(Some(2)),
                Value::Float8(Some(1.0)),
                Value::Float8(None),
                Value::Float8(Some(0.0)),
                Value::Float8(Some(0.0)),
            ],
        }
    }

    #[test]
    fn encodes_header_rows_nulls_and_trailer() {
        let row = host_cpu_row();
        let buf = encode(&HOST_CPU, &[rows("a", &[row])]).expect("encode");
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
    fn batches_of_a_group_share_one_stream() {
        let row = host_cpu_row();
        let one = encode(&HOST_CPU, &[rows("a", std::slice::from_ref(&row))]).expect("encode");
        let two = encode(
            &HOST_CPU,
            &[
                rows("a", std::slice::from_ref(&row)),
                rows("b", std::slice::from_ref(&row)),
            ],
        )
        .expect("encode");
        // One header and one trailer; the second row differs only in its
        // agent id.
        let row_len = one.len() - 19 - 2;
        assert_eq!(two.len(), 19 + 2 * row_len + 2);
        assert_eq!(&two[..19 + row_len], &one[..19 + row_len]);
        let second = &two[19 + row_len..19 + 2 * row_len];
        assert_eq!(&second[14..19], &[0, 0, 0, 1, b'b']);
        assert_eq!(&two[two.len() - 2..], &(-1i16).to_be_bytes());
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
            encode(&HOST_CPU, &[rows("a", &[wrong])]),
            Err(StoreError::Encode(_))
        ));
        values.pop();
        let short = MetricRow {
            time,
            instance: None,
            values,
        };
        assert!(matches!(
            encode(&HOST_CPU, &[rows("a", &[short])]),
            Err(StoreError::Encode(_))
        ));
    }

    /// Every column type, in one table, keyed by agent.
    static EVERY_TYPE: Table = Table {
        family: "every_type",
        name: "every_type",
        key: Key::Agent,
        columns: &[
            ("i4", ColumnType::Int4),
            ("i8", ColumnType::Int8),
            ("f8", ColumnType::Float8),
            ("tx", ColumnType::Text),
            ("b", ColumnType::Bool),
            ("ts", ColumnType::Timestamptz),
            ("j", ColumnType::Jsonb),
        ],
    };

    /// The hand-written send formats are what PostgreSQL reads: values of
    /// every type (extremes, negative times, UTF-8) and NULLs come back as
    /// they were sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn binary_encoding_round_trips_through_postgres() {
        let cluster = lasect_testkit::PgCluster::start(lasect_testkit::PgOptions::default())
            .expect("cluster");
        let client = cluster.connect("postgres").await.expect("connect");
        client
            .batch_execute(
                "CREATE TABLE every_type (time timestamptz, agent_id text, i4 int4, i8 int8,
                 f8 float8, tx text, b bool, ts timestamptz, j jsonb)",
            )
            .await
            .expect("create");
        let at = |micros| DateTime::<Utc>::from_timestamp_micros(micros).expect("time");
        let full = MetricRow {
            time: at(1_750_000_000_123_456),
            instance: None,
            values: vec![
                Value::Int4(Some(i32::MIN)),
                Value::Int8(Some(i64::MAX)),
                Value::Float8(Some(-1.5e-300)),
                Value::Text(Some("héllo, wörld".to_owned())),
                Value::Bool(Some(true)),
                Value::Timestamptz(Some(at(1_234_567))),
                Value::Jsonb(Some(serde_json::json!({"queue": "mail ü", "n": "1"}))),
            ],
        };
        let nulls = MetricRow {
            time: at(0),
            instance: None,
            values: vec![
                Value::Int4(None),
                Value::Int8(None),
                Value::Float8(None),
                Value::Text(None),
                Value::Bool(None),
                Value::Timestamptz(None),
                Value::Jsonb(None),
            ],
        };
        let sent = [full.clone(), nulls];
        let buffer = encode(&EVERY_TYPE, &[rows("agent-ü", &sent)]).expect("encode");
        let sink = client
            .copy_in(&copy_statement(&EVERY_TYPE))
            .await
            .expect("copy");
        let mut sink = pin!(sink);
        sink.send(buffer.freeze()).await.expect("send");
        assert_eq!(sink.finish().await.expect("finish"), 2);

        let got = client
            .query(
                "SELECT time, agent_id, i4, i8, f8, tx, b, ts, j FROM every_type ORDER BY time DESC",
                &[],
            )
            .await
            .expect("select");
        assert_eq!(got.len(), 2);
        let r = &got[0];
        assert_eq!(r.get::<_, DateTime<Utc>>(0), full.time);
        assert_eq!(r.get::<_, &str>(1), "agent-ü");
        assert_eq!(r.get::<_, Option<i32>>(2), Some(i32::MIN));
        assert_eq!(r.get::<_, Option<i64>>(3), Some(i64::MAX));
        assert_eq!(r.get::<_, Option<f64>>(4), Some(-1.5e-300));
        assert_eq!(r.get::<_, Option<&str>>(5), Some("héllo, wörld"));
        assert_eq!(r.get::<_, Option<bool>>(6), Some(true));
        assert_eq!(r.get::<_, Option<DateTime<Utc>>>(7), Some(at(1_234_567)));
        assert_eq!(
            r.get::<_, Option<serde_json::Value>>(8),
            Some(serde_json::json!({"queue": "mail ü", "n": "1"}))
        );
        let n = &got[1];
        assert_eq!(n.get::<_, DateTime<Utc>>(0), at(0));
        for column in 2..9 {
            let text: Option<String> = client
                .query_one(
                    &format!(
                        "SELECT ({}::text) FROM every_type WHERE time = $1",
                        ["i4", "i8", "f8", "tx", "b", "ts", "j"][column - 2]
                    ),
                    &[&at(0)],
                )
                .await
                .expect("select null")
                .get(0);
            assert_eq!(text, None, "column {column} is NULL");
        }
    }
}
