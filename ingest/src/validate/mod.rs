//! Turns a decoded `SampleBatch` into a [`Batch`] the writer can store
//! without further checks. A batch is all or nothing: the first bad sample
//! rejects it whole, so a batch is never partly written. Samples of families
//! this build does not know (`family` unset) are counted and skipped.

mod families;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use lasect_proto::v1::{self, sample::Family};

pub use families::{
    DATABASE_COUNTERS, DatabaseStats, FieldError, HOST_MEMORY_COLUMNS, HostCpu, HostMemory,
    InstanceFacts, InstanceName,
};

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

/// One `pg_stat_database` row of one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseSample {
    pub time: DateTime<Utc>,
    /// Index into [`Batch::instances`].
    pub instance: usize,
    pub stats: DatabaseStats,
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
    pub databases: Vec<DatabaseSample>,
    pub host_cpu: Vec<Timed<HostCpu>>,
    pub host_memory: Vec<Timed<HostMemory>>,
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

    /// The UTC days the metric rows of this batch fall on.
    pub fn days(&self) -> BTreeSet<NaiveDate> {
        let days = self.databases.iter().map(|d| d.time.date_naive());
        let cpu = self.host_cpu.iter().map(|c| c.time.date_naive());
        let mem = self.host_memory.iter().map(|m| m.time.date_naive());
        days.chain(cpu).chain(mem).collect()
    }
}

fn family_name(family: &Family) -> &'static str {
    match family {
        Family::Database(_) => "database",
        Family::HostCpu(_) => "host_cpu",
        Family::HostMemory(_) => "host_memory",
        Family::InstanceInfo(_) => "instance_info",
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
                let value = HostCpu::try_from(cpu)?;
                self.batch.host_cpu.push(Timed { time, value });
            }
            Family::HostMemory(mem) => {
                require_no_instance(&sample.instance)?;
                let value = HostMemory::try_from(mem)?;
                self.batch.host_memory.push(Timed { time, value });
            }
            Family::Database(snapshot) => {
                let instance = self.instance(sample.instance, time)?;
                for row in snapshot.databases {
                    let stats = DatabaseStats::try_from(row)?;
                    self.batch.databases.push(DatabaseSample {
                        time,
                        instance,
                        stats,
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
