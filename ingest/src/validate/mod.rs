//! Turns a decoded `SampleBatch` into a [`Batch`] the writer can store
//! without further checks. A batch is all or nothing: the first bad sample
//! rejects it whole, so a batch is never partly written. Samples of families
//! this build does not know (`family` unset) are counted and skipped.

mod checks;
mod families;
mod ops_families;
pub mod schema;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use lasect_proto::v1::{self, sample::Family};

pub use checks::FieldError;
pub use families::{InstanceFacts, InstanceName, Row, StatementText};
use schema::Table;

/// Limits that depend on the server, not on the message.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub max_samples: usize,
    /// The receive time; samples may be at most one day ahead of it.
    pub now: DateTime<Utc>,
}

/// The agent's batch number, as stored in `ingest_batches.seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seq(pub i64);

impl TryFrom<u64> for Seq {
    type Error = BatchError;

    fn try_from(seq: u64) -> Result<Self, Self::Error> {
        i64::try_from(seq)
            .ok()
            .filter(|s| *s > 0)
            .map(Seq)
            .ok_or(BatchError::SeqOutOfRange(seq))
    }
}

/// A value measured at a point in time.
#[derive(Debug, Clone, PartialEq)]
pub struct Timed<T> {
    pub time: DateTime<Utc>,
    pub value: T,
}

/// One row of a metric table.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub time: DateTime<Utc>,
    /// Index into [`Batch::instances`] for instance-keyed tables; `None` for
    /// host tables, which the writer keys by the agent.
    pub instance: Option<usize>,
    /// Values in the order of the table's columns.
    pub values: Row,
}

/// The rows of one metric table.
#[derive(Debug, Clone)]
pub struct TableRows {
    pub table: &'static Table,
    pub rows: Vec<MetricRow>,
}

impl PartialEq for TableRows {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.table, other.table) && self.rows == other.rows
    }
}

/// A statement text of one instance of the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceText {
    pub time: DateTime<Utc>,
    /// Index into [`Batch::instances`].
    pub instance: usize,
    pub text: StatementText,
}

/// An instance that appears in the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSeen {
    pub name: InstanceName,
    /// Time of its newest sample in the batch.
    pub last_sample: DateTime<Utc>,
    /// Its newest `InstanceInfo` in the batch, if any.
    pub facts: Option<Timed<InstanceFacts>>,
}

/// A validated batch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    pub instances: Vec<InstanceSeen>,
    /// Rows per metric table, tables in order of first appearance.
    pub tables: Vec<TableRows>,
    pub statement_texts: Vec<InstanceText>,
    /// Samples of known families (all of them are stored).
    pub stored_samples: u32,
    /// Samples of families this build does not know (skipped).
    pub unknown_samples: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("seq must be within 1..=9223372036854775807, got {0}")]
    SeqOutOfRange(u64),
    #[error("batch has {count} samples, more than the limit of {limit}")]
    TooManySamples { count: usize, limit: usize },
    #[error("sample {index} ({family}): {error}")]
    Sample {
        index: usize,
        family: &'static str,
        error: SampleError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("instance must be empty for host-level samples")]
    InstanceOnHostSample,
    #[error("time_unix_micros {0} is not between 2000-01-01 and one day from now")]
    TimeOutOfRange(i64),
}

/// Earliest sample time accepted: 2000-01-01T00:00:00Z.
const EARLIEST_MICROS: i64 = 946_684_800_000_000;

impl Batch {
    /// Validates every sample of `batch`; the first bad one rejects it all.
    pub fn from_samples(batch: v1::SampleBatch, rules: &Rules) -> Result<Self, BatchError> {
        if batch.samples.len() > rules.max_samples {
            return Err(BatchError::TooManySamples {
                count: batch.samples.len(),
                limit: rules.max_samples,
            });
        }
        let mut builder = Builder {
            batch: Batch::default(),
            index_of: HashMap::new(),
            latest: rules.now + TimeDelta::days(1),
        };
        for (index, sample) in batch.samples.into_iter().enumerate() {
            let Some(family) = sample.family.as_ref().map(family_name) else {
                builder.batch.unknown_samples += 1;
                continue;
            };
            builder.add(sample).map_err(|error| BatchError::Sample {
                index,
                family,
                error,
            })?;
            builder.batch.stored_samples += 1;
        }
        Ok(builder.batch)
    }

    /// Metric rows of the batch, over all its tables.
    pub fn rows(&self) -> usize {
        self.tables.iter().map(|t| t.rows.len()).sum()
    }

    /// The UTC days the metric rows of this batch fall on.
    pub fn days(&self) -> BTreeSet<NaiveDate> {
        self.tables
            .iter()
            .flat_map(|t| t.rows.iter().map(|r| r.time.date_naive()))
            .collect()
    }

    /// The rows of `table` in this batch (empty when it has none).
    pub fn rows_of(&self, table: &Table) -> &[MetricRow] {
        self.tables
            .iter()
            .find(|t| std::ptr::eq(t.table, table))
            .map_or(&[], |t| t.rows.as_slice())
    }
}

fn family_name(family: &Family) -> &'static str {
    match family {
        Family::Database(_) => "database",
        Family::HostCpu(_) => "host_cpu",
        Family::HostMemory(_) => "host_memory",
        Family::InstanceInfo(_) => "instance_info",
        Family::Statement(_) => "statement",
        Family::Table(_) => "table",
        Family::Index(_) => "index",
        Family::Wal(_) => "wal",
        Family::Bgwriter(_) => "bgwriter",
        Family::Archiver(_) => "archiver",
        Family::Settings(_) => "settings",
        Family::Activity(_) => "activity",
        Family::Lock(_) => "lock",
        Family::Replication(_) => "replication",
        Family::ReplicationSlot(_) => "replication_slot",
        Family::Progress(_) => "progress",
        Family::Wait(_) => "wait",
        Family::HostNetwork(_) => "host_network",
        Family::HostDiskIo(_) => "host_disk_io",
        Family::Standby(_) => "standby",
        Family::Subscription(_) => "subscription",
        Family::Custom(_) => "custom",
        Family::HostFilesystem(_) => "host_filesystem",
        Family::CollectorEvent(_) => "collector_event",
        Family::ReplicationIdentity(_) => "replication_identity",
        Family::SubscriptionSource(_) => "subscription_source",
        Family::Publication(_) => "publication",
        Family::SubscriptionCopy(_) => "subscription_copy",
        Family::Log(_) => "log",
    }
}

struct Builder {
    batch: Batch,
    index_of: HashMap<InstanceName, usize>,
    latest: DateTime<Utc>,
}

impl Builder {
    fn add(&mut self, sample: v1::Sample) -> Result<(), SampleError> {
        let time = DateTime::from_timestamp_micros(sample.time_unix_micros)
            .filter(|t| sample.time_unix_micros >= EARLIEST_MICROS && *t <= self.latest)
            .ok_or(SampleError::TimeOutOfRange(sample.time_unix_micros))?;
        let Some(family) = sample.family else {
            return Ok(());
        };
        match family {
            Family::HostCpu(cpu) => {
                require_no_instance(&sample.instance)?;
                let row = families::host_cpu_row(cpu)?;
                self.push(&schema::HOST_CPU, time, None, row);
            }
            Family::HostMemory(mem) => {
                require_no_instance(&sample.instance)?;
                let row = families::host_memory_row(mem)?;
                self.push(&schema::HOST_MEMORY, time, None, row);
            }
            Family::HostNetwork(net) => {
                require_no_instance(&sample.instance)?;
                for n in net.interfaces {
                    let row = families::host_network_row(n)?;
                    self.push(&schema::HOST_NETWORK, time, None, row);
                }
            }
            Family::HostDiskIo(io) => {
                require_no_instance(&sample.instance)?;
                for d in io.devices {
                    let row = families::host_disk_io_row(d)?;
                    self.push(&schema::HOST_DISK_IO, time, None, row);
                }
            }
            Family::Database(snapshot) => {
                let instance = self.instance(sample.instance, time)?;
                for row in snapshot.databases {
                    let row = families::database_row(row)?;
                    self.push(&schema::DATABASE, time, Some(instance), row);
                }
            }
            Family::Table(snapshot) => {
                let instance = self.instance(sample.instance, time)?;
                for row in snapshot.tables {
                    let row = families::table_row(row)?;
                    self.push(&schema::TABLE, time, Some(instance), row);
                }
            }
            Family::Index(snapshot) => {
                let instance = self.instance(sample.instance, time)?;
                for row in snapshot.indexes {
                    let row = families::index_row(row)?;
                    self.push(&schema::INDEX, time, Some(instance), row);
                }
            }
            Family::Wal(w) => {
                let instance = self.instance(sample.instance, time)?;
                let row = families::wal_row(w)?;
                self.push(&schema::WAL, time, Some(instance), row);
            }
            Family::Bgwriter(b) => {
                let instance = self.instance(sample.instance, time)?;
                let row = families::bgwriter_row(b)?;
                self.push(&schema::BGWRITER, time, Some(instance), row);
            }
            Family::Archiver(a) => {
                let instance = self.instance(sample.instance, time)?;
                let row = families::archiver_row(a)?;
                self.push(&schema::ARCHIVER, time, Some(instance), row);
            }
            Family::Settings(snapshot) => {
                let instance = self.instance(sample.instance, time)?;
                for s in snapshot.settings {
                    let row = families::setting_row(s)?;
                    self.push(&schema::SETTINGS, time, Some(instance), row);
                }
                for c in snapshot.changes {
                    let row = families::setting_change_row(c)?;
                    self.push(&schema::SETTING_CHANGES, time, Some(instance), row);
                }
            }
            Family::Activity(mut snapshot) => {
                let instance = self.instance(sample.instance, time)?;
                let row = families::activity_row(&snapshot)?;
                self.push(&schema::ACTIVITY, time, Some(instance), row);
                for g in std::mem::take(&mut snapshot.groups) {
                    let row = families::activity_group_row(g)?;
                    self.push(&schema::ACTIVITY_SESSIONS, time, Some(instance), row);
                }
            }
            Family::Lock(snapshot) => {
                let instance = self.instance(sample.instance, time)?;
                for c in snapshot.counts {
                    let row = families::lock_count_row(c)?;
                    self.push(&schema::LOCK, time, Some(instance), row);
                }
                for w in snapshot.waits {
                    let row = families::lock_wait_row(w)?;
                    self.push(&schema::LOCK_WAITS, time, Some(instance), row);
                }
            }
            Family::Replication(snapshot) => {
                let instance = self.instance(sample.instance, time)?;
                for r in snapshot.standbys {
                    let row = families::replication_row(r)?;
                    self.push(&schema::REPLICATION, time, Some(instance), row);
                }
            }
            Family::ReplicationSlot(snapshot) => {
                let instance = self.instance(sample.instance, time)?;
                for s in snapshot.slots {
                    let row = families::replication_slot_row(s)?;
                    self.push(&schema::REPLICATION_SLOT, time, Some(instance), row);
                }
            }
            Family::Progress(snapshot) => {
                let instance = self.instance(sample.instance, time)?;
                for p in snapshot.commands {
                    let row = families::progress_row(p)?;
                    self.push(&schema::PROGRESS, time, Some(instance), row);
                }
            }
            Family::Wait(snapshot) => {
                let instance = self.instance(sample.instance, time)?;
                for c in snapshot.counts {
                    let row = families::wait_row(snapshot.samples, c)?;
                    self.push(&schema::WAIT, time, Some(instance), row);
                }
            }
            Family::Standby(s) => {
                let instance = self.instance(sample.instance, time)?;
                let row = ops_families::standby_row(s)?;
                self.push(&schema::STANDBY, time, Some(instance), row);
            }
            Family::Subscription(snapshot) => {
                let instance = self.instance(sample.instance, time)?;
                for w in snapshot.workers {
                    let row = ops_families::subscription_worker_row(w)?;
                    self.push(&schema::SUBSCRIPTION, time, Some(instance), row);
                }
                for t in snapshot.tables {
                    let row = ops_families::subscription_table_row(t)?;
                    self.push(&schema::SUBSCRIPTION_TABLES, time, Some(instance), row);
                }
            }
            Family::Custom(snapshot) => {
                let instance = self.instance(sample.instance, time)?;
                for v in snapshot.values {
                    let row = ops_families::custom_row(v)?;
                    self.push(&schema::CUSTOM, time, Some(instance), row);
                }
            }
            Family::HostFilesystem(fs) => {
                let instance = self.instance(sample.instance, time)?;
                for f in fs.filesystems {
                    let row = ops_families::filesystem_row(f)?;
                    self.push(&schema::HOST_FILESYSTEM, time, Some(instance), row);
                }
            }
            Family::ReplicationIdentity(r) => {
                let instance = self.instance(sample.instance, time)?;
                let row = ops_families::replication_identity_row(r)?;
                self.push(&schema::REPLICATION_IDENTITY, time, Some(instance), row);
            }
            Family::SubscriptionCopy(snapshot) => {
                let instance = self.instance(sample.instance, time)?;
                for c in snapshot.copies {
                    let row = ops_families::subscription_copy_row(c)?;
                    self.push(&schema::SUBSCRIPTION_COPY, time, Some(instance), row);
                }
            }
            Family::SubscriptionSource(snapshot) => {
                let instance = self.instance(sample.instance, time)?;
                for s in snapshot.subscriptions {
                    let row = ops_families::subscription_source_row(s)?;
                    self.push(&schema::SUBSCRIPTION_SOURCE, time, Some(instance), row);
                }
            }
            Family::Publication(snapshot) => {
                let instance = self.instance(sample.instance, time)?;
                for t in snapshot.tables {
                    let row = ops_families::publication_row(t)?;
                    self.push(&schema::PUBLICATION, time, Some(instance), row);
                }
            }
            Family::CollectorEvent(e) => {
                let instance = self.instance(sample.instance, time)?;
                let row = ops_families::collector_event_row(e)?;
                self.push(&schema::COLLECTOR_EVENT, time, Some(instance), row);
            }
            Family::Log(snapshot) => {
                let instance = self.instance(sample.instance, time)?;
                if snapshot.dropped_events + snapshot.truncated_lines + snapshot.unparsed_lines > 0
                {
                    let row = families::log_drops_row(&snapshot)?;
                    self.push(&schema::LOG_DROPS, time, Some(instance), row);
                }
                // Events are stored at their own time (the sample's when absent).
                for e in snapshot.events {
                    let at = self.event_time(e.time_unix_micros, time)?;
                    let row = families::log_event_row(e)?;
                    self.push(&schema::LOG, at, Some(instance), row);
                }
                for p in snapshot.plans {
                    let at = self.event_time(p.time_unix_micros, time)?;
                    let row = families::log_plan_row(p)?;
                    self.push(&schema::LOG_PLANS, at, Some(instance), row);
                }
            }
            Family::Statement(snapshot) => {
                let instance = self.instance(sample.instance, time)?;
                for row in snapshot.rows {
                    let row = families::statement_row(row)?;
                    self.push(&schema::STATEMENT, time, Some(instance), row);
                }
                for text in snapshot.texts {
                    let text = StatementText::try_from(text)?;
                    self.batch.statement_texts.push(InstanceText {
                        time,
                        instance,
                        text,
                    });
                }
            }
            Family::InstanceInfo(info) => {
                let value = InstanceFacts::try_from(info)?;
                let instance = self.instance(sample.instance, time)?;
                let seen = &mut self.batch.instances[instance];
                // The newest facts win; later in the batch wins a tie.
                if seen.facts.as_ref().is_none_or(|f| f.time <= time) {
                    seen.facts = Some(Timed { time, value });
                }
            }
        }
        Ok(())
    }

    fn push(
        &mut self,
        table: &'static Table,
        time: DateTime<Utc>,
        instance: Option<usize>,
        values: Row,
    ) {
        let row = MetricRow {
            time,
            instance,
            values,
        };
        let tables = &mut self.batch.tables;
        match tables.iter_mut().find(|t| std::ptr::eq(t.table, table)) {
            Some(t) => t.rows.push(row),
            None => tables.push(TableRows {
                table,
                rows: vec![row],
            }),
        }
    }

    /// An event's own time, checked like a sample time; `sample` when absent.
    fn event_time(
        &self,
        micros: Option<i64>,
        sample: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, SampleError> {
        let Some(micros) = micros else {
            return Ok(sample);
        };
        DateTime::from_timestamp_micros(micros)
            .filter(|t| micros >= EARLIEST_MICROS && *t <= self.latest)
            .ok_or(SampleError::TimeOutOfRange(micros))
    }

    /// The index of a (validated) instance name, registering it if new.
    fn instance(&mut self, name: String, time: DateTime<Utc>) -> Result<usize, SampleError> {
        let name = InstanceName::try_from(name)?;
        let instances = &mut self.batch.instances;
        let index = *self.index_of.entry(name).or_insert_with_key(|name| {
            instances.push(InstanceSeen {
                name: name.clone(),
                last_sample: time,
                facts: None,
            });
            instances.len() - 1
        });
        let seen = &mut instances[index];
        seen.last_sample = seen.last_sample.max(time);
        Ok(index)
    }
}

fn require_no_instance(instance: &str) -> Result<(), SampleError> {
    if instance.is_empty() {
        Ok(())
    } else {
        Err(SampleError::InstanceOnHostSample)
    }
}
