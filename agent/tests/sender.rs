//! The sender against a small in-test ingest over real mutual TLS.

use crate::support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lasect_agent::identity::ClientIdentity;
use lasect_agent::outbox::{Outbox, OutboxEntry};
use lasect_agent::sender::{Sender, SenderSettings};
use lasect_agent::spool::{Spool, SpoolOptions};
use lasect_proto::payload;
use lasect_proto::v1::{Sample, SampleBatch};
use support::TestPki;
use support::ingest::{Shared, TestServer, install_crypto, lock};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

fn settings(pki: &TestPki, addr: SocketAddr) -> SenderSettings {
    SenderSettings {
        endpoint: format!("https://{addr}"),
        server_name: Some("lasect-ingest".into()),
        ca_file: pki.ca_file(),
        identity: ClientIdentity::Files {
            cert_file: pki.cert_file(),
            key_file: pki.key_file(),
        },
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        // Short, so retries happen quickly in tests.
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(100),
        flush_timeout: Duration::from_secs(10),
        // One at a time unless a test says otherwise, so attempt order is fixed.
        window: 1,
        // Unless a test asks, the stand-in ingest keeps no bases, so pushes
        // stay whole.
        delta: true,
    }
}

/// A batch with one sample whose instance name encodes `seq`.
fn entry(seq: u64) -> OutboxEntry {
    entry_of(seq, &batch(seq))
}

/// The outbox entry of a one-sample `batch`.
fn entry_of(seq: u64, batch: &SampleBatch) -> OutboxEntry {
    OutboxEntry {
        seq,
        priority: 0,
        created_unix_micros: 1_700_000_000_000_000,
        sample_count: 1,
        batch: payload::encode(batch).expect("encode"),
    }
}

fn batch(seq: u64) -> SampleBatch {
    SampleBatch {
        samples: vec![Sample {
            instance: format!("i{seq}"),
            time_unix_micros: 1_700_000_000_000_000 + i64::try_from(seq).expect("small"),
            family: None,
        }],
    }
}

/// Polls `cond` until it holds; fails the test after a generous bound.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..3000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gave up waiting until {what}");
}

struct Running {
    outbox: Arc<Spool>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start(settings: SenderSettings) -> Self {
        Self::start_with(settings, SpoolOptions::default())
    }

    fn start_with(settings: SenderSettings, options: SpoolOptions) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let outbox = Arc::new(Spool::open(dir.path(), options).expect("open spool"));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(Sender::new(settings, Arc::clone(&outbox)).run(stop_rx));
        Self {
            outbox,
            stop,
            task,
            _dir: dir,
        }
    }

    fn push(&self, seqs: impl IntoIterator<Item = u64>) {
        for seq in seqs {
            self.outbox.push(entry(seq)).expect("push to outbox");
        }
    }

    async fn shutdown(self) {
        self.stop.send(true).expect("sender still running");
        self.task.await.expect("sender task");
    }
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

#[tokio::test]
async fn batches_arrive_in_order_and_are_retried_after_unavailable() {
    install_crypto();
    let pki = TestPki::new();
    let shared = Arc::new(Shared::default());
    shared.unavailable.store(3, Ordering::SeqCst);
    let listener = listener().await;
    let addr = listener.local_addr().expect("addr");
    let server = TestServer::start(&pki, listener, Arc::clone(&shared)).await;

    let sender = Running::start(settings(&pki, addr));
    sender.push(1..=5);
    wait_until("5 batches arrived", || shared.received_seqs().len() == 5).await;

    assert_eq!(shared.received_seqs(), [1, 2, 3, 4, 5]);
    for (seq, got) in lock(&shared.received).iter() {
        assert_eq!(got, &batch(*seq), "payload of seq {seq} intact");
    }
    // The first batch was tried three times in vain before it got through.
    assert_eq!(lock(&shared.attempts).as_slice(), [1, 1, 1, 1, 2, 3, 4, 5]);
    wait_until("outbox drained", || sender.outbox.stats().queued == 0).await;
    let stats = sender.outbox.stats();
    assert_eq!(
        (stats.acked, stats.quarantined, stats.dropped_batches),
        (5, 0, 0)
    );

    // Later pushes keep flowing on the same connection.
    sender.push(6..=7);
    wait_until("7 batches arrived", || shared.received_seqs().len() == 7).await;
    assert_eq!(shared.received_seqs(), [1, 2, 3, 4, 5, 6, 7]);
    sender.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn nothing_is_lost_while_ingest_is_down() {
    install_crypto();
    let pki = TestPki::new();
    let shared = Arc::new(Shared::default());
    // Take a port, then free it: ingest is "down" until something listens there.
    let addr = listener().await.local_addr().expect("addr");

    let sender = Running::start(settings(&pki, addr));
    sender.push(1..=3);
    // Let the sender fail against the closed port a few times.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sender.outbox.stats().queued, 3);

    let listener = TcpListener::bind(addr).await.expect("rebind the port");
    let server = TestServer::start(&pki, listener, Arc::clone(&shared)).await;
    sender.push(4..=5);
    wait_until("5 batches arrived", || shared.received_seqs().len() == 5).await;
    assert_eq!(shared.received_seqs(), [1, 2, 3, 4, 5]);

    // Ingest goes away again and comes back: still nothing lost.
    server.stop().await;
    sender.push(6..=8);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listener = TcpListener::bind(addr).await.expect("rebind the port");
    let server = TestServer::start(&pki, listener, Arc::clone(&shared)).await;
    wait_until("8 batches arrived", || shared.received_seqs().len() == 8).await;
    assert_eq!(shared.received_seqs(), [1, 2, 3, 4, 5, 6, 7, 8]);
    let stats = sender.outbox.stats();
    assert_eq!((stats.dropped_batches, stats.quarantined), (0, 0));
    sender.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn an_invalid_batch_is_dropped_and_later_ones_still_arrive() {
    install_crypto();
    let pki = TestPki::new();
    let shared = Arc::new(Shared::default());
    lock(&shared.reject).insert(2);
    let listener = listener().await;
    let addr = listener.local_addr().expect("addr");
    let server = TestServer::start(&pki, listener, Arc::clone(&shared)).await;

    let sender = Running::start(settings(&pki, addr));
    sender.push(1..=4);
    wait_until("3 batches arrived", || shared.received_seqs().len() == 3).await;
    wait_until("outbox drained", || sender.outbox.stats().queued == 0).await;

    assert_eq!(shared.received_seqs(), [1, 3, 4]);
    // Refused once, never retried.
    assert_eq!(lock(&shared.attempts).as_slice(), [1, 2, 3, 4]);
    let stats = sender.outbox.stats();
    assert_eq!((stats.acked, stats.quarantined), (3, 1));
    // The refused batch is kept in quarantine with the reason, once.
    let file = sender
        .outbox
        .dir()
        .join("quarantine")
        .join(format!("batch-{:020}.rec", 2));
    let kept = std::fs::read(&file).expect("quarantined batch file");
    let first_line = kept.split(|b| *b == b'\n').next().expect("a line");
    let first_line = String::from_utf8_lossy(first_line);
    assert!(
        first_line.contains("seq=2") && first_line.contains("seq 2 is bad"),
        "{first_line}"
    );
    sender.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_batch_is_dropped_not_retried_forever() {
    install_crypto();
    let pki = TestPki::new();
    let shared = Arc::new(Shared::default());
    lock(&shared.too_large).insert(1);
    let listener = listener().await;
    let addr = listener.local_addr().expect("addr");
    let server = TestServer::start(&pki, listener, Arc::clone(&shared)).await;

    let sender = Running::start(settings(&pki, addr));
    sender.push(1..=3);
    wait_until("outbox drained", || sender.outbox.stats().queued == 0).await;

    assert_eq!(shared.received_seqs(), [2, 3]);
    assert_eq!(lock(&shared.attempts).as_slice(), [1, 2, 3]);
    let stats = sender.outbox.stats();
    assert_eq!((stats.acked, stats.quarantined), (2, 1));
    sender.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn a_long_outage_keeps_the_newest_batches_and_counts_the_rest() {
    install_crypto();
    let pki = TestPki::new();
    let shared = Arc::new(Shared::default());
    let addr = listener().await.local_addr().expect("addr");

    // A spool of 8 KiB holds only a few dozen of these batches.
    let options = SpoolOptions {
        max_bytes: 8 << 10,
        ..SpoolOptions::default()
    };
    let sender = Running::start_with(settings(&pki, addr), options);
    sender.push(1..=300);
    let stats = sender.outbox.stats();
    assert!(stats.dropped_batches > 0, "{stats:?}");
    assert_eq!(stats.dropped_samples, stats.dropped_batches);
    assert!(stats.queued_bytes <= 8 << 10, "{stats:?}");
    let kept = stats.queued as u64;
    assert_eq!(kept + stats.dropped_batches, 300, "{stats:?}");

    let listener = TcpListener::bind(addr).await.expect("rebind the port");
    let server = TestServer::start(&pki, listener, Arc::clone(&shared)).await;
    wait_until("the kept batches arrived", || {
        shared.received_seqs().len() as u64 == kept
    })
    .await;
    // The oldest were dropped: exactly the newest `kept` arrive, in order.
    assert_eq!(
        shared.received_seqs(),
        (300 - kept + 1..=300).collect::<Vec<_>>()
    );
    sender.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn a_window_of_pushes_is_in_flight_and_acks_may_come_out_of_order() {
    install_crypto();
    let pki = TestPki::new();
    let shared = Arc::new(Shared::default());
    // Seq 1 is answered only after seq 4 arrived: impossible one at a time.
    *lock(&shared.hold) = Some((1, 4));
    let listener = listener().await;
    let addr = listener.local_addr().expect("addr");
    let server = TestServer::start(&pki, listener, Arc::clone(&shared)).await;

    let mut settings = settings(&pki, addr);
    settings.window = 4;
    let sender = Running::start(settings);
    sender.push(1..=4);
    wait_until("outbox drained", || sender.outbox.stats().queued == 0).await;
    let received = shared.received_seqs();
    assert_eq!(
        received.last(),
        Some(&1),
        "seq 1 was acked last: {received:?}"
    );
    let mut sorted = received.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [1, 2, 3, 4]);
    // Every batch was pushed once: no resend after the out-of-order acks.
    let mut attempts = lock(&shared.attempts).clone();
    attempts.sort_unstable();
    assert_eq!(attempts, [1, 2, 3, 4]);
    assert_eq!(sender.outbox.stats().acked, 4);

    // After a disconnect the window resumes from the oldest unacked batch.
    server.stop().await;
    sender.push(5..=9);
    let listener = TcpListener::bind(addr).await.expect("rebind the port");
    let server = TestServer::start(&pki, listener, Arc::clone(&shared)).await;
    wait_until("9 batches arrived", || shared.received_seqs().len() == 9).await;
    let mut sorted = shared.received_seqs();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=9).collect::<Vec<_>>());
    sender.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn stopping_flushes_what_is_queued() {
    install_crypto();
    let pki = TestPki::new();
    let shared = Arc::new(Shared::default());
    let listener = listener().await;
    let addr = listener.local_addr().expect("addr");
    let server = TestServer::start(&pki, listener, Arc::clone(&shared)).await;

    let sender = Running::start(settings(&pki, addr));
    sender.push(1..=20);
    // Stop right away: run() returns only after the final flush.
    sender.shutdown().await;
    assert_eq!(shared.received_seqs(), (1..=20).collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test]
async fn stopping_gives_up_after_the_flush_timeout_when_ingest_is_down() {
    install_crypto();
    let pki = TestPki::new();
    let addr = listener().await.local_addr().expect("addr");
    let mut settings = settings(&pki, addr);
    settings.flush_timeout = Duration::from_millis(200);

    let sender = Running::start(settings);
    sender.push(1..=2);
    let outbox = Arc::clone(&sender.outbox);
    sender.shutdown().await;
    assert_eq!(outbox.stats().queued, 2, "nothing could be delivered");
}

#[tokio::test]
async fn a_server_with_a_certificate_from_another_ca_is_not_trusted() {
    install_crypto();
    let pki = TestPki::new();
    let impostor = TestPki::new();
    let shared = Arc::new(Shared::default());
    let listener = listener().await;
    let addr = listener.local_addr().expect("addr");
    // The impostor's server cert, but it trusts our agents' CA.
    let server = TestServer::start(
        &TestPki {
            dir: tempfile::tempdir().expect("temp dir"),
            ca_pem: pki.ca_pem.clone(),
            server_cert_pem: impostor.server_cert_pem.clone(),
            server_key_pem: impostor.server_key_pem.clone(),
        },
        listener,
        Arc::clone(&shared),
    )
    .await;

    let mut settings = settings(&pki, addr);
    settings.flush_timeout = Duration::from_millis(100);
    let sender = Running::start(settings);
    sender.push(1..=2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(lock(&shared.attempts).is_empty(), "handshake must fail");
    assert_eq!(sender.outbox.stats().queued, 2, "kept for later");
    sender.shutdown().await;
    server.stop().await;
}

/// A batch of a database sample that changes like a real one from `seq`
/// to `seq`, which is worth coding as a delta.
fn database_entry(seq: u64) -> OutboxEntry {
    use lasect_proto::v1::sample::Family;
    use lasect_proto::v1::{DatabaseRow, DatabaseSnapshot};
    let step = i64::try_from(seq).expect("small");
    let batch = SampleBatch {
        samples: vec![Sample {
            instance: "main".into(),
            time_unix_micros: 1_700_000_000_000_000 + step * 10_000_000,
            family: Some(Family::Database(DatabaseSnapshot {
                databases: (0..20)
                    .map(|i| DatabaseRow {
                        datid: 16_384 + i,
                        datname: format!("app_{i}"),
                        xact_commit: Some(1_000_000 + step * 1_234 + i64::from(i)),
                        blks_hit: Some(50_000_000 + step * 98_765),
                        ..Default::default()
                    })
                    .collect(),
            })),
        }],
    };
    entry_of(seq, &batch)
}

/// Against an ingest that keeps bases, batches go as delta pushes and
/// arrive exactly as spooled. When ingest loses its bases (as after a
/// restart the channel reconnects to on its own), the refused delta push
/// is sent again whole at once, and deltas resume.
#[tokio::test]
async fn delta_pushes_arrive_intact_and_a_lost_base_costs_one_whole_resend() {
    install_crypto();
    let pki = TestPki::new();
    let shared = Arc::new(Shared::default());
    shared.keep_bases.store(true, Ordering::SeqCst);
    let listener = listener().await;
    let addr = listener.local_addr().expect("addr");
    let ingest = TestServer::start(&pki, listener, Arc::clone(&shared)).await;
    let metrics = Arc::new(lasect_agent::metrics::AgentMetrics::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let outbox = Arc::new(Spool::open(dir.path(), SpoolOptions::default()).expect("open spool"));
    let (stop, stop_rx) = watch::channel(false);
    let sender =
        Sender::new(settings(&pki, addr), Arc::clone(&outbox)).with_metrics(Arc::clone(&metrics));
    let task = tokio::spawn(sender.run(stop_rx));

    for seq in 1..=6 {
        outbox.push(database_entry(seq)).expect("push");
        wait_until("the batch arrives", || {
            shared.received_seqs().contains(&seq)
        })
        .await;
    }
    assert!(
        metrics.delta_sent.get() >= 3,
        "{}",
        metrics.delta_sent.get()
    );
    assert_eq!(metrics.delta_resent.get(), 0);
    // Ingest forgets everything it kept.
    *lock(&shared.bases) = Default::default();
    for seq in 7..=10 {
        outbox.push(database_entry(seq)).expect("push");
        wait_until("the batch arrives", || {
            shared.received_seqs().contains(&seq)
        })
        .await;
    }
    assert_eq!(metrics.delta_resent.get(), 1, "one refused delta push");
    let deltas = lock(&shared.delta_attempts).clone();
    assert!(
        deltas.contains(&7),
        "seq 7 went as a delta first: {deltas:?}"
    );
    assert!(deltas.iter().any(|s| *s > 8), "deltas resumed: {deltas:?}");
    // Every batch arrived once, exactly as spooled.
    assert_eq!(shared.received_seqs(), (1..=10).collect::<Vec<_>>());
    for (seq, batch) in lock(&shared.received).iter() {
        let spooled = payload::decode(
            database_entry(*seq).batch.codec as i32,
            database_entry(*seq).batch.uncompressed_size,
            &database_entry(*seq).batch.payload,
            1 << 20,
        )
        .expect("decode");
        assert_eq!(batch, &spooled, "seq {seq}");
    }
    stop.send(true).expect("sender running");
    task.await.expect("sender task");
    ingest.stop().await;
}
