//! Collectors: what one tick observes, as `lasect_proto::v1::Sample`s.
//!
//! A [`Collector`] owns one [`InstanceCollector`] per configured instance
//! (each with its own long-lived connection) and the [`HostCollector`].
//! The agent ticks every [`schedule::TICK`]; each tick collects only the
//! families that are due (each family has its own interval, see
//! [`schedule`]), asking all instances concurrently, so a slow or dead
//! instance delays the batch by at most its timeout and never takes the
//! others' samples with it. Each sample carries the time it was taken.
//!
//! Where each family is collected:
//!
//! | family | file |
//! |---|---|
//! | `database` | `database.rs` |
//! | `table`, `index` | `relations.rs` (databases visited: `databases.rs`) |
//! | `statement` (and its texts) | `statement.rs` |
//! | `wal`, `bgwriter`, `archiver` | `server_stats.rs` |
//! | `settings` (and setting changes) | `settings.rs` |
//! | `activity` | `activity.rs` |
//! | `wait` | `waits.rs` |
//! | `lock` | `locks.rs` |
//! | `progress` | `progress.rs` |
//! | `replication`, `replication_slot` | `replication.rs` |
//! | `standby` | `standby.rs` |
//! | `subscription` | `subscription.rs` |
//! | `subscription_copy` (with `subscription`) | `subscription_copy.rs` |
//! | `replication_identity`, `subscription_source`, `publication` | `topology.rs` |
//! | `instance_info` | `instance_info.rs` |
//! | `custom` | `custom.rs` |
//! | `collector_event` | `events.rs` |
//! | `host_cpu`, `host_memory`, `host_network`, `host_disk_io` | `host.rs`, `host_io.rs` |
//! | `host_filesystem` | `filesystem.rs` |
//! | `log` (files, parsing, offsets) | `../logs/` |
//!
//! Per-instance connection and schedule: `instance.rs`, `session.rs`, `schedule.rs`.

mod activity;
mod custom;
mod database;
mod databases;
pub mod events;
mod filesystem;
mod host;
mod host_io;
mod instance;
mod instance_info;
mod locks;
mod progress;
mod relations;
mod replication;
pub mod schedule;
mod server_stats;
pub(crate) mod session;
mod settings;
mod standby;
pub mod statement;
mod subscription;
mod subscription_copy;
mod topology;
mod waits;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use lasect_proto::v1::SampleBatch;
use tokio::time::Instant;

pub use host::HostCollector;
pub use instance::InstanceCollector;
use schedule::{FamilyKind, Schedule};

use crate::config::CollectConfig;
use crate::config::InstanceConfig;

/// Why one family produced nothing this round; the others go on.
#[derive(Debug, thiserror::Error)]
pub enum FamilyError {
    /// Something the family needs is missing (an extension, a privilege).
    #[error("{0}")]
    Unavailable(String),
    #[error("query failed: {}", describe(.0))]
    Query(#[from] tokio_postgres::Error),
}

/// The server's message when there is one (the driver's Display of a
/// database error says only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Why an instance produced no samples this tick.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    // With the causes: tokio-postgres' own text of a TLS failure does not say what failed.
    #[error("cannot connect: {}", lasect_pgtls::describe(.0))]
    Connect(#[source] tokio_postgres::Error),
    #[error("cannot set up the session: {0}")]
    Session(#[source] tokio_postgres::Error),
    #[error("waiting before reconnecting; last error: {last_error}")]
    WaitingToReconnect { last_error: String },
    #[error("not connected")]
    NotConnected,
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("instances[{index}].dsn: cannot parse: {source}")]
    Dsn {
        index: usize,
        #[source]
        source: lasect_pgtls::DsnError,
    },
    #[error("cannot read host statistics: {0}")]
    Host(#[source] sysinfo::Error),
}

/// What one tick produced.
#[derive(Debug, Default)]
pub struct Tick {
    /// Samples of every instance that answered, then the host's.
    pub batch: SampleBatch,
    /// Instances that produced nothing this tick, with the reason.
    pub failures: Vec<(String, CollectError)>,
}

pub struct Collector {
    /// Config-file instances first, then those assigned through the API.
    instances: Vec<InstanceCollector>,
    /// How many of `instances` come from the config file.
    configured: usize,
    /// DSNs of the assigned instances, by name (to see what changed).
    assigned: std::collections::BTreeMap<String, String>,
    collect: CollectConfig,
    host: Option<(HostCollector, Schedule)>,
}

impl Collector {
    /// Collectors for `instances`, plus the host when `collect.host` is true;
    /// every family is first due at the first tick.
    pub fn new(instances: &[InstanceConfig], collect: &CollectConfig) -> Result<Self, SetupError> {
        let start = Instant::now();
        let instances = instances
            .iter()
            .enumerate()
            .map(|(index, i)| {
                InstanceCollector::new(i, collect, start)
                    .map_err(|source| SetupError::Dsn { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let host = if collect.host {
            let every = schedule::interval(
                FamilyKind::Host,
                &std::collections::BTreeMap::new(),
                &collect.intervals,
                collect.interval_secs,
            );
            let host = HostCollector::new().map_err(SetupError::Host)?;
            Some((host, Schedule::new([(FamilyKind::Host, every)], start)))
        } else {
            None
        };
        Ok(Self {
            configured: instances.len(),
            instances,
            assigned: std::collections::BTreeMap::new(),
            collect: collect.clone(),
            host,
        })
    }

    /// Replaces the instances assigned through the API (received on the
    /// Control stream); config-file instances are never touched, and an
    /// assigned name that clashes with one is ignored. Unchanged instances
    /// keep their connection and schedule.
    pub fn set_assigned(&mut self, assigned: Vec<(String, crate::config::Dsn)>) {
        let configured: Vec<String> = self.instances[..self.configured]
            .iter()
            .map(|i| i.name().to_owned())
            .collect();
        let wanted: std::collections::BTreeMap<String, crate::config::Dsn> = assigned
            .into_iter()
            .filter(|(name, _)| !configured.contains(name))
            .collect();
        let start = Instant::now();
        let mut keep = Vec::new();
        for i in self.instances.drain(self.configured..) {
            let same = wanted.get(i.name()).is_some_and(|d| {
                self.assigned.get(i.name()).map(String::as_str) == Some(d.expose_secret())
            });
            if same {
                keep.push(i);
            } else {
                tracing::info!(instance = %i.name(), "assigned instance removed or changed");
            }
        }
        let kept: Vec<String> = keep.iter().map(|i| i.name().to_owned()).collect();
        self.instances.extend(keep);
        for (name, dsn) in &wanted {
            if kept.contains(name) {
                continue;
            }
            let config = InstanceConfig {
                name: name.clone(),
                dsn: dsn.clone(),
                run_dsn: None,
                allow_privileged_runs: false,
                intervals: std::collections::BTreeMap::new(),
                max_connections: None,
                databases: None,
            };
            match InstanceCollector::new(&config, &self.collect, start) {
                Ok(c) => {
                    tracing::info!(instance = %name, "collecting from an instance assigned through the API");
                    self.instances.push(c);
                }
                Err(e) => {
                    tracing::warn!(instance = %name, error = %e, "assigned instance has a DSN the agent cannot use")
                }
            }
        }
        self.assigned = wanted
            .into_iter()
            .map(|(n, d)| (n, d.expose_secret().to_owned()))
            .collect();
    }

    /// The health of every instance, for the Control stream.
    pub fn health(&self) -> Vec<instance::Health<'_>> {
        self.instances
            .iter()
            .map(InstanceCollector::health)
            .collect()
    }

    /// Follows every instance's log files (the `log` family), keeping read
    /// offsets under `state_dir`; off unless called.
    pub fn with_logs(
        mut self,
        state_dir: &std::path::Path,
        config: &crate::config::LogsConfig,
    ) -> Self {
        if config.enabled {
            for i in &mut self.instances {
                i.enable_logs(state_dir, config);
            }
        }
        self
    }

    /// Everything collected so far is in the spool: log offsets may advance.
    pub fn spooled(&mut self) {
        for i in &mut self.instances {
            i.logs_spooled();
        }
    }

    /// What was collected since the last [`Self::spooled`] was lost: log
    /// events are read again.
    pub fn not_spooled(&mut self) {
        for i in &mut self.instances {
            i.logs_not_spooled();
        }
    }

    /// One tick: the families due now, over all instances and the host.
    pub async fn tick(&mut self) -> Tick {
        self.tick_at(Instant::now()).await
    }

    /// The families due at `now` (a later instant than the real time makes
    /// more families due; tests use it to collect everything at once).
    pub async fn tick_at(&mut self, now: Instant) -> Tick {
        let results = join_all(self.instances.iter_mut().map(|i| async move {
            let result = i.collect(now).await;
            (i.name().to_owned(), result)
        }))
        .await;
        let mut tick = Tick::default();
        for (name, result) in results {
            match result {
                Ok(samples) => tick.batch.samples.extend(samples),
                Err(e) => tick.failures.push((name, e)),
            }
        }
        for i in &mut self.instances {
            tick.batch.samples.extend(i.take_events());
        }
        if let Some((host, schedule)) = &mut self.host
            && !schedule.take_due(now).is_empty()
        {
            tick.batch.samples.extend(host.collect().await);
        }
        tick
    }
}

/// Now, in microseconds since the Unix epoch.
pub(crate) fn now_unix_micros() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX)
}
