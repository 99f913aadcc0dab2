//! The run state machine on a real migrated store: every statement of
//! [`lasect_runs::Transition`] executed on a run in every status. From a status the table
//! allows, the run ends in a status the table allows; from any other, nothing changes (not a
//! column, not a result page). Agents cannot touch each other's runs, `Finish` writes only a
//! status an agent may report, the store's `CHECK`s on `runs.status` and `runs.kind` hold
//! exactly [`RunStatus::ALL`] and [`RunKind::ALL`] (a new kind or status needs its migration,
//! and a migration's needs its arm), the fleet migration's trigger knows the terminal
//! statuses, and the API's statements also run through sqlx, its client.

use lasect_runs::{RunKind, RunStatus, Transition};
use lasect_testkit::{PgCluster, PgOptions};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

const AGENT: &str = "agent-1";
const OTHER_AGENT: &str = "agent-2";

struct Store {
    _pg: PgCluster,
    client: Client,
    pool: PgPool,
    instance: i64,
}

async fn store() -> Store {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    pg.create_database("store").await.expect("create db");
    let mut client = pg.connect("store").await.expect("connect");
    lasect_migrations::migrate(&mut client)
        .await
        .expect("migrate");
    client
        .batch_execute(&format!(
            "INSERT INTO agents (id) VALUES ('{AGENT}'), ('{OTHER_AGENT}')"
        ))
        .await
        .expect("agents");
    let instance: i64 = client
        .query_one(
            "INSERT INTO instances (name, agent_id) VALUES ('main', $1) RETURNING id",
            &[&AGENT],
        )
        .await
        .expect("instance")
        .get(0);
    let pool = PgPool::connect_with(
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(pg.port())
            .username("postgres")
            .database("store"),
    )
    .await
    .expect("sqlx pool");
    Store {
        _pg: pg,
        client,
        pool,
        instance,
    }
}

impl Store {
    /// A run of [`AGENT`] in `status` that `t` would otherwise apply to: unexpired for a
    /// claim, expired for an expiry, long overdue for the result sweep. The store is emptied of
    /// other runs first, since several statements act on every eligible run.
    async fn run_in(&self, status: RunStatus, t: Transition) -> i64 {
        self.client
            .batch_execute("DELETE FROM runs")
            .await
            .expect("clear runs");
        let expires = if t == Transition::Expire {
            "now() - interval '1 minute'"
        } else {
            "now() + interval '1 hour'"
        };
        let sent = status != RunStatus::Queued;
        let started = !matches!(status, RunStatus::Queued | RunStatus::Dispatched);
        let sql = format!(
            "INSERT INTO runs (kind, instance_id, agent_id, params, requested_by, timeout_ms,
                               max_rows, max_bytes, expires_at, status, dispatched_at,
                               started_at, finished_at)
             VALUES ('sql', $1, $2, '{{\"sql\": \"SELECT 1\"}}', 'user:test', 1000, 10, 1000,
                     {expires}, $3,
                     CASE WHEN $4 THEN now() - interval '1 hour' END,
                     CASE WHEN $5 THEN now() - interval '1 hour' END,
                     CASE WHEN $6 THEN now() - interval '1 minute' END)
             RETURNING id"
        );
        self.client
            .query_one(
                &sql,
                &[
                    &self.instance,
                    &AGENT,
                    &status.as_str(),
                    &sent,
                    &started,
                    &status.is_terminal(),
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("insert a {status} run: {e}"))
            .get(0)
    }

    /// Everything about the run: its row, and its result pages.
    async fn snapshot(&self, run: i64) -> (Value, i64) {
        let row = self
            .client
            .query_one(
                "SELECT to_jsonb(r), (SELECT count(*) FROM run_results WHERE run_id = r.id)
                 FROM runs r WHERE r.id = $1",
                &[&run],
            )
            .await
            .expect("snapshot");
        (row.get(0), row.get(1))
    }

    /// Executes `t`'s statement with tokio-postgres, as ingest does, for `run` on behalf of
    /// `agent`; `reported` is the status a `Finish` writes.
    async fn execute(&self, t: Transition, run: i64, agent: &str, reported: &str) {
        let agents = vec![agent.to_owned()];
        let still_executing: Vec<i64> = Vec::new();
        let summary = Some(json!({"rows": 1}));
        let no_text: Option<&str> = None;
        let no_json: Option<Value> = None;
        let page: &[u8] = b"abc";
        let args: Vec<&(dyn ToSql + Sync)> = match t {
            Transition::Claim => vec![&agents, &"node-1"],
            Transition::Undeliverable => vec![&run, &"could not send"],
            Transition::Start => vec![&run, &agent, &Some(4242_i32)],
            Transition::StorePage => vec![&run, &agent, &0_i32, &1_i32, &3_i32, &page],
            Transition::Finish => vec![
                &run, &agent, &reported, &1_i64, &3_i64, &false, &1_i32, &no_text, &no_json,
                &summary, &60_i64,
            ],
            Transition::FailOpen => vec![&run, &agent, &"protocol error"],
            Transition::FailLost => vec![&agent, &still_executing],
            Transition::ResultOverdue => vec![&0_i64],
            Transition::Expire => vec![],
            Transition::Cancel => vec![&run],
        };
        assert_eq!(args.len(), t.params().len(), "{t:?}: {:?}", t.params());
        self.client
            .query(t.sql(), &args)
            .await
            .unwrap_or_else(|e| panic!("{t:?}: {e}\n{}", t.sql()));
    }
}

/// What a `Finish` may write, and what it must refuse (an agent reporting a status it cannot).
fn finish_targets() -> Vec<&'static str> {
    RunStatus::ALL.iter().map(|s| s.as_str()).collect()
}

#[tokio::test]
async fn the_run_state_machine_on_a_migrated_store() {
    let store = store().await;
    the_store_holds_exactly_the_known_statuses_and_kinds(&store).await;
    the_migration_trigger_fires_on_the_terminal_statuses(&store).await;
    every_transition_from_every_status(&store).await;
    an_agent_touches_only_its_own_runs(&store).await;
    the_api_statements_run_through_sqlx(&store).await;
}

/// The values the `CHECK` constraint of `runs.<column>` allows, sorted.
async fn check_values(store: &Store, column: &str) -> Vec<String> {
    store
        .client
        .query(
            "SELECT m[1] FROM pg_constraint c,
                 regexp_matches(pg_get_constraintdef(c.oid), '''([a-z_]+)''', 'g') m
             WHERE c.conrelid = 'runs'::regclass AND c.contype = 'c'
               AND pg_get_constraintdef(c.oid) LIKE 'CHECK ((' || $1 || ' %'
             ORDER BY 1",
            &[&column],
        )
        .await
        .expect("check constraint")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn the_store_holds_exactly_the_known_statuses_and_kinds(store: &Store) {
    let mut statuses: Vec<String> = RunStatus::ALL.iter().map(|s| s.to_string()).collect();
    statuses.sort();
    assert_eq!(
        check_values(store, "status").await,
        statuses,
        "runs.status CHECK versus RunStatus::ALL"
    );
    let mut kinds: Vec<String> = RunKind::ALL.iter().map(|k| k.to_string()).collect();
    kinds.sort();
    assert_eq!(
        check_values(store, "kind").await,
        kinds,
        "runs.kind CHECK versus RunKind::ALL"
    );
}

/// A fleet migration goes on or halts when its run ends (trigger `runs_migration_ended`,
/// V16): on exactly the terminal statuses.
async fn the_migration_trigger_fires_on_the_terminal_statuses(store: &Store) {
    let fires_on: Vec<String> = store
        .client
        .query(
            "SELECT m[1] FROM pg_trigger t,
                 regexp_matches(pg_get_triggerdef(t.oid), '''([a-z_]+)''', 'g') m
             WHERE t.tgname = 'runs_migration_ended' ORDER BY 1",
            &[],
        )
        .await
        .expect("trigger")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut terminal: Vec<String> = RunStatus::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| s.to_string())
        .collect();
    terminal.sort();
    assert_eq!(fires_on, terminal);
}

async fn every_transition_from_every_status(store: &Store) {
    for t in Transition::ALL {
        for from in RunStatus::ALL {
            let reported: Vec<&str> = if t == Transition::Finish {
                finish_targets()
            } else {
                vec![""]
            };
            for reported in reported {
                let run = store.run_in(from, t).await;
                let before = store.snapshot(run).await;
                store.execute(t, run, AGENT, reported).await;
                let after = store.snapshot(run).await;
                let status: RunStatus = after.0["status"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("status of {after:?}"));
                let allowed = t.outcome(from);
                let applies = !allowed.is_empty()
                    && (t != Transition::Finish || allowed.iter().any(|s| s.as_str() == reported));
                if applies {
                    assert_ne!(
                        before, after,
                        "{t:?} from {from} {reported}: nothing changed"
                    );
                    assert!(
                        allowed.contains(&status),
                        "{t:?} from {from} {reported}: ended {status}, allowed {allowed:?}"
                    );
                    if t == Transition::Finish {
                        assert_eq!(status.as_str(), reported, "Finish from {from}");
                    }
                } else {
                    assert_eq!(
                        before, after,
                        "{t:?} from {from} {reported} changed the run"
                    );
                }
            }
        }
    }
}

async fn an_agent_touches_only_its_own_runs(store: &Store) {
    for t in Transition::ALL.into_iter().filter(|t| t.scoped_to_agent()) {
        for from in t.from() {
            let run = store.run_in(from, t).await;
            let before = store.snapshot(run).await;
            store.execute(t, run, OTHER_AGENT, "succeeded").await;
            assert_eq!(
                before,
                store.snapshot(run).await,
                "{t:?} by another agent changed a {from} run"
            );
        }
    }
}

async fn the_api_statements_run_through_sqlx(store: &Store) {
    let run = store.run_in(RunStatus::Queued, Transition::Cancel).await;
    sqlx::query(Transition::Cancel.sql())
        .bind(run)
        .execute(&store.pool)
        .await
        .expect("cancel through sqlx");
    let (row, _) = store.snapshot(run).await;
    assert_eq!(row["status"], "cancelled", "{row}");
    assert_eq!(row["error"], "cancelled before an agent picked it up");

    let run = store.run_in(RunStatus::Running, Transition::Cancel).await;
    sqlx::query(Transition::Cancel.sql())
        .bind(run)
        .execute(&store.pool)
        .await
        .expect("cancel through sqlx");
    let (row, _) = store.snapshot(run).await;
    assert_eq!(row["status"], "running", "{row}");
    assert!(row["cancel_requested_at"].is_string(), "{row}");

    let run = store.run_in(RunStatus::Queued, Transition::Expire).await;
    let expired: i64 = sqlx::query_scalar(Transition::Expire.sql())
        .fetch_one(&store.pool)
        .await
        .expect("expire through sqlx");
    assert_eq!(expired, 1);
    let (row, _) = store.snapshot(run).await;
    assert_eq!(row["status"], "expired", "{row}");
}
