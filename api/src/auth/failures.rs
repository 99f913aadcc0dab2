//! Unauthenticated refusals, counted per (source address, minute) in memory and written to
//! `auth_failures` periodically: a scanner or a password guesser costs one upserted row per
//! address and minute, never one audit row per request.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sqlx::PgPool;

/// Bound on (source, minute) pairs held between flushes; beyond it refusals are counted
/// under the source `other`.
const MAX_PENDING: usize = 10_000;
/// The source of refusals whose address is unknown or past [`MAX_PENDING`].
pub const OTHER_SOURCE: &str = "other";

#[derive(Debug, Default)]
pub struct AuthFailures {
    pending: Mutex<HashMap<(String, DateTime<Utc>), i64>>,
}

impl AuthFailures {
    /// Counts one refusal of a request from `source` at `now`.
    pub fn count(&self, source: Option<&str>, now: DateTime<Utc>) {
        let minute = now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let mut key = (source.unwrap_or(OTHER_SOURCE).to_owned(), minute);
        if pending.len() >= MAX_PENDING && !pending.contains_key(&key) {
            key.0 = OTHER_SOURCE.to_owned();
        }
        *pending.entry(key).or_default() += 1;
    }

    /// Writes the counts gathered since the last flush; on a store error they are kept for
    /// the next one.
    pub async fn flush(&self, pool: &PgPool) -> Result<usize, sqlx::Error> {
        let batch: Vec<((String, DateTime<Utc>), i64)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.drain().collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let (mut sources, mut minutes, mut counts) = (Vec::new(), Vec::new(), Vec::new());
        for ((source, minute), n) in &batch {
            sources.push(source.clone());
            minutes.push(*minute);
            counts.push(*n);
        }
        let result = sqlx::query(
            "INSERT INTO auth_failures (source, minute, failures) \
             SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::bigint[]) \
             ON CONFLICT (source, minute) \
             DO UPDATE SET failures = auth_failures.failures + excluded.failures",
        )
        .bind(&sources)
        .bind(&minutes)
        .bind(&counts)
        .execute(pool)
        .await;
        if let Err(e) = result {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            for (key, n) in batch {
                *pending.entry(key).or_default() += n;
            }
            return Err(e);
        }
        Ok(batch.len())
    }
}

/// Flushes `failures` every `every` until the task is dropped.
pub async fn flush_loop(
    failures: std::sync::Arc<super::AuthState>,
    pool: PgPool,
    every: std::time::Duration,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = failures.failures.flush(&pool).await {
            tracing::warn!(error = %e, "cannot write the counts of refused requests; retrying");
        }
    }
}

/// Deletes counts older than `keep_days`.
pub async fn apply_retention(pool: &PgPool, keep_days: u32) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM auth_failures WHERE minute < now() - make_interval(days => $1)")
            .bind(i32::try_from(keep_days).unwrap_or(i32::MAX))
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
