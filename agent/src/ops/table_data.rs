//! `table_data`: one page of a table's rows with keyset pagination. The key
//! is the primary key, else a unique index on NOT NULL columns, else `ctid`
//! (stable only while the table is not updated; said in the summary).
//! Values are read as text (`::text`), the form a person browsing expects,
//! and the `after` key values are bound as parameters whose types the
//! server infers from the key columns.

use serde_json::{Value, json};

use lasect_runs::TableDataParams;

use super::values::TextParam;
use super::{OpContext, OpError, OpOutcome, quote_ident};

const MAX_LIMIT: u64 = 1000;

pub async fn run(ctx: &mut OpContext, p: &TableDataParams) -> Result<OpOutcome, OpError> {
    let schema = p.schema.clone();
    let table = p.table.clone();
    let limit = Some(p.limit)
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| OpError::Params(format!("`limit` must be 1..={MAX_LIMIT}")))?;
    let after: Option<Vec<String>> = match &p.after {
        None => None,
        Some(items) => Some(
            items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(OpError::Params("`after` holds strings".to_owned())),
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    let mut client = ctx.connect(p.database.as_deref()).await?;
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(OpError::Postgres)?;
    let rel = tx
        .query_opt(
            "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
            &[&schema, &table],
        )
        .await
        .map_err(OpError::Postgres)?
        .ok_or_else(|| OpError::Failed {
            message: format!("no table {schema}.{table}"),
            detail: json!({ "schema": schema, "table": table }),
        })?;
    let oid: u32 = rel.get(0);
    let columns: Vec<(String, String)> = tx
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&oid],
        )
        .await
        .map_err(OpError::Postgres)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // Primary key first, then the narrowest unique index on NOT NULL columns.
    let key: Option<Vec<String>> = tx
        .query_opt(
            "SELECT array_agg(a.attname::text ORDER BY k.ord)
             FROM pg_index x
             CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
             WHERE x.indrelid = $1 AND x.indisunique AND x.indisvalid AND x.indpred IS NULL
               AND x.indexprs IS NULL
             GROUP BY x.indexrelid, x.indisprimary
             HAVING bool_and(a.attnotnull)
             ORDER BY x.indisprimary DESC, count(*), x.indexrelid
             LIMIT 1",
            &[&oid],
        )
        .await
        .map_err(OpError::Postgres)?
        .map(|r| r.get(0));
    // Qualified by the table's alias: a bare name in ORDER BY would be the output column of
    // the same name, the `::text` copy, and rows would come in text order (10 before 9) while
    // the keyset comparison is typed, skipping rows between pages.
    let (key_cols, key_exprs): (Vec<String>, Vec<String>) = match &key {
        Some(cols) => (
            cols.clone(),
            cols.iter()
                .map(|c| format!("t.{}", quote_ident(c)))
                .collect(),
        ),
        None => (vec!["ctid".to_owned()], vec!["t.ctid".to_owned()]),
    };
    let select: Vec<String> = columns
        .iter()
        .map(|(c, _)| format!("{}::text", quote_ident(c)))
        .chain(key_exprs.iter().map(|k| format!("{k}::text")))
        .collect();
    let mut sql = format!(
        "SELECT {} FROM {}.{} AS t",
        select.join(", "),
        quote_ident(&schema),
        quote_ident(&table)
    );
    let params: Vec<TextParam> = after
        .iter()
        .flatten()
        .map(|v| TextParam(Some(v.clone())))
        .collect();
    if let Some(after) = &after {
        if after.len() != key_exprs.len() {
            return Err(OpError::Params(format!(
                "`after` needs {} value(s), the key is ({})",
                key_exprs.len(),
                key_cols.join(", ")
            )));
        }
        let placeholders: Vec<String> = if key.is_some() {
            (1..=after.len()).map(|i| format!("${i}")).collect()
        } else {
            vec!["$1::tid".to_owned()]
        };
        sql.push_str(&format!(
            " WHERE ({}) > ({})",
            key_exprs.join(", "),
            placeholders.join(", ")
        ));
    }
    sql.push_str(&format!(" ORDER BY {} LIMIT {limit}", key_exprs.join(", ")));
    let statement = tx.prepare(&sql).await.map_err(OpError::Postgres)?;
    let rows = tx
        .query(
            &statement,
            &params
                .iter()
                .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect::<Vec<_>>(),
        )
        .await
        .map_err(OpError::Postgres)?;
    let n_cols = columns.len();
    let mut last_key: Option<Vec<Value>> = None;
    for row in &rows {
        let values: Vec<Value> = (0..n_cols)
            .map(|i| {
                row.get::<_, Option<String>>(i)
                    .map_or(Value::Null, Value::String)
            })
            .collect();
        last_key = Some(
            (n_cols..n_cols + key_exprs.len())
                .map(|i| {
                    row.get::<_, Option<String>>(i)
                        .map_or(Value::Null, Value::String)
                })
                .collect(),
        );
        if !ctx.out.row(Value::Array(values)).await? {
            break;
        }
    }
    ctx.out.flush().await?;
    let next_after = if rows.len() as u64 == limit {
        last_key
    } else {
        None
    };
    Ok(OpOutcome {
        summary: json!({
            "columns": columns.iter().map(|(n, t)| json!({ "name": n, "type": t })).collect::<Vec<_>>(),
            "key": key_cols,
            "key_is_ctid": key.is_none(),
            "next_after": next_after,
        }),
    })
}
