//! One monitored instance: its connection, kept open across ticks and
//! re-established with backoff when it drops, its family schedule, and its
//! state-change logging (per instance and per family: a family that keeps
//! failing, e.g. a missing extension or privilege, warns once and again
//! only after it recovered, and is reported as a `collector_event`, see
//! [`events`](super::events)).

use std::time::Duration;

use lasect_proto::v1::Sample;
use lasect_proto::v1::sample::Family;
use tokio::time::Instant;
use tokio_postgres::Client;

use super::custom::{CustomCollector, Sessions};
use super::databases::DatabaseConnections;
use super::events::{Events, Failure};
use super::relations::{Pass, Relations, RelationsCollector};
use super::schedule::{self, FamilyKind, Schedule};
use super::server_stats;
use super::settings::SettingsCollector;
use super::statement::StatementCollector;
use super::waits::WaitSampler;
use super::{CollectError, FamilyError, database, instance_info, now_unix_micros, session};
use super::{
    activity, filesystem, locks, progress, replication, standby, subscription, subscription_copy,
    topology,
};
use crate::backoff::Backoff;
use crate::config::{CollectConfig, DatabaseFilter, InstanceConfig, LogsConfig};
use crate::logs::LogCollector;

/// Client-side bound of one instance's whole round (connect + queries), for
/// networks that hang instead of failing.
const ROUND_TIMEOUT: Duration = Duration::from_secs(20);
/// The collector name of round failures (connect, session, timeout).
const CONNECTION: &str = "connection";

/// Name, whether the last round worked (None before the first), why not,
/// and the server version.
pub type Health<'a> = (&'a str, Option<bool>, Option<&'a str>, Option<i32>);

pub struct InstanceCollector {
    name: String,
    pg: lasect_pgtls::PgConfig,
    client: Option<Client>,
    reconnect: Backoff,
    retry_at: Option<Instant>,
    last_connect_error: Option<String>,
    /// `None` before the first round; logs are written on changes only.
    healthy: Option<bool>,
    /// Why the last round failed, if it did.
    last_round_error: Option<String>,
    schedule: Schedule,
    /// Failing collectors (logged on changes only) and their events.
    events: Events,
    custom: CustomCollector,
    statements: StatementCollector,
    /// Connections to the other databases (`table`, `index`).
    others: DatabaseConnections,
    filter: DatabaseFilter,
    relations: RelationsCollector,
    settings: SettingsCollector,
    waits: WaitSampler,
    /// `server_version_num` of the current connection, asked once.
    server_version: Option<i32>,
    /// The `log` family, when enabled ([`Self::enable_logs`]).
    logs: Option<LogCollector>,
}

impl InstanceCollector {
    pub fn new(
        config: &InstanceConfig,
        collect: &CollectConfig,
        start: Instant,
    ) -> Result<Self, lasect_pgtls::DsnError> {
        let mut pg = lasect_pgtls::PgConfig::parse(config.dsn.expose_secret())?;
        // Overrides any application_name in the DSN: the agent's sessions
        // must always be recognisable in pg_stat_activity.
        session::configure(&mut pg);
        let custom = CustomCollector::new(&collect.custom, start);
        let has_custom = !custom.is_empty();
        let intervals = FamilyKind::per_instance()
            .filter(move |f| *f != FamilyKind::Custom || has_custom)
            .map(|family| {
                let every = schedule::interval(
                    family,
                    &config.intervals,
                    &collect.intervals,
                    collect.interval_secs,
                );
                (family, every)
            });
        let max_connections = config.max_connections.unwrap_or(collect.max_connections);
        let pg_for_others = pg.clone();
        Ok(Self {
            name: config.name.clone(),
            pg,
            client: None,
            reconnect: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            retry_at: None,
            last_connect_error: None,
            healthy: None,
            last_round_error: None,
            schedule: Schedule::new(intervals, start),
            events: Events::default(),
            custom,
            statements: StatementCollector::default(),
            others: DatabaseConnections::new(pg_for_others, max_connections.saturating_sub(1)),
            filter: config
                .databases
                .clone()
                .unwrap_or_else(|| collect.databases.clone()),
            relations: RelationsCollector::default(),
            settings: SettingsCollector::default(),
            waits: WaitSampler::default(),
            server_version: None,
            logs: None,
        })
    }

    /// Follows this instance's log files, with offsets under `state_dir`.
    pub fn enable_logs(&mut self, state_dir: &std::path::Path, config: &LogsConfig) {
        self.logs = Some(LogCollector::new(&self.name, state_dir, config.clone()));
    }

    /// The `log` events of the past rounds are spooled: keep their offsets.
    pub fn logs_spooled(&mut self) {
        if let Some(logs) = &mut self.logs {
            logs.commit();
        }
    }

    /// The `log` events of the past rounds were not spooled: read them again.
    pub fn logs_not_spooled(&mut self) {
        if let Some(logs) = &mut self.logs {
            logs.rewind();
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `collector_event` samples of the failures recorded since the last call.
    pub fn take_events(&mut self) -> Vec<Sample> {
        let time_unix_micros = now_unix_micros();
        self.events
            .take()
            .into_iter()
            .map(|e| Sample {
                instance: self.name.clone(),
                time_unix_micros,
                family: Some(Family::CollectorEvent(e)),
            })
            .collect()
    }

    /// The samples of the families due at `now`, or why there are none
    /// this time. A failing family is logged and skipped; only a
    /// connection failure fails the whole round.
    pub async fn collect(&mut self, now: Instant) -> Result<Vec<Sample>, CollectError> {
        let due = self.schedule.take_due(now);
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let result = match tokio::time::timeout(ROUND_TIMEOUT, self.round(&due, now)).await {
            Ok(result) => result,
            Err(_) => {
                // The connection may be wedged; start over next time.
                self.client = None;
                Err(CollectError::Timeout(ROUND_TIMEOUT))
            }
        };
        if result.is_err() {
            // The round's samples are lost; its log events must be read again.
            self.logs_not_spooled();
        }
        self.log_state(&result);
        match &result {
            Ok(_) => {
                self.events.recovered(CONNECTION);
            }
            Err(e) => {
                self.events.failed(CONNECTION, Failure::from_round(e), now);
            }
        }
        result
    }

    async fn round(
        &mut self,
        due: &[FamilyKind],
        now: Instant,
    ) -> Result<Vec<Sample>, CollectError> {
        self.ensure_connected().await?;
        let client = self.client.as_ref().ok_or(CollectError::NotConnected)?;
        let mut samples = Vec::new();
        // `table` and `index` share one pass over the databases.
        let mut relations: Option<Result<Relations, FamilyError>> = None;
        let mut relations_time = 0;
        for &family in due {
            let result = match family {
                FamilyKind::Database => database_samples(client, &self.name).await,
                FamilyKind::Statement => {
                    let time_unix_micros = now_unix_micros();
                    self.statements
                        .collect(client, &self.name)
                        .await
                        .map(|snapshot| {
                            snapshot
                                .map(|s| Sample {
                                    instance: self.name.clone(),
                                    time_unix_micros,
                                    family: Some(Family::Statement(s)),
                                })
                                .into_iter()
                                .collect()
                        })
                }
                FamilyKind::Table | FamilyKind::Index => {
                    if relations.is_none() {
                        relations_time = now_unix_micros();
                        let pass = Pass {
                            instance: &self.name,
                            home: client,
                            others: &mut self.others,
                            filter: &self.filter,
                            tables: due.contains(&FamilyKind::Table),
                            indexes: due.contains(&FamilyKind::Index),
                        };
                        relations = Some(self.relations.collect(pass).await);
                    }
                    match relations.as_mut() {
                        Some(Ok(r)) => {
                            let family = if family == FamilyKind::Table {
                                r.tables.take().map(Family::Table)
                            } else {
                                r.indexes.take().map(Family::Index)
                            };
                            Ok(family
                                .map(|f| Sample {
                                    instance: self.name.clone(),
                                    time_unix_micros: relations_time,
                                    family: Some(f),
                                })
                                .into_iter()
                                .collect())
                        }
                        Some(Err(e)) => Err(FamilyError::Unavailable(e.to_string())),
                        None => Ok(Vec::new()),
                    }
                }
                FamilyKind::Wal
                | FamilyKind::Bgwriter
                | FamilyKind::Archiver
                | FamilyKind::Lock
                | FamilyKind::Replication
                | FamilyKind::ReplicationSlot
                | FamilyKind::Progress => {
                    let time_unix_micros = now_unix_micros();
                    let version = match self.server_version {
                        Some(v) => Ok(v),
                        None => server_version(client).await,
                    };
                    let stats = match version {
                        Ok(version) => {
                            self.server_version = Some(version);
                            match family {
                                FamilyKind::Wal => {
                                    server_stats::wal(client, version).await.map(Family::Wal)
                                }
                                FamilyKind::Bgwriter => server_stats::bgwriter(client, version)
                                    .await
                                    .map(Family::Bgwriter),
                                FamilyKind::Lock => {
                                    locks::collect(client, version).await.map(Family::Lock)
                                }
                                FamilyKind::Replication => {
                                    replication::standbys(client).await.map(Family::Replication)
                                }
                                FamilyKind::ReplicationSlot => replication::slots(client, version)
                                    .await
                                    .map(Family::ReplicationSlot),
                                FamilyKind::Progress => progress::collect(client, version)
                                    .await
                                    .map(Family::Progress),
                                // Archiver (the outer arm admits no other family).
                                _ => server_stats::archiver(client).await.map(Family::Archiver),
                            }
                        }
                        Err(e) => Err(e),
                    };
                    stats.map_err(FamilyError::from).map(|f| {
                        vec![Sample {
                            instance: self.name.clone(),
                            time_unix_micros,
                            family: Some(f),
                        }]
                    })
                }
                FamilyKind::WaitSample => {
                    // Kept in memory until the next `wait`; nothing to send now.
                    let version = match self.server_version {
                        Some(v) => Ok(v),
                        None => server_version(client).await,
                    };
                    match version {
                        Ok(version) => {
                            self.server_version = Some(version);
                            self.waits
                                .sample(client, version)
                                .await
                                .map(|()| Vec::new())
                                .map_err(FamilyError::from)
                        }
                        Err(e) => Err(FamilyError::from(e)),
                    }
                }
                FamilyKind::Wait => {
                    let time_unix_micros = now_unix_micros();
                    Ok(self
                        .waits
                        .take()
                        .map(|w| Sample {
                            instance: self.name.clone(),
                            time_unix_micros,
                            family: Some(Family::Wait(w)),
                        })
                        .into_iter()
                        .collect())
                }
                FamilyKind::Settings => {
                    let time_unix_micros = now_unix_micros();
                    self.settings
                        .collect(client)
                        .await
                        .map_err(FamilyError::from)
                        .map(|s| {
                            vec![Sample {
                                instance: self.name.clone(),
                                time_unix_micros,
                                family: Some(Family::Settings(s)),
                            }]
                        })
                }
                FamilyKind::Activity => {
                    let time_unix_micros = now_unix_micros();
                    activity::collect(client)
                        .await
                        .map_err(FamilyError::from)
                        .map(|a| {
                            vec![Sample {
                                instance: self.name.clone(),
                                time_unix_micros,
                                family: Some(Family::Activity(a)),
                            }]
                        })
                }
                FamilyKind::Log => match &mut self.logs {
                    Some(logs) => {
                        let time_unix_micros = now_unix_micros();
                        logs.collect(client)
                            .await
                            .map_err(FamilyError::Unavailable)
                            .map(|snapshot| {
                                snapshot
                                    .map(|l| Sample {
                                        instance: self.name.clone(),
                                        time_unix_micros,
                                        family: Some(Family::Log(l)),
                                    })
                                    .into_iter()
                                    .collect()
                            })
                    }
                    None => Ok(Vec::new()),
                },
                // Host families are collected by the agent, not per instance.
                FamilyKind::Host => Ok(Vec::new()),
                FamilyKind::Topology => {
                    let time_unix_micros = now_unix_micros();
                    let identity = topology::identity(client).await.map_err(FamilyError::from);
                    let sources = match identity {
                        Ok(identity) => topology::sources(client)
                            .await
                            .map_err(FamilyError::from)
                            .map(|sources| (identity, sources)),
                        Err(e) => Err(e),
                    };
                    match sources {
                        Ok((identity, sources)) => topology::publications(client)
                            .await
                            .map_err(FamilyError::from)
                            .map(|publications| {
                                let mut samples = self.samples(
                                    time_unix_micros,
                                    Some(Family::ReplicationIdentity(identity)),
                                );
                                samples.extend(self.samples(
                                    time_unix_micros,
                                    sources.map(Family::SubscriptionSource),
                                ));
                                samples.extend(self.samples(
                                    time_unix_micros,
                                    publications.map(Family::Publication),
                                ));
                                samples
                            }),
                        Err(e) => Err(e),
                    }
                }
                FamilyKind::Standby => {
                    let time_unix_micros = now_unix_micros();
                    standby::collect(client)
                        .await
                        .map_err(FamilyError::from)
                        .map(|s| self.samples(time_unix_micros, s.map(Family::Standby)))
                }
                FamilyKind::Subscription => {
                    let time_unix_micros = now_unix_micros();
                    let version = match self.server_version {
                        Some(v) => Ok(v),
                        None => server_version(client).await,
                    };
                    match version {
                        Ok(version) => {
                            self.server_version = Some(version);
                            let workers = subscription::collect(client, version).await;
                            let copies = match workers {
                                Ok(w) => subscription_copy::collect(client, version)
                                    .await
                                    .map(|c| (w, c)),
                                Err(e) => Err(e),
                            };
                            copies.map_err(FamilyError::from).map(|(w, c)| {
                                let mut samples =
                                    self.samples(time_unix_micros, w.map(Family::Subscription));
                                samples.extend(
                                    self.samples(time_unix_micros, c.map(Family::SubscriptionCopy)),
                                );
                                samples
                            })
                        }
                        Err(e) => Err(FamilyError::from(e)),
                    }
                }
                FamilyKind::HostFilesystem => {
                    let time_unix_micros = now_unix_micros();
                    filesystem::collect(client)
                        .await
                        .map(|f| self.samples(time_unix_micros, Some(Family::HostFilesystem(f))))
                }
                FamilyKind::Custom => {
                    let sessions = Sessions {
                        instance: &self.name,
                        home: client,
                        home_db: self.pg.get_dbname(),
                        others: &mut self.others,
                    };
                    // Each metric fails on its own (and is reported so).
                    Ok(self.custom.collect(sessions, &mut self.events, now).await)
                }
            };
            match result {
                Ok(s) => {
                    if self.events.recovered(family.name()) {
                        tracing::info!(instance = %self.name, family = family.name(), "family collected again");
                    }
                    samples.extend(s);
                }
                Err(e) => {
                    // A lost connection is the round's failure (reported
                    // once as `connection`), not this family's.
                    if client.is_closed() {
                        tracing::debug!(instance = %self.name, family = family.name(), error = %e, "connection lost");
                        self.client = None;
                        return Err(CollectError::NotConnected);
                    }
                    if self
                        .events
                        .failed(family.name(), Failure::from_family(&e), now)
                    {
                        tracing::warn!(
                            instance = %self.name,
                            family = family.name(),
                            error = %e,
                            "cannot collect family; the others go on (logged again when it recovers)"
                        );
                    } else {
                        tracing::debug!(instance = %self.name, family = family.name(), error = %e, "family still failing");
                    }
                }
            }
        }
        Ok(samples)
    }

    /// One sample of `family` when there is one.
    fn samples(&self, time_unix_micros: i64, family: Option<Family>) -> Vec<Sample> {
        family
            .map(|f| Sample {
                instance: self.name.clone(),
                time_unix_micros,
                family: Some(f),
            })
            .into_iter()
            .collect()
    }

    async fn ensure_connected(&mut self) -> Result<(), CollectError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            if let Some(at) = self.retry_at
                && Instant::now() < at
            {
                return Err(CollectError::WaitingToReconnect {
                    last_error: self.last_connect_error.clone().unwrap_or_default(),
                });
            }
            match self.connect().await {
                Ok(client) => {
                    // A reconnect may reach an upgraded server.
                    self.server_version = None;
                    self.reconnect.reset();
                    self.retry_at = None;
                    self.last_connect_error = None;
                    self.client = Some(client);
                }
                Err(e) => {
                    self.retry_at = Some(Instant::now() + self.reconnect.next_delay());
                    self.last_connect_error = Some(e.to_string());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    async fn connect(&self) -> Result<Client, CollectError> {
        session::open(&self.pg, &self.name).await
    }

    /// Name, whether the last round worked (None before the first), why not,
    /// and the server version: what the Control stream reports as health.
    pub fn health(&self) -> Health<'_> {
        (
            &self.name,
            self.healthy,
            self.last_round_error.as_deref(),
            self.server_version,
        )
    }

    fn log_state(&mut self, result: &Result<Vec<Sample>, CollectError>) {
        let now_healthy = result.is_ok();
        self.last_round_error = result.as_ref().err().map(ToString::to_string);
        if self.healthy == Some(now_healthy) {
            return;
        }
        match result {
            Ok(_) => tracing::info!(instance = %self.name, "collecting from instance"),
            Err(e) => tracing::warn!(
                instance = %self.name,
                error = %e,
                "collection from instance failing (logged again when it recovers)"
            ),
        }
        self.healthy = Some(now_healthy);
    }
}

async fn server_version(client: &Client) -> Result<i32, tokio_postgres::Error> {
    client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await?
        .try_get(0)
}

/// `instance_info` and `database`, taken together.
async fn database_samples(client: &Client, instance: &str) -> Result<Vec<Sample>, FamilyError> {
    let info_time = now_unix_micros();
    let info = instance_info::collect(client).await?;
    let db_time = now_unix_micros();
    let databases = database::collect(client, info.server_version_num).await?;
    Ok(vec![
        Sample {
            instance: instance.to_owned(),
            time_unix_micros: info_time,
            family: Some(Family::InstanceInfo(info)),
        },
        Sample {
            instance: instance.to_owned(),
            time_unix_micros: db_time,
            family: Some(Family::Database(databases)),
        },
    ])
}
