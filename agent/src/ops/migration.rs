//! `migration`: one step of a fleet migration (docs/CONTROL.md, "Fleet
//! migrations"): the whole script in one transaction with `lock_timeout`
//! and `statement_timeout` set locally; a dry run always rolls back. A
//! script that would escape its transaction (COMMIT, VACUUM, CONCURRENTLY…)
//! is refused before anything runs. On error the detail names the line.

use std::time::Instant;

use serde_json::{Value, json};
use tokio_postgres::error::ErrorPosition;

use lasect_runs::MigrationParams;

use super::script::{line_of_char, split, transaction_breaker};
use super::{OpContext, OpError, OpOutcome, pg_error_detail};

fn positive(name: &str, ms: i64) -> Result<i64, OpError> {
    if ms > 0 {
        Ok(ms)
    } else {
        Err(OpError::Params(format!(
            "`{name}` must be a positive integer"
        )))
    }
}

pub async fn run(ctx: &mut OpContext, p: &MigrationParams) -> Result<OpOutcome, OpError> {
    let script = super::sql::required_sql(&p.sql)?;
    let dry_run = p.dry_run;
    let lock_timeout = positive("lock_timeout_ms", p.lock_timeout_ms)?;
    let statement_timeout = positive("statement_timeout_ms", p.statement_timeout_ms)?;
    // SQL-standard function bodies (BEGIN ATOMIC … END) hold semicolons the
    // splitter cannot see through: such a script runs as one batch.
    let atomic_bodies = script
        .to_ascii_uppercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| w[0] == "BEGIN" && w[1].starts_with("ATOMIC"));
    let statements = if atomic_bodies {
        vec![super::script::Statement {
            offset: 0,
            text: script.clone(),
        }]
    } else {
        split(&script)
    };
    if !atomic_bodies && let Some(reason) = transaction_breaker(&script, &statements) {
        return Err(OpError::Failed {
            message: format!("the script cannot run in one transaction: {reason}"),
            detail: json!({ "refused": reason }),
        });
    }
    let client = ctx.connect(p.database.as_deref()).await?;
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL lock_timeout = {lock_timeout}; \
             SET LOCAL statement_timeout = {statement_timeout}"
        ))
        .await
        .map_err(OpError::Postgres)?;
    for (n, statement) in statements.iter().enumerate() {
        let Err(e) = client.batch_execute(&statement.text).await else {
            continue;
        };
        let _ = client.batch_execute("ROLLBACK").await;
        // A timeout keeps its SQLSTATE so the run ends timed_out.
        if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) {
            return Err(OpError::Postgres(e));
        }
        let lead = statement
            .text
            .chars()
            .take_while(|c| c.is_whitespace())
            .count();
        let at = match e.as_db_error().and_then(|d| d.position()) {
            Some(ErrorPosition::Original(p)) => {
                statement.offset + usize::try_from(*p).unwrap_or(1).saturating_sub(1)
            }
            _ => statement.offset + lead,
        };
        let line = line_of_char(&script, at);
        let mut detail = pg_error_detail(&e);
        if let Value::Object(map) = &mut detail {
            map.insert("line".to_owned(), json!(line));
            map.insert("statement".to_owned(), json!(n + 1));
            map.insert("rolled_back".to_owned(), json!(true));
        }
        return Err(OpError::Failed {
            message: format!(
                "{} (script line {line}, statement {}); nothing was applied",
                super::pg_error_line(&e),
                n + 1
            ),
            detail,
        });
    }
    let end = if dry_run { "ROLLBACK" } else { "COMMIT" };
    client.batch_execute(end).await.map_err(OpError::Postgres)?;
    Ok(OpOutcome {
        summary: json!({
            "dry_run": dry_run,
            "applied": !dry_run,
            "statements": statements.len(),
            "duration_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }),
    })
}
