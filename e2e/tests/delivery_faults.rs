//! Delivery under faults, with the real binaries (`lasect-ingest`,
//! `lasect-agent`), a real store cluster and a monitored cluster, sampling
//! every second:
//!
//! - the agent killed with SIGKILL again and again, then restarted;
//! - ingest killed with SIGKILL and restarted while the agent pushes;
//! - no batch seq can be reserved (lost batches are counted, not hidden);
//! - the spool at its size limit while ingest is down (the oldest batches
//!   dropped and counted, nothing else lost).
//!
//! Each ends by checking that every batch the agent spooled (it logs each
//! spooled seq at debug level) is stored, that no sample is stored twice,
//! and that sample times have no gaps except while the agent itself was dead.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use lasect_e2e::Stack;
use lasect_testkit::{ChildGuard, PgCluster, PgOptions, free_port};

const AGENT_ID: &str = "fault-agent";
const BOUND: Duration = Duration::from_secs(90);
/// Largest step between consecutive samples (1 s interval) that is not a
/// gap: generous, since a loaded test machine delays ticks.
const MAX_STEP: Duration = Duration::from_secs(6);

/// The shared [`Stack`], the monitored cluster and the agent's metrics port.
struct Setup {
    monitored: PgCluster,
    metrics_port: u16,
    stack: Stack,
}

impl std::ops::Deref for Setup {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.stack
    }
}

impl Setup {
    async fn new() -> Self {
        Self::with("", "").await
    }

    /// The agent's config gets `spool` appended to its `[spool]` table and
    /// `tables` (whole TOML tables) before its instances.
    async fn with(spool: &str, tables: &str) -> Self {
        let setup = Self {
            monitored: PgCluster::start(PgOptions::default()).expect("monitored cluster"),
            metrics_port: free_port(),
            stack: Stack::new(AGENT_ID).await,
        };
        setup.write_agent_config(spool, tables);
        setup
    }

    /// (Re)writes `agent.toml`; an agent started afterwards reads it.
    fn write_agent_config(&self, spool: &str, tables: &str) {
        self.stack.agent_config(
            self.stack.ingest_port,
            &format!(
                "[collect]\ninterval_secs = 1\n\
                 [sender]\nwindow = 4\n\
                 [spool]\nfsync = \"every_batch\"\n{spool}\
                 [metrics]\nlisten = \"127.0.0.1:{}\"\n\
                 {tables}\
                 [[instances]]\nname = \"monitored\"\ndsn = \"{}\"\n",
                self.metrics_port,
                self.monitored.dsn("postgres"),
            ),
        );
    }

    fn start_agent(&self) -> ChildGuard {
        self.stack
            .start_agent(&[("LASECT_LOG", "info,lasect_agent::run=debug")])
    }
}

/// Seqs the agent logged as spooled.
fn spooled(agent: &ChildGuard) -> BTreeSet<u64> {
    agent
        .lines()
        .iter()
        .filter(|l| l.contains("batch spooled"))
        .filter_map(|l| {
            let rest = &l[l.find(" seq=")? + 5..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

async fn wait_spooled(agent: &ChildGuard, at_least: usize) {
    let start = Instant::now();
    while spooled(agent).len() < at_least {
        assert!(
            start.elapsed() < BOUND,
            "agent spooled only {:?} within {BOUND:?}",
            spooled(agent)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stored_seqs(store: &tokio_postgres::Client) -> BTreeSet<u64> {
    store
        .query(
            "SELECT seq FROM ingest_batches WHERE agent_id = $1",
            &[&AGENT_ID],
        )
        .await
        .map(|rows| {
            rows.iter()
                .map(|r| u64::try_from(r.get::<_, i64>(0)).expect("positive seq"))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until every spooled seq is stored, then checks the store.
async fn check_exactly_once(
    store: &tokio_postgres::Client,
    spooled: &BTreeSet<u64>,
    agent_down: &[(SystemTime, SystemTime)],
) {
    assert!(!spooled.is_empty());
    let start = Instant::now();
    loop {
        let stored = stored_seqs(store).await;
        let missing: Vec<u64> = spooled.difference(&stored).copied().collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < BOUND,
            "spooled batches never stored: {missing:?} (stored {stored:?})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    assert_no_sample_twice(store).await;

    // No gap in time, except across the agent's own downtime.
    let times: Vec<SystemTime> = store
        .query(
            "SELECT time FROM metric_host_cpu WHERE agent_id = $1 ORDER BY time",
            &[&AGENT_ID],
        )
        .await
        .expect("times")
        .iter()
        .map(|r| r.get::<_, SystemTime>(0))
        .collect();
    assert!(
        times.len() >= spooled.len() / 2,
        "{} host samples",
        times.len()
    );
    for pair in times.windows(2) {
        let step = pair[1].duration_since(pair[0]).unwrap_or_default();
        if step <= MAX_STEP {
            continue;
        }
        let explained = agent_down
            .iter()
            .any(|(killed, restarted)| pair[0] <= *restarted && *killed <= pair[1]);
        assert!(
            explained,
            "gap of {step:?} after {:?} while the agent was running",
            pair[0]
        );
    }
}

/// No sample key (database row, host sample) is stored twice.
async fn assert_no_sample_twice(store: &tokio_postgres::Client) {
    for (family, sql) in [
        (
            "database",
            "SELECT time::text, instance_id, datname, count(*) FROM metric_database
             WHERE instance_id IN (SELECT id FROM instances WHERE agent_id = $1)
             GROUP BY 1, 2, 3 HAVING count(*) > 1",
        ),
        (
            "host_cpu",
            "SELECT time::text, count(*) FROM metric_host_cpu WHERE agent_id = $1
             GROUP BY 1 HAVING count(*) > 1",
        ),
    ] {
        let dups = store
            .query(sql, &[&AGENT_ID])
            .await
            .expect("duplicate query");
        assert!(
            dups.is_empty(),
            "{} duplicated {family} samples",
            dups.len()
        );
    }
}

/// `GET /metrics` of the agent, over plain HTTP/1.1.
fn scrape(port: u16) -> String {
    use std::io::{Read as _, Write as _};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("send request");
    let mut text = String::new();
    conn.read_to_string(&mut text).expect("read response");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

fn state_dir(setup: &Setup) -> PathBuf {
    setup.agent_state()
}

fn spool_segments(state: &Path) -> usize {
    std::fs::read_dir(state.join("spool"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("seg-"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_repeatedly_loses_and_duplicates_nothing() {
    let _load = crate::support::fault_test().await;
    let setup = Setup::new().await;
    let mut ingest = Some(setup.start_ingest(""));
    let store = setup
        .store_pg
        .connect("lasect")
        .await
        .expect("connect store");

    let mut all_spooled = BTreeSet::new();
    let mut agent_down = Vec::new();
    for round in 0..4 {
        // In rounds 1 and 2 ingest is down, so the agent dies with a backlog
        // in its spool that only a replay after restart can deliver.
        if round == 1
            && let Some(mut i) = ingest.take()
        {
            i.kill();
        }
        if round == 3 {
            ingest = Some(setup.start_ingest(""));
        }
        let mut agent = setup.start_agent();
        // A few batches each life; the kill lands wherever the agent is,
        // possibly in the middle of a spool write or a push.
        wait_spooled(&agent, 3 + round).await;
        let killed = SystemTime::now();
        agent.kill();
        all_spooled.extend(spooled(&agent));
        // Restarted right away, as a supervisor would.
        agent_down.push((killed, SystemTime::now() + Duration::from_secs(2)));
    }
    let mut agent = setup.start_agent();
    wait_spooled(&agent, 3).await;
    check_exactly_once(&store, &all_spooled, &agent_down).await;
    agent.terminate(Duration::from_secs(10));
    all_spooled.extend(spooled(&agent));
    check_exactly_once(&store, &all_spooled, &agent_down).await;
    eprintln!(
        "agent killed {} times; {} spooled batches, all stored once",
        agent_down.len(),
        all_spooled.len()
    );
    drop(ingest);
    // Once everything is acknowledged, the spool holds at most the segment
    // that was being written.
    assert!(spool_segments(&state_dir(&setup)) <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_killed_and_restarted_while_the_agent_pushes() {
    let _load = crate::support::fault_test().await;
    let setup = Setup::new().await;
    let mut ingest = setup.start_ingest("");
    let store = setup
        .store_pg
        .connect("lasect")
        .await
        .expect("connect store");
    let mut agent = setup.start_agent();
    wait_spooled(&agent, 2).await;

    for _ in 0..2 {
        // Kill once batches are flowing, stay down a few ticks, come back.
        let before = spooled(&agent).len();
        ingest.kill();
        wait_spooled(&agent, before + 3).await;
        ingest = setup.start_ingest("");
        wait_spooled(&agent, before + 5).await;
    }
    // The agent's own figures tell the story too.
    let text = scrape(setup.metrics_port);
    assert!(
        metric(&text, "lasect_agent_send_retries_total") > 0.0,
        "{text}"
    );
    assert!(
        metric(&text, "lasect_agent_batches_acked_total") > 0.0,
        "{text}"
    );
    assert_eq!(metric(&text, "lasect_agent_dropped_batches_total"), 0.0);
    // Between restarts the agent sent deltas against what ingest kept
    // (a restarted ingest holds no bases: a delta push it cannot rebuild
    // is sent again whole, and counted).
    let deltas = metric(&text, "lasect_agent_delta_batches_sent_total");
    let resent = metric(&text, "lasect_agent_delta_batches_resent_total");
    assert!(deltas > resent, "{text}");
    agent.terminate(Duration::from_secs(10));
    let all = spooled(&agent);
    // The agent never died: no gap is excused.
    check_exactly_once(&store, &all, &[]).await;
    drop(ingest);
}

/// A batch collected while no seq can be reserved (the disk full when a
/// new block is due) never reaches the spool; it is counted in
/// `dropped_batches`/`dropped_samples` like a batch dropped for room, and
/// the agent spools again once the seq file is writable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_lost_for_want_of_a_seq_are_counted() {
    let _load = crate::support::fault_test().await;
    let setup = Setup::new().await;
    let _ingest = setup.start_ingest("");
    // The seq file is replaced through a temp file beside it; an immutable
    // state directory refuses that temp file, even to root. The spool and the
    // log offsets live in subdirectories, which stay writable.
    let state = state_dir(&setup);
    for sub in ["spool", "logs"] {
        std::fs::create_dir_all(state.join(sub)).expect("create a state subdirectory");
    }
    let blocker = Immutable::set(&state);
    let mut agent = setup.start_agent();

    let start = Instant::now();
    let (batches, samples) = loop {
        let text = scrape_when_up(setup.metrics_port).await;
        let batches = metric(&text, "lasect_agent_dropped_batches_total");
        if batches >= 3.0 {
            break (batches, metric(&text, "lasect_agent_dropped_samples_total"));
        }
        assert!(start.elapsed() < BOUND, "no lost batch counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(samples >= batches, "{samples} samples in {batches} batches");
    assert!(
        spooled(&agent).is_empty(),
        "nothing could have been spooled"
    );
    let errors = agent
        .lines()
        .iter()
        .filter(|l| l.contains("cannot reserve a batch seq"))
        .count();
    assert_eq!(errors, 1, "the condition is logged once, not per batch");

    drop(blocker);
    wait_spooled(&agent, 2).await;
    let text = scrape(setup.metrics_port);
    assert!(metric(&text, "lasect_agent_dropped_batches_total") >= batches);
    agent.terminate(Duration::from_secs(10));
}

/// A directory with the immutable attribute (`chattr +i`): nothing can be
/// created in it or renamed into it, not even by root, until the guard drops.
struct Immutable(PathBuf);

impl Immutable {
    fn set(dir: &Path) -> Self {
        let out = chattr("+i", dir).expect("run chattr (e2fsprogs)");
        assert!(
            out.status.success(),
            "chattr +i {}: {} (this test needs root and a file system with the \
             immutable attribute, such as ext4)",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Self(dir.to_owned())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        // Never a panic here: the test may be unwinding already.
        match chattr("-i", &self.0) {
            Ok(out) if out.status.success() => {}
            other => eprintln!("chattr -i {} failed: {other:?}", self.0.display()),
        }
    }
}

fn chattr(flag: &str, dir: &Path) -> std::io::Result<std::process::Output> {
    std::process::Command::new("chattr")
        .arg(flag)
        .arg(dir)
        .output()
}

/// [`scrape`] once the agent's metrics endpoint listens.
async fn scrape_when_up(port: u16) -> String {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < BOUND, "agent metrics never listened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scrape(port)
}

/// The spool at its size limit (64 KiB, the smallest allowed) while ingest
/// is unreachable: the oldest metrics batches are dropped and counted, and
/// once ingest is up every batch that was not dropped is stored exactly
/// once. The dropped ones are the oldest: every stored seq is above every
/// dropped one. The drain happens after a restart with a larger spool, and
/// the lifetime counters carry over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_drops_the_oldest_batches_counts_them_and_loses_nothing_else() {
    let _load = crate::support::fault_test().await;
    // 300 random custom values per second (a few kB a batch) fill the
    // spool quickly.
    let filler = "[[collect.custom]]\nname = \"filler\"\ninterval_secs = 1\n\
         sql = \"SELECT g AS k, random() AS v FROM generate_series(1, 300) g\"\n\
         labels = [\"k\"]\nvalues = [\"v\"]\n";
    let setup = Setup::with("max_bytes = 65536\n", filler).await;
    let (stack, metrics_port) = (&setup.stack, setup.metrics_port);
    let store = stack
        .store_pg
        .connect("lasect")
        .await
        .expect("connect store");
    // Ingest is down from the start: everything stays in the spool.
    let mut full = setup.start_agent();
    let start = Instant::now();
    loop {
        let text = scrape_when_up(metrics_port).await;
        if metric(&text, "lasect_agent_dropped_batches_total") >= 3.0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "the spool never filled:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let text = scrape(metrics_port);
    assert!(
        metric(&text, "lasect_agent_spool_bytes") <= 65536.0,
        "{text}"
    );
    // Every drop so far happened with nothing delivered. The drain runs on a
    // restarted agent with room to spare: were the spool still full, a new
    // batch could evict the segment of batches in flight, whose acks then
    // store them after newer ones were dropped, and the order could not be
    // checked. The counters are lifetime figures and survive the restart.
    full.terminate(Duration::from_secs(10));
    let mut settled = spooled(&full);
    setup.write_agent_config("max_bytes = 67108864\n", filler);
    let _ingest = stack.start_ingest("");
    let mut agent = setup.start_agent();
    // Drained: nothing left to send. The batches logged as spooled before
    // a scrape that finds the spool empty are all settled by then (stored
    // or dropped); later ones may still be in flight when the agent stops,
    // and with a window of pushes a newer one may be committed before an
    // older one, which then waits in the spool for the next start.
    let start = Instant::now();
    let text = loop {
        let before = spooled(&agent);
        let text = scrape_when_up(metrics_port).await;
        if metric(&text, "lasect_agent_spool_batches") == 0.0 {
            settled.extend(before);
            break text;
        }
        assert!(start.elapsed() < BOUND, "the spool never drained:\n{text}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let dropped = metric(&text, "lasect_agent_dropped_batches_total") as usize;
    agent.terminate(Duration::from_secs(10));
    let spooled: BTreeSet<u64> = spooled(&full).union(&spooled(&agent)).copied().collect();
    let stored = stored_seqs(&store).await;
    assert!(
        stored.is_subset(&spooled),
        "stored seqs the agent never spooled"
    );
    let lost: BTreeSet<u64> = settled.difference(&stored).copied().collect();
    assert_eq!(
        lost.len(),
        dropped,
        "every batch not stored is counted as dropped"
    );
    let (Some(newest_lost), Some(oldest_stored)) = (lost.last(), stored.first()) else {
        panic!("expected both dropped and stored batches: {lost:?} {stored:?}");
    };
    assert!(
        newest_lost < oldest_stored,
        "the oldest batches go first: dropped {lost:?}, stored from {oldest_stored}"
    );
    assert_no_sample_twice(&store).await;
}
