//! One store connection that LISTENs for the run notifications
//! (docs/CONTROL.md) and forwards them; it reconnects with backoff when the
//! store goes away (the 1 s dispatch tick covers the gap).

use std::time::Duration;

use futures::StreamExt;
use lasect_pgtls::PgConfig;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

/// A notification that concerns the dispatcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A run was queued for this agent.
    Queued(String),
    /// Cancel asked for a run of this agent.
    Cancel { run: i64, agent: String },
    /// The agent's API-added instances changed.
    Instances(String),
}

impl Notice {
    pub fn parse(channel: &str, payload: &str) -> Option<Self> {
        match channel {
            "lasect_runs" => Some(Self::Queued(payload.to_owned())),
            "lasect_instances" => Some(Self::Instances(payload.to_owned())),
            "lasect_run_cancel" => {
                let (run, agent) = payload.split_once(' ')?;
                Some(Self::Cancel {
                    run: run.parse().ok()?,
                    agent: agent.to_owned(),
                })
            }
            _ => None,
        }
    }
}

const CHANNELS: &str = "LISTEN lasect_runs; LISTEN lasect_run_cancel; LISTEN lasect_instances";

/// Runs until `tx` is closed.
pub async fn listen(pg: PgConfig, tx: mpsc::Sender<Notice>) {
    let mut delay = Duration::from_millis(200);
    loop {
        match listen_once(&pg, &tx).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %lasect_pgtls::describe(&e), "run notifications lost; reconnecting to the store");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn listen_once(
    pg: &PgConfig,
    tx: &mpsc::Sender<Notice>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = pg.connect().await?;
    let (msg_tx, mut msg_rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if msg_tx.send(Ok(n)).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = msg_tx.send(Err(e));
                    break;
                }
            }
        }
    });
    client.batch_execute(CHANNELS).await?;
    tracing::debug!("listening for run notifications");
    let result = loop {
        match msg_rx.recv().await {
            Some(Ok(n)) => {
                if let Some(notice) = Notice::parse(n.channel(), n.payload())
                    && tx.send(notice).await.is_err()
                {
                    break Ok(());
                }
            }
            Some(Err(e)) => break Err(e),
            None => {
                // The connection ended without an error: treat it as lost.
                break client.batch_execute("SELECT 1").await;
            }
        }
    };
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_or_are_ignored() {
        assert_eq!(
            Notice::parse("lasect_run_cancel", "12 agent-1"),
            Some(Notice::Cancel {
                run: 12,
                agent: "agent-1".to_owned()
            })
        );
        assert_eq!(
            Notice::parse("lasect_runs", "a"),
            Some(Notice::Queued("a".to_owned()))
        );
        assert_eq!(Notice::parse("lasect_run_cancel", "x agent"), None);
        assert_eq!(Notice::parse("lasect_run_cancel", "12"), None);
        assert_eq!(Notice::parse("other", "12"), None);
    }
}
