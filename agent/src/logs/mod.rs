//! The `log` family: PostgreSQL's own log files, found from the server's
//! settings ([`discover`]), followed across rotation with read-ahead
//! offsets made durable only after the events are spooled ([`tail`],
//! [`offsets`]), parsed as stderr (with the server's `log_line_prefix`,
//! [`prefix`]), csvlog or jsonlog ([`parse`]) into entries, and classified
//! into events and auto_explain plans with literals redacted ([`entry`],
//! [`redact`]).
//!
//! A [`LogCollector`] is owned by its instance's collector and runs on the
//! `log` schedule (1 s by default). A `notify` watcher on the log directory
//! says when there is something to read; without one (no inotify, or the
//! watch failed) the files are polled every round. Each round sends at most
//! `logs.max_events_per_interval` events and plans and at most
//! [`MAX_ROUND_TEXT_BYTES`] of their text; the rest are counted as dropped,
//! like cut lines and unparsable lines, in the sample. An auto_explain plan
//! is redacted whole, then cut to [`entry::MAX_PLAN_BYTES`] and marked
//! truncated.

pub mod discover;
pub mod entry;
pub mod offsets;
pub mod parse;
pub mod prefix;
pub mod redact;
pub mod tail;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lasect_proto::v1::LogSnapshot;
use notify::{RecursiveMode, Watcher};
use tokio::time::Instant;
use tokio_postgres::Client;

use crate::config::LogsConfig;
use entry::{Caps, Record};
use parse::Parser;
use tail::{Source, Tailer};

/// How often the log settings are read again (a reload may change them).
const REDISCOVER: Duration = Duration::from_secs(60);
/// Even with a watcher, files are looked at this often (a missed event
/// must not stall the family).
const SAFETY_POLL: Duration = Duration::from_secs(10);
/// Text (messages, statements, plans) sent per instance and round, beyond
/// which the round's other entries are dropped and counted like those over
/// `max_events_per_interval`. A round reads at most
/// [`tail::MAX_READ_BYTES`] of each file, but of every file that grew (a
/// rotation, several at once after a restart): big auto_explain plans (each
/// up to [`entry::MAX_PLAN_BYTES`]) must not add up to a batch ingest
/// refuses (`limits.max_uncompressed_bytes`, 32 MiB by default, for every
/// instance of the agent together).
const MAX_ROUND_TEXT_BYTES: usize = 4 << 20;
/// Warnings about skipped lines come at most this often.
const SKIPPED_WARNING_EVERY: Duration = Duration::from_secs(60);

pub struct LogCollector {
    instance: String,
    config: LogsConfig,
    tailer: Tailer,
    /// The files to follow, or why there are none (until rediscovery).
    plan: Option<Result<(Source, Parser), String>>,
    discovered_at: Option<Instant>,
    watch: Option<(PathBuf, notify::RecommendedWatcher)>,
    changed: Arc<AtomicBool>,
    last_read: Option<Instant>,
    last_skip_warning: Option<Instant>,
}

impl LogCollector {
    pub fn new(instance: &str, state_dir: &Path, config: LogsConfig) -> Self {
        Self {
            instance: instance.to_owned(),
            config,
            tailer: Tailer::open(offsets::state_file(state_dir, instance)),
            plan: None,
            discovered_at: None,
            watch: None,
            changed: Arc::new(AtomicBool::new(true)),
            last_read: None,
            last_skip_warning: None,
        }
    }

    /// The events since the last round; `Ok(None)` when there is nothing
    /// to report. `Err` carries a reason the instance warns about once.
    pub async fn collect(&mut self, client: &Client) -> Result<Option<LogSnapshot>, String> {
        let now = Instant::now();
        if self.discovered_at.is_none_or(|at| now >= at + REDISCOVER) {
            let settings = discover::read(client).await.map_err(|e| {
                let e = match e.as_db_error() {
                    Some(db) => db.message().to_owned(),
                    None => e.to_string(),
                };
                format!("cannot read the log settings: {e}")
            })?;
            let planned = discover::plan(&settings);
            self.discovered_at = Some(now);
            if let Ok((source, _)) = &planned {
                let dir = source.dir.clone();
                self.ensure_watch(&dir);
            }
            self.plan = Some(planned);
        }
        let (source, parser) = match &self.plan {
            Some(Ok(plan)) => plan,
            Some(Err(reason)) => return Err(reason.clone()),
            None => return Ok(None),
        };
        let due = self.watch.is_none()
            || self.changed.swap(false, Ordering::AcqRel)
            || self.last_read.is_none_or(|at| now >= at + SAFETY_POLL);
        if !due {
            return Ok(None);
        }
        self.last_read = Some(now);
        let read = self.tailer.read(source, parser, self.config.max_line_bytes);
        let caps = Caps {
            max_field_bytes: self.config.max_field_bytes(),
        };
        let mut snapshot = LogSnapshot {
            unparsed_lines: read.unparsed_lines,
            truncated_lines: read.truncated_lines,
            ..LogSnapshot::default()
        };
        let total = read.entries.len();
        let mut kept = 0usize;
        let mut bytes = 0usize;
        for mut entry in read
            .entries
            .into_iter()
            .take(self.config.max_events_per_interval)
        {
            if bytes >= MAX_ROUND_TEXT_BYTES {
                break;
            }
            snapshot.truncated_lines += u64::from(entry.apply_caps(caps));
            match entry.classify(source.format, self.config.redact) {
                Record::Event(e) => {
                    bytes += e.message.len() + e.detail.len() + e.context.len() + e.statement.len();
                    snapshot.events.push(e);
                }
                Record::Plan(p) => {
                    bytes += p.plan.len() + p.query_text.len();
                    snapshot.plans.push(p);
                }
            }
            kept += 1;
        }
        snapshot.dropped_events = total.saturating_sub(kept) as u64;
        let skipped = snapshot.unparsed_lines + snapshot.dropped_events;
        if skipped > 0
            && self
                .last_skip_warning
                .is_none_or(|at| now >= at + SKIPPED_WARNING_EVERY)
        {
            self.last_skip_warning = Some(now);
            tracing::warn!(
                instance = %self.instance,
                dir = %source.dir.display(),
                unparsed_lines = snapshot.unparsed_lines,
                dropped_events = snapshot.dropped_events,
                truncated_lines = snapshot.truncated_lines,
                "log lines skipped (counted in the `log` family; warned at most once a minute)"
            );
        }
        let empty = snapshot.events.is_empty()
            && snapshot.plans.is_empty()
            && snapshot.unparsed_lines == 0
            && snapshot.truncated_lines == 0
            && snapshot.dropped_events == 0;
        Ok((!empty).then_some(snapshot))
    }

    /// A `notify` watcher on `dir`, replacing one on another directory;
    /// without it the files are polled every round.
    fn ensure_watch(&mut self, dir: &Path) {
        if self.watch.as_ref().is_some_and(|(d, _)| d == dir) {
            return;
        }
        self.watch = None;
        let changed = Arc::clone(&self.changed);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Errors (e.g. an overflowed queue) also mean "look again".
            let _ = event;
            changed.store(true, Ordering::Release);
        })
        .and_then(|mut w| w.watch(dir, RecursiveMode::NonRecursive).map(|()| w));
        match watcher {
            Ok(w) => self.watch = Some((dir.to_owned(), w)),
            Err(e) => tracing::info!(
                instance = %self.instance,
                dir = %dir.display(),
                error = %e,
                "cannot watch the log directory; polling it every round"
            ),
        }
        self.changed.store(true, Ordering::Release);
    }

    /// The events of the last rounds are in the spool: keep the offsets.
    pub fn commit(&mut self) {
        if let Err(e) = self.tailer.commit() {
            tracing::warn!(instance = %self.instance, error = %e, "cannot save log offsets; events since the last save may be sent again after a restart");
        }
    }

    /// The events could not be spooled: read them again next round.
    pub fn rewind(&mut self) {
        self.tailer.rewind();
        self.changed.store(true, Ordering::Release);
    }
}
