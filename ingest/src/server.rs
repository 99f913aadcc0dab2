//! The `lasect.v1.Ingest` service: identify the agent, check its rate,
//! admit the push (or refuse it at once when ingest is saturated), decode,
//! validate, write, ack. Errors reach the client as a status with a short
//! reason; the details of store failures stay in the log. Every outcome is
//! counted in [`Metrics`].

use std::time::Instant;

use lasect_proto::v1::ingest_server::Ingest;
use std::sync::Arc;

use lasect_proto::v1::{EnrollRequest, EnrollResponse, PushAck, PushRequest, RenewRequest};
use tonic::{Request, Response, Status};

use crate::ErrorChain;
use crate::bases::KeptBases;
use crate::config::Limits;
use crate::enroll::{self, Enroller};
use crate::identity::{self, AgentId};
use crate::limits::Admission;
use crate::metrics::{Acked, ErrorKind, Metrics};
use crate::push::{DecodeLimits, Decoded, Payload, PushError, decode_push};
use crate::rate_limit::AgentRateLimiter;
use crate::reports::{AgentReports, Report};
use crate::revocation::Revocations;
use crate::validate::Seq;
use crate::writer::{Outcome, StoreError, Writers};

pub struct IngestService {
    writers: Writers,
    limits: Limits,
    admission: Admission,
    rate: AgentRateLimiter,
    metrics: Metrics,
    /// Who is identified (client certificate) and not disabled.
    access: Access,
    enroller: Arc<Enroller>,
}

/// The agent-side dependencies of the service: disabled agents, reports,
/// enrollment.
pub struct Access {
    pub revocations: Revocations,
    pub reports: AgentReports,
    /// Samples kept as bases of the agents' delta pushes.
    pub bases: KeptBases,
}

impl IngestService {
    pub fn new(
        writers: Writers,
        limits: Limits,
        admission: Admission,
        rate: AgentRateLimiter,
        metrics: Metrics,
        access: Access,
        enroller: Arc<Enroller>,
    ) -> Self {
        Self {
            writers,
            limits,
            admission,
            rate,
            metrics,
            access,
            enroller,
        }
    }

    /// The caller's agent id, from its verified client certificate; refuses
    /// a caller without one (UNAUTHENTICATED) and a disabled agent
    /// (PERMISSION_DENIED). Every call but Enroll starts here.
    fn authenticate<T>(&self, request: &Request<T>) -> Result<AgentId, Status> {
        authenticate(&self.access.revocations, &self.metrics, request)
    }
}

/// The caller's agent id, from its verified client certificate; refuses a
/// caller without one (UNAUTHENTICATED) and a disabled agent
/// (PERMISSION_DENIED). Shared by `Ingest` and `Control`.
pub fn authenticate<T>(
    revocations: &Revocations,
    metrics: &Metrics,
    request: &Request<T>,
) -> Result<AgentId, Status> {
    let agent = identity::agent_id_of(request).map_err(|e| {
        let reason = ErrorChain(&e).to_string();
        tracing::warn!(peer = ?request.remote_addr(), %reason, "refused an unidentified call");
        metrics.error(ErrorKind::Unauthenticated);
        Status::unauthenticated(format!(
            "{reason}; this call needs the agent's client certificate"
        ))
    })?;
    if revocations.is_disabled(agent.as_str()) {
        tracing::warn!(%agent, peer = ?request.remote_addr(), "refused a call of a disabled agent");
        metrics.error(ErrorKind::Unauthenticated);
        return Err(enroll::disabled(agent.as_str()));
    }
    Ok(agent)
}

impl IngestService {
    /// Everything up to the write: the checks that need no store.
    fn decode(&self, agent: &AgentId, request: &PushRequest) -> Result<(Seq, Decoded), Status> {
        let refuse = |reason: String| {
            tracing::warn!(%agent, seq = request.seq, %reason, "refused a batch");
            self.metrics.error(ErrorKind::Invalid);
            Status::invalid_argument(reason)
        };
        let seq = Seq::try_from(request.seq).map_err(|e| refuse(e.to_string()))?;
        let limits = DecodeLimits {
            max_uncompressed_bytes: self.limits.max_uncompressed_bytes,
            max_samples_per_batch: self.limits.max_samples_per_batch,
        };
        let push = Payload {
            seq: request.seq,
            codec: request.codec,
            uncompressed_size: request.uncompressed_size,
            bytes: &request.payload,
            delta_crc32c: request.delta_crc32c,
            // With no memory for bases, none is offered back.
            offer_base: request.offer_base && self.limits.delta_bases_max_bytes > 0,
        };
        let now = chrono::Utc::now();
        let decoded = if push.delta_crc32c.is_some() {
            self.access.bases.with(agent, |bases| {
                decode_push(push, limits, now, |seq, index| bases.find(seq, index))
            })
        } else {
            decode_push(push, limits, now, |_, _| None)
        };
        match decoded {
            Ok(decoded) => Ok((seq, decoded)),
            Err(PushError::Delta(e)) => {
                // Not the batch's fault: the agent sends it whole next.
                tracing::debug!(%agent, seq = request.seq, error = %e, "cannot rebuild a delta push");
                self.metrics.error(ErrorKind::DeltaBase);
                Err(Status::failed_precondition(format!(
                    "{e}; send the batch whole"
                )))
            }
            Err(e) => Err(refuse(e.to_string())),
        }
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushAck>, Status> {
        let agent = self.authenticate(&request)?;
        self.metrics.agent_seen(&agent);
        let request = request.into_inner();
        self.access.reports.record(
            agent.as_str(),
            Report::from_push(
                &request.hostname,
                &request.agent_version,
                request.spool_backlog_batches,
                request.spool_backlog_bytes,
            ),
        );
        let wire_seq = request.seq;

        // Cheap refusals first: nothing below runs for an agent over its
        // rate or when ingest is full.
        if let Err(limited) = self.rate.check(&agent) {
            tracing::debug!(%agent, seq = wire_seq, %limited, "push over the agent's rate");
            self.metrics.error(ErrorKind::RateLimited);
            return Err(Status::resource_exhausted(limited.to_string()));
        }
        let compressed_bytes = request.payload.len() as u64;
        let uncompressed_bytes = u64::from(request.uncompressed_size);
        let _permit = self
            .admission
            .try_admit(compressed_bytes + uncompressed_bytes)
            .map_err(|saturated| {
                tracing::debug!(%agent, seq = wire_seq, %saturated, "push refused");
                self.metrics.error(ErrorKind::ResourceExhausted);
                Status::resource_exhausted(saturated.to_string())
            })?;

        let (seq, Decoded { batch, samples }) = self.decode(&agent, &request)?;
        let delta = request.delta_crc32c.is_some();
        // The payload is not needed past decoding.
        drop(request);
        let started = Instant::now();
        let rows = batch.rows() as u64;
        let (stored_samples, unknown_samples) = (batch.stored_samples, batch.unknown_samples);
        // Queued with the other pushes waiting; answered after the commit
        // of the group this one lands in.
        let outcome = self
            .writers
            .write(agent.clone(), seq, batch)
            .await
            .map_err(|e| self.store_status(&agent, wire_seq, &e))?;
        let duplicate = outcome == Outcome::Duplicate;
        self.metrics.acked(&Acked {
            duplicate,
            rows,
            samples: u64::from(stored_samples),
            compressed_bytes,
            uncompressed_bytes,
            write_time: started.elapsed(),
            delta,
        });
        // Kept only once stored (or found stored before): the agent names
        // a base only after this ack.
        let kept = match samples {
            Some(samples) => {
                let kept = self.access.bases.keep(&agent, wire_seq, &samples);
                self.metrics.delta_bases_bytes(self.access.bases.bytes());
                kept
            }
            None => false,
        };
        tracing::debug!(
            %agent,
            seq = wire_seq,
            duplicate,
            stored = stored_samples,
            unknown = unknown_samples,
            "batch acknowledged"
        );
        Ok(Response::new(PushAck {
            seq: wire_seq,
            duplicate,
            // A duplicate wrote nothing now: its samples were counted when
            // the batch was first stored.
            stored_samples: if duplicate { 0 } else { stored_samples },
            unknown_samples,
            kept,
        }))
    }

    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let peer = request.remote_addr();
        let result = self.enroller.enroll(request.into_inner()).await;
        if let Err(status) = &result {
            tracing::warn!(?peer, code = ?status.code(), reason = status.message(), "refused an enrollment");
        }
        result.map(Response::new)
    }

    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let agent = self.authenticate(&request)?;
        let serial = identity::peer_cert_of(&request)
            .map_err(|e| Status::unauthenticated(ErrorChain(&e).to_string()))?
            .serial_hex;
        let result = self
            .enroller
            .renew(&agent, &serial, request.into_inner())
            .await;
        if let Err(status) = &result {
            tracing::warn!(%agent, code = ?status.code(), reason = status.message(), "refused a renewal");
        }
        result.map(Response::new)
    }
}

impl IngestService {
    /// Logs a store failure in full and tells the client only its kind.
    fn store_status(&self, agent: &AgentId, seq: u64, error: &StoreError) -> Status {
        if error.is_retryable() {
            tracing::warn!(%agent, seq, error = %ErrorChain(error), "store unavailable; the agent will retry");
            self.metrics.error(ErrorKind::StoreUnavailable);
            Status::unavailable("store unavailable, retry later")
        } else {
            tracing::error!(%agent, seq, error = %ErrorChain(error), "store error while writing a batch");
            self.metrics.error(ErrorKind::Internal);
            Status::internal("store error")
        }
    }
}
