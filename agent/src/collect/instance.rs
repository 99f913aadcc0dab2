//! One monitored instance: its connection, kept open across ticks and
//! re-established with backoff when it drops, and its state-change logging.

use std::time::Duration;

use lasect_proto::v1::Sample;
use lasect_proto::v1::sample::Family;
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls};

use super::{CollectError, database, instance_info, now_unix_micros};
use crate::backoff::Backoff;
use crate::config::Dsn;

const APPLICATION_NAME: &str = "lasect-agent";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Server-side bound of every statement the agent runs.
const STATEMENT_TIMEOUT: &str = "5s";
/// Client-side bound of one instance's whole round (connect + queries), for
/// networks that hang instead of failing.
const ROUND_TIMEOUT: Duration = Duration::from_secs(20);

pub struct InstanceCollector {
    name: String,
    pg: tokio_postgres::Config,
    client: Option<Client>,
    reconnect: Backoff,
    retry_at: Option<Instant>,
    last_connect_error: Option<String>,
    /// `None` before the first round; logs are written on changes only.
    healthy: Option<bool>,
}

impl InstanceCollector {
    pub fn new(name: &str, dsn: &Dsn) -> Result<Self, tokio_postgres::Error> {
        let mut pg = dsn.parse()?;
        // Overrides any application_name in the DSN: the agent's sessions
        // must always be recognisable in pg_stat_activity.
        pg.application_name(APPLICATION_NAME)
            .connect_timeout(CONNECT_TIMEOUT);
        Ok(Self {
            name: name.to_owned(),
            pg,
            client: None,
            reconnect: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            retry_at: None,
            last_connect_error: None,
            healthy: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The samples of one round (`instance_info` + `database`), or why
    /// there are none this time.
    pub async fn collect(&mut self) -> Result<Vec<Sample>, CollectError> {
        let result = match tokio::time::timeout(ROUND_TIMEOUT, self.round()).await {
            Ok(result) => result,
            Err(_) => {
                // The connection may be wedged; start over next time.
                self.client = None;
                Err(CollectError::Timeout(ROUND_TIMEOUT))
            }
        };
        self.log_state(&result);
        result
    }

    async fn round(&mut self) -> Result<Vec<Sample>, CollectError> {
        self.ensure_connected().await?;
        let client = self.client.as_ref().ok_or(CollectError::NotConnected)?;
        let result = query_samples(client, &self.name).await;
        if result.is_err() && client.is_closed() {
            self.client = None;
        }
        result
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
        let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, self.pg.connect(NoTls))
            .await
            .map_err(|_| CollectError::Timeout(CONNECT_TIMEOUT))?
            .map_err(CollectError::Connect)?;
        let name = self.name.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(instance = %name, error = %e, "connection closed");
            }
        });
        client
            .batch_execute(&format!("SET statement_timeout = '{STATEMENT_TIMEOUT}'"))
            .await
            .map_err(CollectError::Session)?;
        tracing::debug!(instance = %self.name, "connected");
        Ok(client)
    }

    fn log_state(&mut self, result: &Result<Vec<Sample>, CollectError>) {
        let now_healthy = result.is_ok();
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

async fn query_samples(client: &Client, instance: &str) -> Result<Vec<Sample>, CollectError> {
    let info_time = now_unix_micros();
    let info = instance_info::collect(client)
        .await
        .map_err(|source| CollectError::Query {
            what: "instance_info",
            source,
        })?;
    let db_time = now_unix_micros();
    let databases = database::collect(client, info.server_version_num)
        .await
        .map_err(|source| CollectError::Query {
            what: "database",
            source,
        })?;
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
