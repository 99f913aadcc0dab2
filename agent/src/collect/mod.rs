//! Collectors: what one tick observes, as `lasect_proto::v1::Sample`s.
//!
//! A [`Collector`] owns one [`InstanceCollector`] per configured instance
//! (each with its own long-lived connection) and the [`HostCollector`]. A
//! tick asks all instances concurrently, so a slow or dead instance delays
//! the batch by at most its timeout and never takes the others' samples
//! with it. Each sample carries the time it was taken.

mod database;
mod host;
mod instance;
mod instance_info;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use lasect_proto::v1::SampleBatch;

pub use host::HostCollector;
pub use instance::InstanceCollector;

use crate::config::InstanceConfig;

/// Why an instance produced no samples this tick.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("cannot connect: {0}")]
    Connect(#[source] tokio_postgres::Error),
    #[error("cannot set up the session: {0}")]
    Session(#[source] tokio_postgres::Error),
    #[error("waiting before reconnecting; last error: {last_error}")]
    WaitingToReconnect { last_error: String },
    #[error("not connected")]
    NotConnected,
    #[error("query {what} failed: {source}")]
    Query {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("instances[{index}].dsn: cannot parse: {source}")]
    Dsn {
        index: usize,
        #[source]
        source: tokio_postgres::Error,
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
    instances: Vec<InstanceCollector>,
    host: Option<HostCollector>,
}

impl Collector {
    /// Collectors for `instances`, plus the host when `host` is true.
    pub fn new(instances: &[InstanceConfig], host: bool) -> Result<Self, SetupError> {
        let instances = instances
            .iter()
            .enumerate()
            .map(|(index, i)| {
                InstanceCollector::new(&i.name, &i.dsn)
                    .map_err(|source| SetupError::Dsn { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let host = if host {
            Some(HostCollector::new().map_err(SetupError::Host)?)
        } else {
            None
        };
        Ok(Self { instances, host })
    }

    /// One round over all instances and the host.
    pub async fn tick(&mut self) -> Tick {
        let results = join_all(self.instances.iter_mut().map(|i| async move {
            let result = i.collect().await;
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
        if let Some(host) = &mut self.host {
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
