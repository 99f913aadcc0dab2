//! `explain`: EXPLAIN (FORMAT JSON, BUFFERS[, ANALYZE]) with bound
//! parameters. ANALYZE executes the statement, so without `write` it runs
//! in a read-only transaction that is rolled back.

use serde_json::{Value, json};

use lasect_runs::ExplainParams;

use super::sql::{required_sql, text_params};
use super::{OpContext, OpError, OpOutcome};

pub async fn run(ctx: &mut OpContext, p: &ExplainParams) -> Result<OpOutcome, OpError> {
    let sql = required_sql(&p.sql)?;
    let params = text_params(&p.params);
    let (analyze, write) = (p.analyze, p.write);
    let mut client = ctx.connect(p.database.as_deref()).await?;
    let tx = client
        .build_transaction()
        .read_only(!write)
        .start()
        .await
        .map_err(OpError::Postgres)?;
    let options = if analyze {
        "FORMAT JSON, BUFFERS, ANALYZE"
    } else {
        "FORMAT JSON"
    };
    let statement = tx
        .prepare(&format!("EXPLAIN ({options}) {sql}"))
        .await
        .map_err(OpError::Postgres)?;
    if statement.params().len() != params.len() {
        return Err(OpError::Params(format!(
            "the statement has {} parameter(s), {} given",
            statement.params().len(),
            params.len()
        )));
    }
    let rows = tx
        .query_raw(&statement, params.iter())
        .await
        .map_err(OpError::Postgres)?;
    use futures::TryStreamExt;
    let rows: Vec<tokio_postgres::Row> = rows.try_collect().await.map_err(OpError::Postgres)?;
    let plan: Value = rows
        .first()
        .and_then(|r| r.try_get::<_, Value>(0).ok())
        .ok_or_else(|| OpError::Failed {
            message: "EXPLAIN returned no plan".to_owned(),
            detail: Value::Null,
        })?;
    // EXPLAIN ANALYZE of a write must not apply it unless asked.
    if write {
        tx.commit().await.map_err(OpError::Postgres)?;
    } else {
        tx.rollback().await.map_err(OpError::Postgres)?;
    }
    let root = plan.get(0).cloned().unwrap_or(plan);
    Ok(OpOutcome {
        summary: json!({ "plan": root, "analyze": analyze }),
    })
}
