//! A small ingest for tests: implements `lasect.v1.Ingest` over real mutual
//! TLS, records what it receives, and misbehaves on request.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use lasect_proto::bases::{ReceiverBases, decode_delta_batch};
use lasect_proto::payload;
use lasect_proto::v1::ingest_server::{Ingest, IngestServer};
use lasect_proto::v1::{
    EnrollRequest, EnrollResponse, PushAck, PushRequest, RenewRequest, SampleBatch,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use super::TestPki;

/// What the test ingest saw and how it should misbehave.
#[derive(Default)]
pub struct Shared {
    /// Accepted batches, in arrival order.
    pub received: Mutex<Vec<(u64, SampleBatch)>>,
    /// Every Push call's seq, accepted or not.
    pub attempts: Mutex<Vec<u64>>,
    /// Answer this many calls with Unavailable first.
    pub unavailable: AtomicU32,
    /// Answer pushes of these seqs with InvalidArgument.
    pub reject: Mutex<HashSet<u64>>,
    /// Answer pushes of these seqs with OutOfRange, as tonic does for a
    /// message above the server's decoding limit.
    pub too_large: Mutex<HashSet<u64>>,
    /// `(held, until)`: answer the push of seq `held` only once seq `until`
    /// was received, which needs both in flight at once.
    pub hold: Mutex<Option<(u64, u64)>>,
    /// Keep offered batches as bases and take delta pushes, with the same
    /// protocol code as the real ingest (`lasect_proto::bases`).
    pub keep_bases: AtomicBool,
    pub bases: Mutex<ReceiverBases>,
    /// Delta pushes received (rebuilt or not).
    pub delta_attempts: Mutex<Vec<u64>>,
}

impl Shared {
    pub fn received_seqs(&self) -> Vec<u64> {
        lock(&self.received).iter().map(|(s, _)| *s).collect()
    }
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().expect("test mutex poisoned")
}

struct TestIngest(Arc<Shared>);

#[tonic::async_trait]
impl Ingest for TestIngest {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushAck>, Status> {
        // Only a verified client certificate gets this far.
        if request.peer_certs().is_none_or(|c| c.is_empty()) {
            return Err(Status::unauthenticated("no client certificate"));
        }
        let req = request.into_inner();
        lock(&self.0.attempts).push(req.seq);
        let hold = *lock(&self.0.hold);
        if let Some((held, until)) = hold
            && held == req.seq
        {
            for _ in 0..3000 {
                if self.0.received_seqs().contains(&until) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        if self
            .0
            .unavailable
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Status::unavailable("test ingest is unavailable"));
        }
        if lock(&self.0.reject).contains(&req.seq) {
            return Err(Status::invalid_argument(format!("seq {} is bad", req.seq)));
        }
        if lock(&self.0.too_large).contains(&req.seq) {
            return Err(Status::out_of_range(format!(
                "decoded message length too large for seq {}",
                req.seq
            )));
        }
        let mut plain =
            payload::decompress(req.codec, req.uncompressed_size, &req.payload, 1 << 20)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Some(crc) = req.delta_crc32c {
            lock(&self.0.delta_attempts).push(req.seq);
            let bases = lock(&self.0.bases);
            let rebuilt =
                decode_delta_batch(req.seq, &plain, crc, 1 << 20, |s, i| bases.find(s, i))
                    .map_err(|e| Status::failed_precondition(e.to_string()))?;
            plain = rebuilt.batch;
        }
        let batch =
            payload::decode_plain(&plain).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let kept = req.offer_base && self.0.keep_bases.load(Ordering::SeqCst);
        if kept {
            let samples = lasect_proto::delta::split_batch(&plain)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let samples: Vec<Arc<[u8]>> = samples.into_iter().map(Arc::from).collect();
            lock(&self.0.bases).keep(req.seq, &samples);
        }
        let stored_samples = u32::try_from(batch.samples.len()).expect("few samples");
        let mut received = lock(&self.0.received);
        let duplicate = received.iter().any(|(s, _)| *s == req.seq);
        if !duplicate {
            received.push((req.seq, batch));
        }
        Ok(Response::new(PushAck {
            seq: req.seq,
            duplicate,
            stored_samples,
            unknown_samples: 0,
            kept,
        }))
    }

    async fn enroll(
        &self,
        _request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        Err(Status::failed_precondition("enrollment is not configured"))
    }

    async fn renew(
        &self,
        _request: Request<RenewRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        Err(Status::failed_precondition("enrollment is not configured"))
    }
}

/// A running test ingest; stops on `stop()` or drop.
pub struct TestServer {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestServer {
    pub async fn start(pki: &TestPki, listener: TcpListener, shared: Arc<Shared>) -> Self {
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(
                &pki.server_cert_pem,
                &pki.server_key_pem,
            ))
            .client_ca_root(Certificate::from_pem(&pki.ca_pem));
        let (stop, stopped) = oneshot::channel::<()>();
        let router = Server::builder()
            .tls_config(tls)
            .expect("server TLS config")
            .add_service(IngestServer::new(TestIngest(shared)));
        let task = tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    let _ = stopped.await;
                })
                .await
                .expect("test server");
        });
        Self {
            stop: Some(stop),
            task,
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("server task");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
