//! The backup scheduler (docs/BACKUPS.md, "Schedules"): a task in every API process that fires
//! each due firing of each schedule exactly once, and reports the firings it could not fire. A
//! schedule fires backups (`backup` runs) or restore drills (`backup_drill` runs, migrations
//! V35); both go through the same firings.
//!
//! A label schedule with a stanza fires for that stanza's repository on each instance carrying
//! the label; without one (migrations V39) for every repository of those instances, so it
//! covers a label repository whose stanza is derived per instance. Either way each repository
//! has its own firings.
//!
//! Exactly once, with any number of API processes: a firing is the row
//! `backup_schedule_firings (schedule_id, repository_id, fire_time)` (migrations V31). A process
//! inserts it with `ON CONFLICT DO NOTHING` in the transaction that creates the backup run;
//! the process whose insert wins creates the run, the others insert nothing and roll back.
//!
//! Never late in a burst: only the newest due firing of a round may start a run, and only
//! within [`GRACE`] of its time. Older ones (the API was down, or busy) are recorded `missed`
//! with the reason, and so is a firing whose agent is offline, disabled or does not allow the
//! class (`backup`, or `restore` for drills); a firing while a backup (or drill) of the stanza
//! still runs is `skipped`. Rows are what the API, the CLI and alert rules read.

pub mod when;

use std::time::Duration;

use chrono::{DateTime, Utc};
use lasect_runs::{BackupDrillParams, BackupParams, BackupType, RunKind, RunParams};
use sqlx::{PgPool, Row as _};

use crate::runs::{MAX_TIMEOUT_MS, RunLimits};
use when::{Due, When};

/// How late a firing may still start its run.
pub const GRACE: Duration = Duration::from_secs(60);
/// How often a process looks for due firings (schedules may have seconds).
const TICK: Duration = Duration::from_secs(1);
/// An agent silent for longer is offline (as for runs: `agent_silent`).
const AGENT_SILENT_SECS: f64 = 30.0;

/// Runs the scheduler and the catalogue refresh until the task is aborted.
pub async fn run(pool: PgPool) {
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round: u64 = 0;
    loop {
        ticks.tick().await;
        // Catalogues age by the hour: looking once a minute is plenty.
        if round.is_multiple_of(60)
            && let Err(e) = crate::backup_catalogue::queue_periodic_info(
                &pool,
                crate::backup_catalogue::REFRESH_EVERY,
            )
            .await
        {
            tracing::warn!(error = %e, "queueing backup catalogue refreshes failed");
        }
        if round.is_multiple_of(60)
            && let Err(e) = crate::backup_catalogue::samples::write(&pool).await
        {
            tracing::warn!(error = %e, "writing the backup family's samples failed");
        }
        round = round.wrapping_add(1);
        if let Err(e) = tick(&pool, Utc::now()).await {
            tracing::warn!(error = %e, "backup schedule round failed; the next tick retries");
        }
        if let Err(e) = crate::backup_catalogue::refresh(&pool).await {
            tracing::warn!(error = %e, "backup catalogue refresh failed; the next tick retries");
        }
    }
}

/// What a schedule fires.
enum Fires {
    /// A backup of this type (`full`, `diff`, `incr`).
    Backup(String),
    /// A restore drill with these options.
    Drill {
        check_sql: Option<String>,
        amcheck: bool,
        scratch_dir: Option<String>,
    },
}

impl Fires {
    const fn run_kind(&self) -> RunKind {
        match self {
            Fires::Backup(_) => RunKind::Backup,
            Fires::Drill { .. } => RunKind::BackupDrill,
        }
    }

    /// The agent's class its runs need.
    const fn class(&self) -> &'static str {
        match self {
            Fires::Backup(_) => "backup",
            Fires::Drill { .. } => "restore",
        }
    }

    /// How its runs are named in a reason.
    const fn noun(&self) -> &'static str {
        match self {
            Fires::Backup(_) => "backup",
            Fires::Drill { .. } => "restore drill",
        }
    }
}

/// One schedule for one repository.
struct Target {
    schedule_id: i64,
    cron: String,
    time_zone: String,
    fires: Fires,
    repository_id: i64,
    instance_id: i64,
    stanza: String,
    since: DateTime<Utc>,
}

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    pub started: u32,
    pub missed: u32,
    pub skipped: u32,
}

/// Fires what is due at `now`.
pub async fn tick(pool: &PgPool, now: DateTime<Utc>) -> Result<Round, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT s.id, s.cron, s.time_zone, s.kind, s.backup_type, s.drill_check_sql, \
                s.drill_amcheck, s.drill_scratch_dir, b.id AS repository_id, \
                b.instance_id, b.stanza, \
                coalesce((SELECT max(f.fire_time) FROM backup_schedule_firings f \
                          WHERE f.schedule_id = s.id AND f.repository_id = b.id), \
                         CASE WHEN s.repository_id IS NULL \
                              THEN greatest(s.created_at, b.created_at, $1 - make_interval(secs => $2)) \
                              ELSE greatest(s.created_at, b.created_at) END) AS since \
         FROM backup_schedules s \
         JOIN backup_repositories b ON b.id = s.repository_id \
              OR (s.repository_id IS NULL AND (s.stanza IS NULL OR b.stanza = s.stanza)) \
         JOIN instances i ON i.id = b.instance_id AND i.state <> 'removed' \
         WHERE s.repository_id IS NOT NULL OR i.labels ->> s.label_key = s.label_value \
         ORDER BY s.id, b.id",
    )
    .bind(now)
    .bind(GRACE.as_secs_f64())
    .fetch_all(pool)
    .await?;
    let mut round = Round::default();
    for r in rows {
        let fires = if r.try_get::<String, _>("kind")? == "drill" {
            Fires::Drill {
                check_sql: r.try_get("drill_check_sql")?,
                amcheck: r
                    .try_get::<Option<bool>, _>("drill_amcheck")?
                    .unwrap_or(true),
                scratch_dir: r.try_get("drill_scratch_dir")?,
            }
        } else {
            Fires::Backup(
                r.try_get::<Option<String>, _>("backup_type")?
                    .unwrap_or_default(),
            )
        };
        let target = Target {
            schedule_id: r.try_get("id")?,
            cron: r.try_get("cron")?,
            time_zone: r.try_get("time_zone")?,
            fires,
            repository_id: r.try_get("repository_id")?,
            instance_id: r.try_get("instance_id")?,
            stanza: r.try_get("stanza")?,
            since: r.try_get("since")?,
        };
        let when = match When::parse(&target.cron, &target.time_zone) {
            Ok(w) => w,
            Err(e) => {
                // The API checks both on the way in: only a hand-edited row gets here.
                tracing::warn!(schedule = target.schedule_id, error = %e, "schedule skipped");
                continue;
            }
        };
        let due = when.due(target.since, now);
        if due.times.is_empty() {
            continue;
        }
        fire(pool, &target, &due, now, &mut round).await?;
    }
    Ok(round)
}

/// Why the newest due firing cannot start a run, if it cannot: (outcome, reason).
async fn obstacle(
    tx: &mut sqlx::PgConnection,
    t: &Target,
    fire_time: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<(&'static str, String)>, sqlx::Error> {
    let late = (now - fire_time).to_std().unwrap_or_default();
    if late > GRACE {
        return Ok(Some((
            "missed",
            format!(
                "no API process fired it within {} s of its time (it was {} s late: the API \
                 was down or overloaded)",
                GRACE.as_secs(),
                late.as_secs()
            ),
        )));
    }
    let agent = sqlx::query(
        "SELECT a.id, a.disabled_at IS NOT NULL AS disabled, \
                coalesce(a.last_seen < now() - make_interval(secs => $2), true) AS silent, \
                a.last_seen::text AS last_seen, \
                $3 = ANY (coalesce(a.control_allowed, '{}')) AS allows, \
                a.control_allowed IS NULL AS unknown_allow \
         FROM instances i JOIN agents a ON a.id = i.agent_id WHERE i.id = $1",
    )
    .bind(t.instance_id)
    .bind(AGENT_SILENT_SECS)
    .bind(t.fires.class())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(agent) = agent else {
        return Ok(Some((
            "missed",
            format!("instance {} has no agent", t.instance_id),
        )));
    };
    let id: String = agent.try_get("id")?;
    if agent.try_get::<bool, _>("disabled")? {
        return Ok(Some(("missed", format!("agent {id:?} is disabled"))));
    }
    if agent.try_get::<bool, _>("silent")? {
        let seen: Option<String> = agent.try_get("last_seen")?;
        return Ok(Some((
            "missed",
            format!(
                "agent {id:?} was offline (last seen {})",
                seen.as_deref().unwrap_or("never")
            ),
        )));
    }
    if !agent.try_get::<bool, _>("allows")? && !agent.try_get::<bool, _>("unknown_allow")? {
        return Ok(Some((
            "missed",
            format!(
                "agent {id:?} does not allow the {} class ([control] allow)",
                t.fires.class()
            ),
        )));
    }
    let running: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE instance_id = $1 AND kind = $3 \
         AND params ->> 'stanza' = $2 AND status IN ('queued', 'dispatched', 'running') LIMIT 1",
    )
    .bind(t.instance_id)
    .bind(&t.stanza)
    .bind(t.fires.run_kind().as_str())
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(run) = running {
        return Ok(Some((
            "skipped",
            format!(
                "{} run {run} of stanza {:?} was still running",
                t.fires.noun(),
                t.stanza
            ),
        )));
    }
    Ok(None)
}

async fn fire(
    pool: &PgPool,
    t: &Target,
    due: &Due,
    now: DateTime<Utc>,
    round: &mut Round,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let record = "INSERT INTO backup_schedule_firings \
                  (schedule_id, repository_id, fire_time, instance_id, outcome, reason) \
                  VALUES ($1, $2, $3, $4, $5, $6) \
                  ON CONFLICT DO NOTHING RETURNING fire_time";
    let Some((newest, older)) = due.times.split_first() else {
        return Ok(());
    };
    // Counted once committed: a process that loses the newest firing keeps none of these.
    let mut missed = 0;
    for (i, at) in older.iter().enumerate() {
        let mut reason = format!(
            "a later firing ({newest}) was due when it was looked at: no API process fired it \
             at its time (the API was down or overloaded)"
        );
        if due.truncated && i + 1 == older.len() {
            reason.push_str("; earlier missed firings are not listed");
        }
        let inserted = sqlx::query(record)
            .bind(t.schedule_id)
            .bind(t.repository_id)
            .bind(at)
            .bind(t.instance_id)
            .bind("missed")
            .bind(reason)
            .fetch_optional(&mut *tx)
            .await?;
        missed += u32::from(inserted.is_some());
    }
    let (outcome, reason) = match obstacle(&mut tx, t, *newest, now).await? {
        Some((outcome, reason)) => (outcome, Some(reason)),
        None => ("started", None),
    };
    let won = sqlx::query(record)
        .bind(t.schedule_id)
        .bind(t.repository_id)
        .bind(newest)
        .bind(t.instance_id)
        .bind(outcome)
        .bind(&reason)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    if !won {
        // Another process fired it (and recorded the older ones): nothing of ours to keep.
        tx.rollback().await?;
        return Ok(());
    }
    round.missed += missed;
    if outcome == "started" {
        // A refused run leaves the firing recorded (skipped, with the reason), not unrecorded.
        sqlx::query("SAVEPOINT before_run")
            .execute(&mut *tx)
            .await?;
        let update = "UPDATE backup_schedule_firings SET run_id = $4, outcome = $5, reason = $6 \
                      WHERE schedule_id = $1 AND repository_id = $2 AND fire_time = $3";
        let (run_id, outcome, reason) = match create_run(&mut tx, t).await {
            Ok(id) => {
                round.started += 1;
                (Some(id), "started", None)
            }
            Err(RunError::Store(e)) => return Err(e),
            Err(RunError::Refused(why)) => {
                sqlx::query("ROLLBACK TO SAVEPOINT before_run")
                    .execute(&mut *tx)
                    .await?;
                round.skipped += 1;
                (None, "skipped", Some(why))
            }
        };
        sqlx::query(update)
            .bind(t.schedule_id)
            .bind(t.repository_id)
            .bind(newest)
            .bind(run_id)
            .bind(outcome)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
    } else if outcome == "skipped" {
        round.skipped += 1;
    } else {
        round.missed += 1;
    }
    tx.commit().await
}

enum RunError {
    Store(sqlx::Error),
    Refused(String),
}

impl From<sqlx::Error> for RunError {
    fn from(e: sqlx::Error) -> Self {
        RunError::Store(e)
    }
}

/// The backup or drill run of a firing, requested by `schedule:<id>`, inside the firing's
/// transaction.
async fn create_run(tx: &mut sqlx::PgConnection, t: &Target) -> Result<i64, RunError> {
    // Every repository type runs; its secrets are added by ingest on delivery.
    let backup_repo = crate::routes::backups::backup_repo_by_id(&mut *tx, t.repository_id).await?;
    let params = match &t.fires {
        Fires::Backup(kind) => {
            let backup_type = BackupType::ALL
                .into_iter()
                .find(|b| b.as_str() == kind)
                .ok_or_else(|| RunError::Refused(format!("backup type {kind:?}")))?;
            RunParams::Backup(BackupParams {
                stanza: t.stanza.clone(),
                backup_type,
                repo: backup_repo,
            })
        }
        Fires::Drill {
            check_sql,
            amcheck,
            scratch_dir,
        } => RunParams::BackupDrill(BackupDrillParams {
            stanza: t.stanza.clone(),
            repo: backup_repo,
            check_sql: check_sql.clone(),
            amcheck: *amcheck,
            scratch_dir: scratch_dir.clone(),
        }),
    };
    let (timeout_ms, max_rows, max_bytes, queue_timeout_s) = RunLimits {
        timeout_ms: Some(MAX_TIMEOUT_MS),
        ..RunLimits::default()
    }
    .resolve(1, 1 << 20)
    .map_err(|e| RunError::Refused(e.to_string()))?;
    let inserted = sqlx::query_scalar(
        "INSERT INTO runs (kind, instance_id, agent_id, params, requested_by, timeout_ms, \
         max_rows, max_bytes, expires_at) \
         SELECT $1, id, agent_id, $3, $4, $5, $6, $7, now() + make_interval(secs => $8::float8) \
         FROM instances WHERE id = $2 RETURNING id",
    )
    .bind(params.kind().as_str())
    .bind(t.instance_id)
    .bind(params.to_json())
    .bind(format!("schedule:{}", t.schedule_id))
    .bind(i32::try_from(timeout_ms).unwrap_or(i32::MAX))
    .bind(max_rows)
    .bind(max_bytes)
    .bind(queue_timeout_s as f64)
    .fetch_one(&mut *tx)
    .await;
    match inserted {
        Ok(id) => Ok(id),
        // runs_one_backup_per_stanza: a backup started by someone else since we looked.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(RunError::Refused(
            format!("a backup of stanza {:?} was started meanwhile", t.stanza),
        )),
        Err(e) => Err(RunError::Store(e)),
    }
}
