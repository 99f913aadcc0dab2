//! Simulated agents: each has its own client certificate and its own mTLS
//! connection (as real agents do), and all of them run as tasks on a small
//! tokio runtime.
//!
//! Two modes:
//! - live (`batches_per_agent` unset): each agent starts at a random
//!   offset within the first interval, connects, then pushes one batch per
//!   interval, stamped with the time of its tick, until the run's duration
//!   ends. A failed push is counted and not retried (the next tick follows).
//!   Pushes in the first `warmup` (while the fleet is still connecting, a
//!   handshake storm no steady fleet sees) are made but only counted apart.
//!   With `delta` (the default), each agent sends what the real agent
//!   sends: every push offered as a base, later ones coded against those
//!   ingest kept, and a delta push ingest cannot rebuild sent again whole
//!   at once (both attempts measured).
//! - backlog (`batches_per_agent = n`): each agent pushes `n` batches
//!   stamped `n` intervals into the past up to now, as fast as ingest
//!   acknowledges them with `window` pushes in flight, retrying a refused
//!   push (`RESOURCE_EXHAUSTED`, `UNAVAILABLE`) after a short backoff, as
//!   an agent draining its spool does.
//!
//! Latency is measured per push attempt, from the call to its answer, on
//! an established connection (handshakes are not part of it).
//!
//! The backlog mode builds and encodes every batch before the first push
//! (an agent's spool holds them encoded already), so the loadgen's CPU
//! during the measured part is only that of sending them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lasect_pki::{CertificateAuthority, IssuedCert};
use lasect_proto::bases::SenderBases;
use lasect_proto::payload;
use lasect_proto::v1::PushRequest;
use lasect_proto::v1::ingest_client::IngestClient;
use prost::Message as _;
use tokio::sync::{Mutex, Semaphore};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::batch::{Shape, tick_batch};

const CERT_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Plan {
    pub agents: u32,
    pub agent_prefix: String,
    pub interval: Duration,
    pub duration: Duration,
    /// Live mode: pushes before this are not measured.
    pub warmup: Duration,
    pub batches_per_agent: Option<u64>,
    pub window: usize,
    pub concurrency: Option<usize>,
    pub shape: Shape,
    pub endpoint: String,
    pub server_name: String,
    /// First seq of every agent; later batches count up from it.
    pub seq_base: u64,
    /// Live mode: delta pushes, as agents send them.
    pub delta: bool,
}

/// Everything the agents observed.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: u64,
    pub duplicate: u64,
    /// Failed attempts by gRPC code name (or `connect`).
    pub failed: BTreeMap<String, u64>,
    pub rows: u64,
    pub samples: u64,
    pub compressed_bytes: u64,
    /// Live mode: pushes during the warm-up, acknowledged and failed.
    pub warmup_ok: u64,
    pub warmup_failed: u64,
    /// Microseconds of every answered attempt.
    pub latencies_us: Vec<u64>,
    /// From the first push to the last answer.
    pub first_push: Option<Instant>,
    pub last_answer: Option<Instant>,
}

impl Tally {
    fn fail(&mut self, what: &str) {
        *self.failed.entry(what.to_owned()).or_default() += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.duplicate += other.duplicate;
        for (k, v) in other.failed {
            *self.failed.entry(k).or_default() += v;
        }
        self.rows += other.rows;
        self.samples += other.samples;
        self.compressed_bytes += other.compressed_bytes;
        self.warmup_ok += other.warmup_ok;
        self.warmup_failed += other.warmup_failed;
        self.latencies_us.extend(other.latencies_us);
        self.first_push = match (self.first_push, other.first_push) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_answer = match (self.last_answer, other.last_answer) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Issues one certificate per agent (CN `<prefix>-<i>`).
pub fn issue_certs(
    ca: &CertificateAuthority,
    prefix: &str,
    agents: u32,
) -> anyhow::Result<Vec<(String, IssuedCert)>> {
    (0..agents)
        .map(|i| {
            let id = format!("{prefix}-{i}");
            let cert = ca.issue_client(&id, CERT_VALIDITY)?;
            Ok((id, cert))
        })
        .collect()
}

/// Every batch of a backlog run, by agent then batch: the request without
/// its seq and times, and the rows it stores.
pub type Backlog = Vec<Vec<(PushRequest, u64)>>;

/// Builds and encodes the backlog of every agent (backlog mode only).
pub fn prepare_backlog(plan: &Plan) -> anyhow::Result<Backlog> {
    let Some(n) = plan.batches_per_agent else {
        return Ok(Vec::new());
    };
    let now = now_micros();
    let step = plan.interval.as_micros() as i64;
    (0..u64::from(plan.agents))
        .map(|agent| {
            (0..n)
                .map(|k| {
                    let time = now - (n - 1 - k) as i64 * step;
                    let req = request(plan, agent, k, time)?;
                    Ok((req, plan.shape.rows_at(k)))
                })
                .collect()
        })
        .collect()
}

pub async fn run(
    plan: Plan,
    ca_pem: String,
    certs: Vec<(String, IssuedCert)>,
    backlog: Backlog,
) -> anyhow::Result<Tally> {
    let plan = Arc::new(plan);
    let mut backlog = backlog.into_iter();
    let limit = plan.concurrency.map(|n| Arc::new(Semaphore::new(n)));
    let started = Instant::now();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = futures::stream::FuturesUnordered::new();
    for (index, (_, cert)) in certs.into_iter().enumerate() {
        let plan = plan.clone();
        let ca_pem = ca_pem.clone();
        let limit = limit.clone();
        let tally = tally.clone();
        let batches = backlog.next().unwrap_or_default();
        tasks.push(tokio::spawn(async move {
            let mine = agent(&plan, index as u64, &ca_pem, &cert, limit, started, batches).await;
            tally.lock().await.merge(mine);
        }));
    }
    while let Some(joined) = tasks.next().await {
        joined?;
    }
    let tally = std::mem::take(&mut *tally.lock().await);
    Ok(tally)
}

async fn connect(plan: &Plan, ca_pem: &str, cert: &IssuedCert) -> anyhow::Result<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(plan.server_name.clone())
        .identity(Identity::from_pem(
            &cert.cert_pem,
            cert.key_pem.expose_secret(),
        ));
    let channel = Endpoint::from_shared(plan.endpoint.clone())?
        .connect_timeout(CALL_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(channel)
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// A backlog push of batch `k`: whole, not offered as a base.
fn request(plan: &Plan, agent: u64, k: u64, time: i64) -> anyhow::Result<PushRequest> {
    let (mut req, _) = live_request(plan, agent, k, time, None)?;
    req.offer_base = false;
    Ok(req)
}

/// The live push of batch `k`: whole or coded against `bases`, offered as
/// a base; with the encoded batch, to keep once acknowledged.
fn live_request(
    plan: &Plan,
    agent: u64,
    k: u64,
    time: i64,
    bases: Option<&mut SenderBases>,
) -> anyhow::Result<(PushRequest, Vec<u8>)> {
    let batch = tick_batch(plan.shape, agent, k, time);
    let plain = batch.encode_to_vec();
    let seq = plan.seq_base + k;
    let coded = match bases {
        Some(bases) => Some(bases.encode(seq, &plain)?).filter(|c| c.coded_samples > 0),
        None => None,
    };
    let (codec, body, crc) = match &coded {
        Some(c) => (payload::DELTA_CODEC, &c.plain, Some(c.crc32c)),
        None => (payload::DEFAULT_CODEC, &plain, None),
    };
    Ok((
        PushRequest {
            seq,
            created_unix_micros: now_micros(),
            codec: codec as i32,
            uncompressed_size: u32::try_from(body.len())?,
            payload: payload::compress(codec, body)?,
            sample_count: batch.samples.len() as u32,
            delta_crc32c: crc,
            offer_base: plan.delta,
            ..Default::default()
        },
        plain,
    ))
}

/// One push attempt; records it in `tally`. Returns the failure code, if any.
async fn attempt(
    client: &mut IngestClient<Channel>,
    req: PushRequest,
    rows: u64,
    limit: &Option<Arc<Semaphore>>,
    tally: &mut Tally,
) -> Option<Code> {
    attempt_kept(client, req, rows, limit, tally).await.err()
}

/// One push attempt; records it in `tally`. Returns whether ingest kept the
/// batch as a base, or the failure code.
async fn attempt_kept(
    client: &mut IngestClient<Channel>,
    req: PushRequest,
    rows: u64,
    limit: &Option<Arc<Semaphore>>,
    tally: &mut Tally,
) -> Result<bool, Code> {
    let _slot = match limit {
        Some(s) => s.clone().acquire_owned().await.ok(),
        None => None,
    };
    let bytes = req.payload.len() as u64;
    let start = Instant::now();
    tally.first_push = Some(tally.first_push.map_or(start, |f| f.min(start)));
    let result = client.push(req).await;
    let end = Instant::now();
    tally.last_answer = Some(end);
    tally.latencies_us.push((end - start).as_micros() as u64);
    match result {
        Ok(ack) => {
            let ack = ack.into_inner();
            tally.ok += 1;
            if ack.duplicate {
                tally.duplicate += 1;
            } else {
                tally.rows += rows;
                tally.samples += u64::from(ack.stored_samples);
            }
            tally.compressed_bytes += bytes;
            Ok(ack.kept)
        }
        Err(status) => {
            tally.fail(&format!("{:?}", status.code()));
            Err(status.code())
        }
    }
}

async fn agent(
    plan: &Plan,
    index: u64,
    ca_pem: &str,
    cert: &IssuedCert,
    limit: Option<Arc<Semaphore>>,
    started: Instant,
    batches: Vec<(PushRequest, u64)>,
) -> Tally {
    let mut tally = Tally::default();
    // Real agents do not all start in the same millisecond.
    if plan.batches_per_agent.is_none() {
        let ms = plan.interval.as_millis().max(1) as u64;
        let offset = Duration::from_millis(crate::batch::noise(index, 0xFEED) % ms);
        tokio::time::sleep(offset).await;
    }
    let channel = loop {
        match connect(plan, ca_pem, cert).await {
            Ok(c) => break c,
            Err(_) => {
                tally.fail("connect");
                if started.elapsed() >= plan.duration {
                    return tally;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let client = IngestClient::new(channel)
        .max_decoding_message_size(1 << 20)
        .max_encoding_message_size(64 << 20);
    match plan.batches_per_agent {
        None => live(plan, index, client, &limit, started, &mut tally).await,
        Some(_) => backlog(client, batches, plan.window, &limit, &mut tally).await,
    }
    tally
}

async fn live(
    plan: &Plan,
    index: u64,
    mut client: IngestClient<Channel>,
    limit: &Option<Arc<Semaphore>>,
    started: Instant,
    tally: &mut Tally,
) {
    let mut ticks = tokio::time::interval(plan.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut k = 0;
    let mut bases = SenderBases::default();
    loop {
        ticks.tick().await;
        if started.elapsed() >= plan.duration {
            return;
        }
        let rows = plan.shape.rows_at(k);
        let time = now_micros();
        let warm = started.elapsed() < plan.warmup;
        let mut warm_tally = Tally::default();
        let into = if warm { &mut warm_tally } else { &mut *tally };
        let coded = live_request(plan, index, k, time, plan.delta.then_some(&mut bases));
        let Ok((req, plain)) = coded else {
            tally.fail("encode");
            k += 1;
            continue;
        };
        let seq = req.seq;
        let mut outcome = attempt_kept(&mut client, req, rows, limit, into).await;
        if outcome == Err(Code::FailedPrecondition) {
            // Ingest lost this agent's bases: the batch goes again whole.
            bases.reset();
            match live_request(plan, index, k, time, None) {
                Ok((req, _)) => outcome = attempt_kept(&mut client, req, rows, limit, into).await,
                Err(_) => into.fail("encode"),
            }
        }
        if outcome == Ok(true) {
            bases.kept(seq, &plain);
        }
        if warm {
            match outcome {
                Ok(_) => tally.warmup_ok += 1,
                Err(_) => tally.warmup_failed += 1,
            }
        }
        k += 1;
    }
}

async fn backlog(
    client: IngestClient<Channel>,
    batches: Vec<(PushRequest, u64)>,
    window: usize,
    limit: &Option<Arc<Semaphore>>,
    tally: &mut Tally,
) {
    let window = window.max(1);
    let batches = &batches;
    // `window` lanes share the batches in order, each with its own clone of
    // the channel (HTTP/2 multiplexes them on the one connection).
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let lanes = (0..window).map(|_| {
        let mut client = client.clone();
        let next = next.clone();
        async move {
            let mut mine = Tally::default();
            loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((req, rows)) = batches.get(k) else {
                    return mine;
                };
                let mut backoff = Duration::from_millis(20);
                loop {
                    // A clone of the encoded payload: cheap next to sending it.
                    let mut req = req.clone();
                    req.created_unix_micros = now_micros();
                    match attempt(&mut client, req, *rows, limit, &mut mine).await {
                        None => break,
                        Some(
                            Code::ResourceExhausted | Code::Unavailable | Code::DeadlineExceeded,
                        ) => {
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(1));
                        }
                        Some(_) => break,
                    }
                }
            }
        }
    });
    for lane in futures::future::join_all(lanes).await {
        tally.merge(lane);
    }
}
