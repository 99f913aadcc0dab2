//! What agents say about themselves on each push (hostname, version, spool
//! backlog): kept in memory, newest per agent, and written to their
//! `agents` rows in one statement per refresh interval, so reporting costs
//! pushes nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

use crate::ErrorChain;

/// Longest hostname or version string kept; longer ones are cut.
const MAX_TEXT: usize = 255;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub hostname: Option<String>,
    pub version: Option<String>,
    pub backlog_batches: Option<i64>,
    pub backlog_bytes: Option<i64>,
    pub seen_at: Option<DateTime<Utc>>,
}

impl Report {
    /// From the optional fields of a push; blanks are "not reported".
    pub fn from_push(
        hostname: &str,
        version: &str,
        batches: Option<u64>,
        bytes: Option<u64>,
    ) -> Self {
        Self {
            hostname: clean(hostname),
            version: clean(version),
            backlog_batches: batches.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
            backlog_bytes: bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
            seen_at: Some(Utc::now()),
        }
    }
}

/// Trims and bounds a reported text; control characters are refused.
pub(crate) fn clean(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() || text.chars().any(char::is_control) {
        return None;
    }
    Some(text.chars().take(MAX_TEXT).collect())
}

#[derive(Clone, Default)]
pub struct AgentReports {
    pending: Arc<Mutex<HashMap<String, Report>>>,
}

impl AgentReports {
    pub fn record(&self, agent_id: &str, report: Report) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = pending.entry(agent_id.to_owned()).or_default();
        // Newest wins, field by field: an absent field keeps an earlier value.
        slot.hostname = report.hostname.or(slot.hostname.take());
        slot.version = report.version.or(slot.version.take());
        slot.backlog_batches = report.backlog_batches.or(slot.backlog_batches);
        slot.backlog_bytes = report.backlog_bytes.or(slot.backlog_bytes);
        slot.seen_at = report.seen_at.or(slot.seen_at);
    }

    /// Writes every pending report; on failure they are put back (unless a
    /// newer one arrived meanwhile) for the next attempt.
    pub async fn flush(&self, pool: &Pool) -> Result<(), String> {
        let taken: HashMap<String, Report> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if taken.is_empty() {
            return Ok(());
        }
        let result = write(pool, &taken).await;
        if result.is_err() {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            for (id, report) in taken {
                pending.entry(id).or_insert(report);
            }
        }
        result
    }
}

async fn write(pool: &Pool, reports: &HashMap<String, Report>) -> Result<(), String> {
    let mut ids = Vec::with_capacity(reports.len());
    let mut hosts = Vec::with_capacity(reports.len());
    let mut versions = Vec::with_capacity(reports.len());
    let mut batches = Vec::with_capacity(reports.len());
    let mut bytes = Vec::with_capacity(reports.len());
    let mut seen = Vec::with_capacity(reports.len());
    // In id order, as the group writer upserts agents: two statements that
    // lock the same rows in different orders deadlock under load.
    let mut sorted: Vec<(&String, &Report)> = reports.iter().collect();
    sorted.sort_unstable_by_key(|(id, _)| *id);
    for (id, r) in sorted {
        ids.push(id.as_str());
        hosts.push(r.hostname.as_deref());
        versions.push(r.version.as_deref());
        batches.push(r.backlog_batches);
        bytes.push(r.backlog_bytes);
        seen.push(r.seen_at.unwrap_or_else(Utc::now));
    }
    let client = pool.get().await.map_err(|e| ErrorChain(&e).to_string())?;
    client
        .execute(
            "INSERT INTO agents AS a (id, hostname, version, spool_backlog_batches, spool_backlog_bytes, last_seen)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::timestamptz[])
             ON CONFLICT (id) DO UPDATE SET
                 hostname = coalesce(excluded.hostname, a.hostname),
                 version = coalesce(excluded.version, a.version),
                 spool_backlog_batches = coalesce(excluded.spool_backlog_batches, a.spool_backlog_batches),
                 spool_backlog_bytes = coalesce(excluded.spool_backlog_bytes, a.spool_backlog_bytes),
                 last_seen = greatest(a.last_seen, excluded.last_seen)",
            &[&ids, &hosts, &versions, &batches, &bytes, &seen],
        )
        .await
        .map_err(|e| ErrorChain(&e).to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_report_wins_field_by_field() {
        let reports = AgentReports::default();
        reports.record(
            "a",
            Report::from_push("host-1", "0.1.0", Some(3), Some(300)),
        );
        reports.record("a", Report::from_push("", " ", Some(0), None));
        let pending = reports.pending.lock().expect("lock");
        let a = pending.get("a").expect("report of a");
        assert_eq!(a.hostname.as_deref(), Some("host-1"));
        assert_eq!(a.version.as_deref(), Some("0.1.0"));
        assert_eq!(a.backlog_batches, Some(0));
        assert_eq!(a.backlog_bytes, Some(300));
    }

    #[test]
    fn control_characters_and_long_texts_are_not_stored_as_sent() {
        assert_eq!(clean("a\nb"), None);
        assert_eq!(clean(&"x".repeat(1000)).map(|s| s.len()), Some(MAX_TEXT));
    }
}
