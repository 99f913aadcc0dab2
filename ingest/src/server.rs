//! The `lasect.v1.Ingest` service: identify the agent, decode, validate,
//! write, ack. Errors reach the client as a status with a short reason; the
//! details of store failures stay in the log.

use deadpool_postgres::Pool;
use lasect_proto::payload;
use lasect_proto::v1::ingest_server::Ingest;
use lasect_proto::v1::{PushAck, PushRequest};
use tonic::{Request, Response, Status};

use crate::ErrorChain;
use crate::config::Limits;
use crate::identity::{self, AgentId};
use crate::partitions::PartitionCache;
use crate::validate::{Batch, Rules, Seq};
use crate::writer::{self, Outcome, StoreError};

pub struct IngestService {
    pool: Pool,
    partitions: PartitionCache,
    limits: Limits,
}

impl IngestService {
    pub fn new(pool: Pool, partitions: PartitionCache, limits: Limits) -> Self {
        Self {
            pool,
            partitions,
            limits,
        }
    }

    /// Everything up to the write: the checks that need no store.
    fn decode(&self, agent: &AgentId, request: PushRequest) -> Result<(Seq, Batch), Status> {
        let refuse = |reason: String| {
            tracing::warn!(%agent, seq = request.seq, %reason, "refused a batch");
            Status::invalid_argument(reason)
        };
        let seq = Seq::try_from(request.seq).map_err(|e| refuse(e.to_string()))?;
        let samples = payload::decode(
            request.codec,
            request.uncompressed_size,
            &request.payload,
            self.limits.max_uncompressed_bytes,
        )
        .map_err(|e| refuse(e.to_string()))?;
        let rules = Rules {
            max_samples: self.limits.max_samples_per_batch,
            now: chrono::Utc::now(),
        };
        let batch = Batch::from_samples(samples, &rules).map_err(|e| refuse(e.to_string()))?;
        Ok((seq, batch))
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushAck>, Status> {
        let agent = identity::agent_id_of(&request).map_err(|e| {
            let reason = ErrorChain(&e).to_string();
            tracing::warn!(peer = ?request.remote_addr(), %reason, "refused an unidentified push");
            Status::unauthenticated(reason)
        })?;
        let request = request.into_inner();
        let wire_seq = request.seq;
        let (seq, batch) = self.decode(&agent, request)?;

        let outcome = writer::write_batch(&self.pool, &self.partitions, &agent, seq, &batch)
            .await
            .map_err(|e| store_status(&agent, wire_seq, &e))?;
        let duplicate = outcome == Outcome::Duplicate;
        tracing::debug!(
            %agent,
            seq = wire_seq,
            duplicate,
            stored = batch.stored_samples,
            unknown = batch.unknown_samples,
            "batch acknowledged"
        );
        Ok(Response::new(PushAck {
            seq: wire_seq,
            duplicate,
            // A duplicate wrote nothing now: its samples were counted when
            // the batch was first stored.
            stored_samples: if duplicate { 0 } else { batch.stored_samples },
            unknown_samples: batch.unknown_samples,
        }))
    }
}

/// Logs a store failure in full and tells the client only its kind.
fn store_status(agent: &AgentId, seq: u64, error: &StoreError) -> Status {
    if error.is_retryable() {
        tracing::warn!(%agent, seq, error = %ErrorChain(error), "store unavailable; the agent will retry");
        Status::unavailable("store unavailable, retry later")
    } else {
        tracing::error!(%agent, seq, error = %ErrorChain(error), "store error while writing a batch");
        Status::internal("store error")
    }
}
