//! `sql`: one statement with bound parameters, read-only unless `write`.

use serde_json::{Value, json};

use super::values::{TextParam, row_to_json};
use super::{OpContext, OpError, OpOutcome};

/// The `params` array: strings (text form) or nulls.
pub fn text_params(ctx: &OpContext) -> Result<Vec<TextParam>, OpError> {
    match ctx.params.get("params") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Null => Ok(TextParam(None)),
                Value::String(s) => Ok(TextParam(Some(s.clone()))),
                Value::Number(n) => Ok(TextParam(Some(n.to_string()))),
                Value::Bool(b) => Ok(TextParam(Some(b.to_string()))),
                _ => Err(OpError::Params(format!(
                    "params[{i}] must be a string, number, boolean or null"
                ))),
            })
            .collect(),
        Some(_) => Err(OpError::Params("`params` must be an array".to_owned())),
    }
}

pub fn required_sql(ctx: &OpContext) -> Result<String, OpError> {
    match ctx.param_str("sql")? {
        Some(s) if !s.trim().is_empty() => Ok(s.to_owned()),
        _ => Err(OpError::Params("`sql` is required".to_owned())),
    }
}

pub async fn run(ctx: &mut OpContext) -> Result<OpOutcome, OpError> {
    let sql = required_sql(ctx)?;
    let params = text_params(ctx)?;
    let write = ctx.param_bool("write")?;
    let database = ctx.param_str("database")?.map(str::to_owned);
    let mut client = ctx.connect(database.as_deref()).await?;
    let tx = client
        .build_transaction()
        .read_only(!write)
        .start()
        .await
        .map_err(OpError::Postgres)?;
    let statement = tx.prepare(&sql).await.map_err(OpError::Postgres)?;
    if statement.params().len() != params.len() {
        return Err(OpError::Params(format!(
            "the statement has {} parameter(s), {} given",
            statement.params().len(),
            params.len()
        )));
    }
    let columns: Vec<Value> = statement
        .columns()
        .iter()
        .map(|c| json!({ "name": c.name(), "type": c.type_().name() }))
        .collect();
    let stream = tx
        .query_raw(&statement, params.iter())
        .await
        .map_err(OpError::Postgres)?;
    futures::pin_mut!(stream);
    let mut unsupported = Vec::new();
    let mut stopped = false;
    use futures::StreamExt;
    while let Some(row) = stream.next().await {
        let row = row.map_err(OpError::Postgres)?;
        if !ctx.out.row(row_to_json(&row, &mut unsupported)).await? {
            stopped = true;
            break;
        }
    }
    let command = if stopped {
        None
    } else {
        stream.rows_affected().map(|n| command_tag(&sql, n))
    };
    if write && !stopped {
        tx.commit().await.map_err(OpError::Postgres)?;
    } else if write {
        // Cut short by a limit: what was not read must not be half-applied.
        tx.rollback().await.map_err(OpError::Postgres)?;
    }
    ctx.out.flush().await?;
    Ok(OpOutcome {
        summary: json!({
            "columns": columns,
            "command": command,
            "unsupported_types": unsupported,
            "rolled_back": write && stopped,
        }),
    })
}

/// `SELECT 3`, `UPDATE 2`: the statement's first word and the row count
/// (tokio-postgres reports the count, not the tag).
fn command_tag(sql: &str, rows: u64) -> String {
    let word = sql
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_start_matches('(')
        .to_ascii_uppercase();
    if word == "INSERT" {
        format!("INSERT 0 {rows}")
    } else {
        format!("{word} {rows}")
    }
}
