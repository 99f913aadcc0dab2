//! One agent's Control stream, from its hello to its end.

use std::collections::HashMap;
use std::time::Duration;

use lasect_proto::v1::{AgentMessage, agent_message};
use tonic::{Status, Streaming};

use super::dispatch::Hub;
use super::registry::{Outbound, StreamCert};
use super::{MAX_PAGE_BYTES, store_ops};

/// The agent must say hello this soon after opening the stream.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the stream until the agent closes it, it breaks, or a newer
/// stream of the same agent replaces it.
pub async fn serve(
    hub: Hub,
    agent: String,
    cert: StreamCert,
    mut inbound: Streaming<AgentMessage>,
    tx: Outbound,
) {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
        Ok(Ok(Some(AgentMessage {
            body: Some(agent_message::Body::Hello(h)),
        }))) => h,
        Ok(Ok(None)) | Ok(Err(_)) => return,
        Ok(Ok(Some(_))) | Err(_) => {
            tracing::warn!(%agent, "Control stream without a ControlHello first; closed");
            let _ = tx
                .send(Err(Status::failed_precondition(
                    "the first message on the Control stream must be ControlHello",
                )))
                .await;
            return;
        }
    };
    // Checked again before anything changes in the store: a stream with a
    // newer certificate may have opened while this one waited for its hello.
    if let Err(older) = hub.registry.admits(&agent, &cert) {
        tracing::warn!(%agent, %older, "Control stream refused");
        let _ = tx
            .send(Err(Status::failed_precondition(older.to_string())))
            .await;
        return;
    }
    if let Err(e) =
        store_ops::agent_seen(&hub.pool, &agent, &hello.agent_version, &hello.allowed).await
    {
        tracing::warn!(%agent, error = %e, "cannot record the agent");
    }
    match store_ops::fail_lost(&hub.pool, &agent, &hello.in_flight_run_ids).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(%agent, runs = n, "failed the runs the agent lost"),
        Err(e) => tracing::warn!(%agent, error = %e, "cannot fail the runs the agent lost"),
    }
    let generation = match hub.registry.insert(&agent, tx.clone(), cert) {
        Ok(g) => g,
        Err(older) => {
            tracing::warn!(%agent, %older, "Control stream refused");
            let _ = tx
                .send(Err(Status::failed_precondition(older.to_string())))
                .await;
            return;
        }
    };
    tracing::info!(
        %agent,
        version = %hello.agent_version,
        in_flight = hello.in_flight_run_ids.len(),
        allowed = ?hello.allowed,
        "Control stream open"
    );
    hub.send_assignments(&agent, &tx).await;
    hub.wake(&agent);

    // Next page expected per run; a run carried over from an earlier stream
    // starts wherever it is.
    let mut next_page: HashMap<i64, u32> = HashMap::new();
    loop {
        let msg = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(status) => {
                tracing::debug!(%agent, %status, "Control stream broke");
                break;
            }
        };
        if !hub.registry.is_current(&agent, generation) {
            break;
        }
        handle(&hub, &agent, msg, &mut next_page).await;
    }
    hub.registry.remove(&agent, generation);
    tracing::info!(%agent, "Control stream closed");
}

async fn handle(hub: &Hub, agent: &str, msg: AgentMessage, next_page: &mut HashMap<i64, u32>) {
    let Some(body) = msg.body else {
        tracing::warn!(%agent, "empty Control message ignored");
        return;
    };
    match body {
        agent_message::Body::Hello(_) => {
            tracing::warn!(%agent, "second ControlHello on one stream ignored");
        }
        agent_message::Body::Started(s) => {
            match store_ops::started(&hub.pool, agent, s.run_id, s.backend_pid).await {
                Ok(true) => tracing::debug!(%agent, run = s.run_id, "run started"),
                Ok(false) => {
                    tracing::warn!(%agent, run = s.run_id, "start of a run that is not this agent's open run ignored")
                }
                Err(e) => {
                    tracing::warn!(%agent, run = s.run_id, error = %e, "cannot record a run start")
                }
            }
        }
        agent_message::Body::Chunk(c) => {
            if c.data.len() > MAX_PAGE_BYTES {
                fail(
                    hub,
                    agent,
                    c.run_id,
                    &format!(
                        "result page {} is {} bytes, more than the {} ingest accepts",
                        c.page,
                        c.data.len(),
                        MAX_PAGE_BYTES
                    ),
                )
                .await;
                return;
            }
            let expected = *next_page.entry(c.run_id).or_insert(c.page);
            if c.page != expected {
                fail(
                    hub,
                    agent,
                    c.run_id,
                    &format!(
                        "result page {} arrived when page {expected} was expected",
                        c.page
                    ),
                )
                .await;
                return;
            }
            let (Ok(page), Ok(rows)) = (i32::try_from(c.page), i32::try_from(c.rows)) else {
                fail(
                    hub,
                    agent,
                    c.run_id,
                    "result page number or row count out of range",
                )
                .await;
                return;
            };
            match store_ops::page(&hub.pool, agent, c.run_id, page, rows, &c.data).await {
                Ok(true) => {
                    next_page.insert(c.run_id, c.page.saturating_add(1));
                }
                Ok(false) => {
                    tracing::warn!(%agent, run = c.run_id, page = c.page, "page of a run that is not this agent's open run ignored")
                }
                Err(e) => {
                    tracing::warn!(%agent, run = c.run_id, error = %e, "cannot store a result page");
                    fail(hub, agent, c.run_id, "ingest could not store a result page").await;
                }
            }
        }
        agent_message::Body::Finished(f) => {
            next_page.remove(&f.run_id);
            match store_ops::finish(&hub.pool, agent, &f, hub.settings.result_ttl_secs).await {
                Ok(Some(done)) => {
                    tracing::info!(%agent, run = f.run_id, kind = %done.kind, status = done.status.as_str(), rows = f.rows, "run finished")
                }
                Ok(None) => {
                    tracing::warn!(%agent, run = f.run_id, "result of a run that is not this agent's open run ignored")
                }
                Err(e) => {
                    tracing::warn!(%agent, run = f.run_id, error = %e, "cannot record a run's result")
                }
            }
        }
        agent_message::Body::Progress(p) => {
            match store_ops::progress(&hub.pool, agent, p.run_id, &p.progress_json).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(%agent, run = p.run_id, "progress of a run that is not this agent's running run ignored")
                }
                Err(e) => {
                    tracing::warn!(%agent, run = p.run_id, error = %e, "cannot record a run's progress")
                }
            }
        }
        agent_message::Body::Health(h) => {
            if let Err(e) = store_ops::health(&hub.pool, agent, &h).await {
                tracing::warn!(%agent, instance = %h.instance, error = %e, "cannot record instance health");
            }
        }
    }
}

async fn fail(hub: &Hub, agent: &str, run: i64, reason: &str) {
    tracing::warn!(%agent, run, %reason, "run failed by ingest");
    if let Err(e) = store_ops::fail_open(&hub.pool, agent, run, reason).await {
        tracing::warn!(%agent, run, error = %e, "cannot mark the run failed");
    }
}
