//! The agent's end of the Control stream (docs/CONTROL.md): an outbound,
//! mutually authenticated gRPC stream to ingest, reopened with backoff.
//! Runs arrive on it and are handed to the [`executor::Executor`]; their
//! pages and results go back on whichever stream is open when they are
//! ready (a per-agent queue outlives reconnects). The first message of
//! every stream is the hello with the runs still executing here.

pub mod executor;

use std::collections::HashMap;
use std::sync::Arc;

use lasect_proto::v1::{AgentMessage, ControlHello, ServerMessage, agent_message, server_message};
use tokio::sync::{mpsc, watch};

use crate::backoff::Backoff;
use crate::config::{AgentConfig, Dsn};
use crate::sender::SenderSettings;
pub use executor::Executor;

/// Run messages waiting for a stream; a full queue makes operations wait.
const EVENT_QUEUE: usize = 256;

pub struct ControlClient {
    settings: SenderSettings,
    executor: Arc<Executor>,
    events: mpsc::Receiver<AgentMessage>,
    assignments: Option<mpsc::UnboundedSender<Vec<(String, Dsn)>>>,
    backoff: Backoff,
}

impl ControlClient {
    pub fn new(config: &AgentConfig) -> Self {
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let configured: HashMap<String, executor::RunTarget> = config
            .instances
            .iter()
            .map(|i| (i.name.clone(), executor::RunTarget::of(i)))
            .collect();
        let settings = SenderSettings::from_config(config);
        let backoff = Backoff::new(settings.backoff_base, settings.backoff_cap);
        Self {
            executor: Executor::new(config.control.clone(), configured, events_tx),
            settings,
            events,
            assignments: None,
            backoff,
        }
    }

    /// Where health reports are queued (sent on whichever stream is open).
    pub fn events(&self) -> mpsc::Sender<AgentMessage> {
        self.executor.events()
    }

    /// Where the instances assigned through the API are also sent (the
    /// collector, to monitor them).
    pub fn with_assignments(mut self, tx: mpsc::UnboundedSender<Vec<(String, Dsn)>>) -> Self {
        self.assignments = Some(tx);
        self
    }

    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut failing = false;
        loop {
            if *stop.borrow() {
                return;
            }
            match self.session(&mut stop).await {
                Ok(()) => return,
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "Control stream down; reconnecting with backoff");
                    } else {
                        tracing::debug!(error = %e, "Control stream still down");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.backoff.next_delay()) => {}
                () = stopped(&mut stop) => return,
            }
        }
    }

    /// One stream, until it breaks (`Err`) or the agent stops (`Ok`).
    async fn session(&mut self, stop: &mut watch::Receiver<bool>) -> Result<(), String> {
        let s = &self.settings;
        let ca = tokio::fs::read(&s.ca_file)
            .await
            .map_err(|e| format!("cannot read {}: {e}", s.ca_file.display()))?;
        let identity = s.identity.load().map_err(|e| e.to_string())?;
        let channel = crate::channel::connect_channel(
            &s.endpoint,
            s.server_name.as_deref(),
            &ca,
            Some(&identity),
            s.connect_timeout,
        )
        .await
        .map_err(|e| crate::channel::error_chain(&e))?;
        let mut client = lasect_proto::v1::control_client::ControlClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let (out, out_rx) = mpsc::channel::<AgentMessage>(64);
        let hello = ControlHello {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            in_flight_run_ids: self.executor.in_flight(),
            allowed: self.executor.allowed(),
        };
        out.send(AgentMessage {
            body: Some(agent_message::Body::Hello(hello)),
        })
        .await
        .map_err(|_| "stream closed before the hello".to_owned())?;
        let response = client
            .open(tokio_stream::wrappers::ReceiverStream::new(out_rx))
            .await
            .map_err(|status| format!("{}: {}", status.code(), status.message()))?;
        let mut inbound = response.into_inner();
        self.backoff.reset();
        tracing::info!(endpoint = %s.endpoint, "Control stream open");
        loop {
            tokio::select! {
                msg = inbound.message() => match msg {
                    Ok(Some(m)) => self.on_message(m),
                    Ok(None) => return Err("ingest closed the Control stream".to_owned()),
                    Err(status) => return Err(format!("{}: {}", status.code(), status.message())),
                },
                event = self.events.recv() => {
                    let Some(event) = event else { return Ok(()) };
                    let run = run_of(&event);
                    let last = matches!(event.body, Some(agent_message::Body::Finished(_)));
                    if out.send(event).await.is_err() {
                        if let Some(run) = run {
                            self.executor.taint(run);
                        }
                        return Err("the Control stream broke while sending".to_owned());
                    }
                    if let (true, Some(run)) = (last, run) {
                        self.executor.delivered(run);
                    }
                }
                () = stopped(stop) => return Ok(()),
            }
        }
    }

    fn on_message(&self, msg: ServerMessage) {
        match msg.body {
            Some(server_message::Body::Run(run)) => {
                tracing::info!(run = run.run_id, kind = %run.kind, instance = %run.instance, "run received");
                self.executor.submit(run);
            }
            Some(server_message::Body::Cancel(c)) => self.executor.cancel(c.run_id),
            Some(server_message::Body::Instances(a)) => {
                let targets: Vec<(String, executor::RunTarget)> = a
                    .instances
                    .into_iter()
                    .map(|i| {
                        let target = executor::RunTarget::from_wire(
                            i.dsn,
                            i.run_dsn,
                            i.allow_privileged_runs,
                        );
                        (i.name, target)
                    })
                    .collect();
                tracing::info!(instances = targets.len(), "instance assignments received");
                if let Some(tx) = &self.assignments {
                    // The collector monitors with the instance's DSN only.
                    let list: Vec<(String, Dsn)> = targets
                        .iter()
                        .map(|(name, t)| (name.clone(), t.dsn.clone()))
                        .collect();
                    let _ = tx.send(list);
                }
                self.executor.set_assigned(targets);
            }
            None => tracing::warn!("empty Control message from ingest ignored"),
        }
    }
}

fn run_of(m: &AgentMessage) -> Option<i64> {
    match m.body.as_ref()? {
        agent_message::Body::Started(s) => Some(s.run_id),
        agent_message::Body::Chunk(c) => Some(c.run_id),
        agent_message::Body::Finished(f) => Some(f.run_id),
        agent_message::Body::Progress(p) => Some(p.run_id),
        _ => None,
    }
}

/// Completes when `stop` turns true (the guard is not held across awaits).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
