//! Logical replication streams as one tracked operation (issue 21, R2; docs/REPLICATION.md
//! "Streams"): a chain of runs on the publisher's and the subscriber's agents, each recorded
//! as a step of the stream (`replication_stream_steps`, V32) and in the audit log.
//!
//! Creating: validate the publisher (its tables' definitions come back), validate the
//! subscriber against them (both always run, so every problem is reported at once); then
//! create the publication and its slot on the publisher, and the subscription (with the
//! tables `--copy-schema` asked for) on the subscriber. A step that fails rolls back what the
//! operation created, subscriber first: nothing that retains WAL stays behind. Removing is
//! the same drops.
//!
//! The operation runs in its own task: a client that goes away mid-way does not leave it
//! half done. Only one operation runs on a stream at a time: each starts by moving the
//! stream's status from the states it may start from, in one statement.

pub use lasect_api_contract::replication::Problem;
use std::time::Duration;

use lasect_runs::{
    ReplicationDropParams, ReplicationPublishParams, ReplicationSubscribeParams,
    ReplicationValidateParams, RunParams, StreamSide, StreamTable, TableDef,
};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::auth::audit::{self, AuditEntry, Outcome};
use crate::runs::{self, NewRun};

/// What a stream is made of, as stored.
#[derive(Debug, Clone)]
pub struct Plan {
    pub id: i64,
    pub publisher: i64,
    pub subscriber: i64,
    pub publisher_database: Option<String>,
    pub subscriber_database: Option<String>,
    pub publication: String,
    pub slot: String,
    pub subscription: String,
    pub tables: Vec<StreamTable>,
    pub schema: Option<String>,
    pub copy_schema: bool,
    pub dry_run: bool,
    /// Given by the operator, or `None`: built from the publisher once its validation says
    /// which database it is in.
    pub conninfo: Option<String>,
    pub replication_user: Option<String>,
    /// How the publisher is reached when no conninfo was given: host and port.
    pub publisher_address: Option<(String, i32)>,
    pub created_tables: Vec<StreamTable>,
    pub suboid: Option<i64>,
    /// Who asked (`user:<name>`), for the runs; `actor` for the audit log.
    pub requested_by: String,
    pub actor: String,
}

/// The names a stream's objects get: plain identifiers from its id.
pub fn object_name(id: i64) -> String {
    format!("lasect_stream_{id}")
}

const VALIDATE_TIMEOUT_MS: i64 = 60_000;
const CREATE_TIMEOUT_MS: i64 = 120_000;
const DROP_TIMEOUT_MS: i64 = 90_000;
/// How long a step's run may wait for its agent before the step gives up.
const QUEUE_SECS: i64 = 60;

struct StepOutcome {
    ok: bool,
    summary: Value,
    error: Option<String>,
}

async fn set_status(pool: &PgPool, id: i64, status: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE replication_streams SET status = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(status)
        .execute(pool)
        .await
        .map(|_| ())
}

async fn fail(
    pool: &PgPool,
    id: i64,
    status: &str,
    step: &str,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE replication_streams SET status = $2, failed_step = $3, error = $4, \
         updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(step)
    .bind(error)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Runs one step: a run on `instance`, waited for, recorded as a step and audited.
async fn step(
    pool: &PgPool,
    plan: &Plan,
    name: &str,
    instance: i64,
    params: RunParams,
    timeout_ms: i64,
) -> Result<StepOutcome, sqlx::Error> {
    let n: i32 = sqlx::query_scalar(
        "INSERT INTO replication_stream_steps (stream_id, n, step, instance_id, status) \
         SELECT $1, coalesce(max(n), 0) + 1, $2, $3, 'running' \
         FROM replication_stream_steps WHERE stream_id = $1 RETURNING n",
    )
    .bind(plan.id)
    .bind(name)
    .bind(instance)
    .fetch_one(pool)
    .await?;
    let created = runs::create(
        pool,
        NewRun {
            instance_id: instance,
            params,
            requested_by: plan.requested_by.clone(),
            limits: (timeout_ms, 1000, 1 << 20, QUEUE_SECS),
            input: None,
        },
    )
    .await;
    let outcome = match created {
        Err(e) => StepOutcome {
            ok: false,
            summary: Value::Null,
            error: Some(e.message().to_owned()),
        },
        Ok(run_id) => {
            sqlx::query(
                "UPDATE replication_stream_steps SET run_id = $3 WHERE stream_id = $1 AND n = $2",
            )
            .bind(plan.id)
            .bind(n)
            .bind(run_id)
            .execute(pool)
            .await?;
            wait_run(pool, run_id, timeout_ms).await
        }
    };
    sqlx::query(
        "UPDATE replication_stream_steps SET status = $3, error = $4, finished_at = now() \
         WHERE stream_id = $1 AND n = $2",
    )
    .bind(plan.id)
    .bind(n)
    .bind(if outcome.ok { "succeeded" } else { "failed" })
    .bind(&outcome.error)
    .execute(pool)
    .await?;
    let target = format!("replication_stream:{} instance:{instance}", plan.id);
    let action = format!("replication.stream.{name}");
    if let Err(e) = audit::record(
        pool,
        &AuditEntry {
            actor: &plan.actor,
            action: &action,
            target: Some(&target),
            source: None,
            outcome: if outcome.ok {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            error: outcome.error.as_deref(),
        },
    )
    .await
    {
        tracing::warn!(stream = plan.id, error = %e, "stream step not audited");
    }
    Ok(outcome)
}

/// Waits for a run to end: its queue time, then its timeout, then some slack for the result
/// to arrive. A run that outlives that is cancelled and counts as failed.
async fn wait_run(pool: &PgPool, run_id: i64, timeout_ms: i64) -> StepOutcome {
    let budget = Duration::from_secs(u64::try_from(QUEUE_SECS).unwrap_or(60) + 30)
        + Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0));
    let deadline = tokio::time::Instant::now() + budget;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let asked = left.min(Duration::from_secs(5));
        let began = tokio::time::Instant::now();
        let run = match runs::wait(pool, run_id, asked).await {
            Ok(run) => run,
            Err(e) => {
                return StepOutcome {
                    ok: false,
                    summary: Value::Null,
                    error: Some(format!("cannot read run {run_id}: {}", e.message())),
                };
            }
        };
        if run.is_terminal() {
            let ok = run.status == "succeeded";
            let error = (!ok).then(|| {
                format!(
                    "run {run_id} {}: {}",
                    run.status,
                    run.error.as_deref().unwrap_or("no error given")
                )
            });
            return StepOutcome {
                ok,
                summary: run.summary.unwrap_or(Value::Null),
                error,
            };
        }
        // `wait` answers a queued run at once when its agent is offline: nothing happens
        // before it reconnects, and a stream operation does not wait for that.
        if run.status == "queued" && began.elapsed() + Duration::from_millis(500) < asked {
            let _ = runs::cancel(pool, run_id).await;
            return StepOutcome {
                ok: false,
                summary: Value::Null,
                error: Some(format!(
                    "run {run_id}: agent {} serving instance {} is offline; cancelled",
                    run.agent_id, run.instance_name
                )),
            };
        }
        if left.is_zero() {
            let _ = runs::cancel(pool, run_id).await;
            return StepOutcome {
                ok: false,
                summary: Value::Null,
                error: Some(format!(
                    "run {run_id} did not end within {} s (status {}); cancelled",
                    budget.as_secs(),
                    run.status
                )),
            };
        }
        // An offline agent's queued run answers at once: pause before asking again.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn problems_of(side: StreamSide, outcome: &StepOutcome) -> Vec<Problem> {
    if !outcome.ok {
        return vec![Problem {
            side: side.as_str().into(),
            check: "agent".into(),
            message: outcome
                .error
                .clone()
                .unwrap_or_else(|| "validation did not run".into()),
        }];
    }
    outcome
        .summary
        .get("problems")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|p| Problem {
                    side: side.as_str().into(),
                    check: p["check"].as_str().unwrap_or("unknown").into(),
                    message: p["message"].as_str().unwrap_or("").into(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A libpq conninfo value, quoted when it needs to be.
fn conninfo_value(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| !c.is_whitespace() && c != '\'' && c != '\\')
    {
        v.to_owned()
    } else {
        format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// The conninfo the subscriber uses when the operator gave none.
pub fn derived_conninfo(host: &str, port: i32, dbname: &str, user: Option<&str>) -> String {
    let mut c = format!(
        "host={} port={port} dbname={}",
        conninfo_value(host),
        conninfo_value(dbname)
    );
    if let Some(u) = user {
        c.push_str(&format!(" user={}", conninfo_value(u)));
    }
    c
}

/// Validates and, unless a dry run, creates the stream. Leaves the stream's final status in
/// the store.
pub async fn create(pool: PgPool, mut plan: Plan) -> Result<(), sqlx::Error> {
    let publisher_check = step(
        &pool,
        &plan,
        "validate_publisher",
        plan.publisher,
        RunParams::ReplicationValidate(ReplicationValidateParams {
            side: StreamSide::Publisher,
            tables: plan.tables.clone(),
            schema: plan.schema.clone(),
            publication: plan.publication.clone(),
            slot: plan.slot.clone(),
            subscription: plan.subscription.clone(),
            definitions: Vec::new(),
            copy_schema: plan.copy_schema,
            replication_user: plan.replication_user.clone(),
            conninfo: None,
            stream_id: None,
            password: None,
            database: plan.publisher_database.clone(),
        }),
        VALIDATE_TIMEOUT_MS,
    )
    .await?;
    let mut problems = problems_of(StreamSide::Publisher, &publisher_check);
    let definitions: Vec<TableDef> = publisher_check
        .summary
        .get("tables")
        .cloned()
        .and_then(|t| serde_json::from_value(t).ok())
        .unwrap_or_default();
    let publisher_db = publisher_check
        .summary
        .get("database")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| plan.publisher_database.clone());
    if plan.conninfo.is_none() {
        // Without a user, the role the publisher's agent logs in as (its privileges to create
        // the slot were just checked), not whatever OS user would be libpq's default.
        let user = plan.replication_user.clone().or_else(|| {
            publisher_check
                .summary
                .get("user")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        match (&plan.publisher_address, &publisher_db) {
            (Some((host, port)), Some(db)) => {
                plan.conninfo = Some(derived_conninfo(host, *port, db, user.as_deref()));
            }
            _ => problems.push(Problem {
                side: "publisher".into(),
                check: "conninfo".into(),
                message: "no conninfo given and the publisher's address or database is not \
                          known yet (no replication_identity sample): pass --conninfo"
                    .into(),
            }),
        }
    }
    if let Some(c) = &plan.conninfo {
        sqlx::query(
            "UPDATE replication_streams SET conninfo = $2, publisher_database = $3 WHERE id = $1",
        )
        .bind(plan.id)
        .bind(c)
        .bind(&publisher_db)
        .execute(&pool)
        .await?;
    }
    let subscriber_check = step(
        &pool,
        &plan,
        "validate_subscriber",
        plan.subscriber,
        RunParams::ReplicationValidate(ReplicationValidateParams {
            side: StreamSide::Subscriber,
            tables: Vec::new(),
            schema: None,
            publication: plan.publication.clone(),
            slot: plan.slot.clone(),
            subscription: plan.subscription.clone(),
            definitions: definitions.clone(),
            copy_schema: plan.copy_schema,
            replication_user: None,
            conninfo: plan.conninfo.clone(),
            stream_id: Some(plan.id),
            password: None,
            database: plan.subscriber_database.clone(),
        }),
        VALIDATE_TIMEOUT_MS,
    )
    .await?;
    problems.extend(problems_of(StreamSide::Subscriber, &subscriber_check));
    let to_create: Vec<StreamTable> = subscriber_check
        .summary
        .get("tables_to_create")
        .cloned()
        .and_then(|t| serde_json::from_value(t).ok())
        .unwrap_or_default();
    let resolved: Vec<StreamTable> = definitions
        .iter()
        .map(|d| StreamTable {
            schema: d.schema.clone(),
            table: d.table.clone(),
        })
        .collect();
    sqlx::query("UPDATE replication_streams SET problems = $2, tables = $3 WHERE id = $1")
        .bind(plan.id)
        .bind(json!(problems))
        .bind(json!(resolved))
        .execute(&pool)
        .await?;
    if !problems.is_empty() {
        return set_status(&pool, plan.id, "invalid").await;
    }
    if plan.dry_run {
        return set_status(&pool, plan.id, "validated").await;
    }
    set_status(&pool, plan.id, "creating").await?;
    let published = step(
        &pool,
        &plan,
        "publish",
        plan.publisher,
        RunParams::ReplicationPublish(ReplicationPublishParams {
            publication: plan.publication.clone(),
            slot: plan.slot.clone(),
            tables: resolved,
            database: plan.publisher_database.clone(),
        }),
        CREATE_TIMEOUT_MS,
    )
    .await?;
    if !published.ok {
        let error = published.error.unwrap_or_default();
        return rollback(&pool, &plan, "publish", &error).await;
    }
    let subscribed = step(
        &pool,
        &plan,
        "subscribe",
        plan.subscriber,
        RunParams::ReplicationSubscribe(ReplicationSubscribeParams {
            subscription: plan.subscription.clone(),
            publication: plan.publication.clone(),
            slot: plan.slot.clone(),
            conninfo: plan.conninfo.clone().unwrap_or_default(),
            create_tables: definitions
                .into_iter()
                .filter(|d| {
                    to_create
                        .iter()
                        .any(|t| t.schema == d.schema && t.table == d.table)
                })
                .collect(),
            stream_id: Some(plan.id),
            password: None,
            database: plan.subscriber_database.clone(),
        }),
        CREATE_TIMEOUT_MS,
    )
    .await?;
    if !subscribed.ok {
        let error = subscribed.error.unwrap_or_default();
        return rollback(&pool, &plan, "subscribe", &error).await;
    }
    plan.suboid = subscribed.summary.get("suboid").and_then(Value::as_i64);
    let created = subscribed
        .summary
        .get("created_tables")
        .cloned()
        .unwrap_or_else(|| json!([]));
    sqlx::query(
        "UPDATE replication_streams SET status = 'syncing', suboid = $2, created_tables = $3, \
         updated_at = now() WHERE id = $1",
    )
    .bind(plan.id)
    .bind(plan.suboid)
    .bind(created)
    .execute(&pool)
    .await
    .map(|_| ())
}

/// Undoes a failed creation: the subscriber's part, then the publisher's.
async fn rollback(
    pool: &PgPool,
    plan: &Plan,
    failed: &str,
    error: &str,
) -> Result<(), sqlx::Error> {
    set_status(pool, plan.id, "rolling_back").await?;
    let dropped = drops(pool, plan, "rollback").await?;
    let status = if dropped.is_ok() {
        "failed"
    } else {
        "rollback_failed"
    };
    let message = match dropped {
        Ok(()) => {
            format!("{failed} failed: {error}; everything this operation created was dropped")
        }
        Err(e) => format!("{failed} failed: {error}; the rollback failed too: {e}"),
    };
    fail(pool, plan.id, status, failed, &message).await
}

/// Removes a stream: subscriber first, then the publisher.
pub async fn remove(pool: PgPool, plan: Plan) -> Result<(), sqlx::Error> {
    match drops(&pool, &plan, "remove").await? {
        Ok(()) => set_status(&pool, plan.id, "removed").await,
        Err(e) => fail(&pool, plan.id, "remove_failed", "remove", &e).await,
    }
}

/// The subscriber's drop, then (only once it succeeded: its subscription no longer uses the
/// slot) the publisher's. `Err` names what is left.
async fn drops(
    pool: &PgPool,
    plan: &Plan,
    prefix: &str,
) -> Result<Result<(), String>, sqlx::Error> {
    let sub = step(
        pool,
        plan,
        &format!("{prefix}_subscriber"),
        plan.subscriber,
        RunParams::ReplicationDrop(ReplicationDropParams {
            side: StreamSide::Subscriber,
            subscription: plan.subscription.clone(),
            publication: String::new(),
            slot: String::new(),
            suboid: None,
            drop_tables: plan.created_tables.clone(),
            database: plan.subscriber_database.clone(),
        }),
        DROP_TIMEOUT_MS,
    )
    .await?;
    if !sub.ok {
        return Ok(Err(format!(
            "the subscriber's drop failed ({}): subscription {} may still exist, and slot {} and \
             publication {} stay on the publisher (they retain WAL: remove the stream again)",
            sub.error.unwrap_or_default(),
            plan.subscription,
            plan.slot,
            plan.publication
        )));
    }
    let suboid = sub
        .summary
        .get("suboid")
        .and_then(Value::as_i64)
        .or(plan.suboid);
    let publisher = step(
        pool,
        plan,
        &format!("{prefix}_publisher"),
        plan.publisher,
        RunParams::ReplicationDrop(ReplicationDropParams {
            side: StreamSide::Publisher,
            subscription: String::new(),
            publication: plan.publication.clone(),
            slot: plan.slot.clone(),
            suboid,
            drop_tables: Vec::new(),
            database: plan.publisher_database.clone(),
        }),
        DROP_TIMEOUT_MS,
    )
    .await?;
    if !publisher.ok {
        return Ok(Err(format!(
            "the publisher's drop failed ({}): slot {} and publication {} may remain (a slot \
             retains WAL: remove the stream again)",
            publisher.error.unwrap_or_default(),
            plan.slot,
            plan.publication
        )));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_conninfos_quote_what_needs_it() {
        assert_eq!(
            derived_conninfo("10.0.0.7", 5433, "app", Some("repl")),
            "host=10.0.0.7 port=5433 dbname=app user=repl"
        );
        assert_eq!(
            derived_conninfo("/var/run/postgresql", 5432, "my db", None),
            "host=/var/run/postgresql port=5432 dbname='my db'"
        );
        assert_eq!(conninfo_value("it's"), r"'it\'s'");
    }

    #[test]
    fn a_failed_validation_run_is_one_problem_and_a_summary_lists_each() {
        let failed = StepOutcome {
            ok: false,
            summary: Value::Null,
            error: Some("run 3 expired".into()),
        };
        let p = problems_of(StreamSide::Subscriber, &failed);
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].side.as_str(), p[0].check.as_str()),
            ("subscriber", "agent")
        );
        let ok = StepOutcome {
            ok: true,
            summary: json!({"problems": [
                {"check": "wal_level", "message": "wal_level is replica"},
                {"check": "replica_identity", "message": "no key"}
            ]}),
            error: None,
        };
        let p = problems_of(StreamSide::Publisher, &ok);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].check, "replica_identity");
    }
}
