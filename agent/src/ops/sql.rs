//! `sql`: one statement with bound parameters, read-only unless `write`.

use serde_json::{Value, json};

use lasect_runs::SqlParams;

use super::values::{TextParam, row_to_json};
use super::{OpContext, OpError, OpOutcome};

/// The `params` array, bound in text form.
pub fn text_params(params: &[Option<String>]) -> Vec<TextParam> {
    params.iter().cloned().map(TextParam).collect()
}

/// The statement; a blank one is refused before connecting.
pub fn required_sql(sql: &str) -> Result<String, OpError> {
    if sql.trim().is_empty() {
        return Err(OpError::Params("`sql` is required".to_owned()));
    }
    Ok(sql.to_owned())
}

pub async fn run(ctx: &mut OpContext, p: &SqlParams) -> Result<OpOutcome, OpError> {
    let sql = required_sql(&p.sql)?;
    let params = text_params(&p.params);
    let write = p.write;
    let mut client = ctx.connect(p.database.as_deref()).await?;
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
