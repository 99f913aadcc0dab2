//! Faults between agent and store, with the real binaries: the store
//! restarted while ingest writes, and ingest unreachable for a while (a
//! network cut through [`ChaosProxy`]). The agent samples every second and
//! keeps sampling through the fault; each test ends by checking that what
//! it produced is in the store exactly once (no duplicate sample keys) and
//! without gaps (consecutive `host_cpu` times of the agent at most ~2
//! intervals apart, across the outage).

use std::time::{Duration, Instant};

use lasect_e2e::Stack;
use lasect_testkit::{ChaosProxy, ChildGuard, PgCluster, PgOptions};

const AGENT_ID: &str = "fault-agent";
/// Bound on every wait for an outcome; not a timing assertion.
const BOUND: Duration = Duration::from_secs(120);
/// How long each fault lasts (the agent keeps sampling meanwhile).
const OUTAGE: Duration = Duration::from_secs(5);
/// The agent samples every second; a hole is a gap above ~2 intervals.
const MAX_GAP_SECS: f64 = 2.5;

/// The shared [`Stack`] with a running ingest and the monitored cluster; the
/// agent is started by each test (pointing at ingest or at a proxy).
struct Faults {
    // Field order is drop order: processes before the clusters they use.
    agent: Option<ChildGuard>,
    ingest: ChildGuard,
    monitored: PgCluster,
    stack: Stack,
}

impl std::ops::Deref for Faults {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.stack
    }
}

impl Faults {
    async fn start() -> Self {
        let stack = Stack::new(AGENT_ID).await;
        let monitored = PgCluster::start(PgOptions::default()).expect("monitored cluster");
        let ingest = stack.start_ingest("[store]\npool_size = 2\n");
        Self {
            agent: None,
            ingest,
            monitored,
            stack,
        }
    }

    /// Starts the agent, sampling every second, pushing to `port`.
    fn start_agent(&mut self, port: u16) {
        self.stack.agent_config(
            port,
            &format!(
                "[collect]\ninterval_secs = 1\n[[instances]]\nname = \"monitored\"\ndsn = \"{}\"\n",
                self.monitored.dsn("postgres")
            ),
        );
        self.agent = Some(self.stack.start_agent(&[]));
    }

    /// Waits until the agent has at least `n` stored `host_cpu` samples.
    async fn wait_for_samples(&self, n: i64) {
        let store = self.store().await;
        let start = Instant::now();
        loop {
            let stored: i64 = store
                .query_one(
                    "SELECT count(*) FROM metric_host_cpu WHERE agent_id = $1",
                    &[&AGENT_ID],
                )
                .await
                .map(|r| r.get(0))
                .unwrap_or(0);
            if stored >= n {
                return;
            }
            assert!(start.elapsed() < BOUND, "only {stored} samples stored");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until samples up to `until` + 2 s are stored and those up to
    /// `until` have no gap, then stops the agent and checks that nothing
    /// was stored twice.
    async fn expect_complete_and_exactly_once(&mut self, fault_start: &str, until: &str) {
        let store = self.store().await;
        let start = Instant::now();
        loop {
            let row = store
                .query_one(
                    "WITH s AS (
                         SELECT time, time - lag(time) OVER (ORDER BY time) AS gap
                         FROM metric_host_cpu WHERE agent_id = $1)
                     SELECT coalesce(max(extract(epoch FROM gap)) FILTER (
                                WHERE time <= $2::text::timestamptz), 0)::float8,
                            coalesce(max(time) >= $2::text::timestamptz + interval '2 s', false),
                            count(*) FILTER (WHERE time > $3::text::timestamptz
                                               AND time < $2::text::timestamptz)
                     FROM s",
                    &[&AGENT_ID, &until, &fault_start],
                )
                .await
                .expect("gap query");
            let (max_gap, past_until, during): (f64, bool, i64) =
                (row.get(0), row.get(1), row.get(2));
            if past_until && max_gap <= MAX_GAP_SECS {
                // Samples taken during the fault were delivered afterwards.
                assert!(during >= 3, "only {during} samples from the outage");
                break;
            }
            assert!(
                start.elapsed() < BOUND,
                "backlog not delivered without gaps: max gap {max_gap} s, \
                 caught up: {past_until}, {during} samples from the outage"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if let Some(agent) = self.agent.as_mut() {
            agent.terminate(Duration::from_secs(30));
        }
        for (what, sql) in [
            (
                "database samples",
                "SELECT time, instance_id, datname, count(*) FROM metric_database
                 GROUP BY 1, 2, 3 HAVING count(*) > 1",
            ),
            (
                "host_cpu samples",
                "SELECT time, agent_id, count(*) FROM metric_host_cpu
                 GROUP BY 1, 2 HAVING count(*) > 1",
            ),
            (
                "host_memory samples",
                "SELECT time, agent_id, count(*) FROM metric_host_memory
                 GROUP BY 1, 2 HAVING count(*) > 1",
            ),
        ] {
            let dups = store.query(sql, &[]).await.expect("duplicate query");
            assert!(
                dups.is_empty(),
                "{} {what} stored more than once",
                dups.len()
            );
        }
    }
}

async fn store_now(store: &tokio_postgres::Client) -> String {
    store
        .query_one("SELECT now()::text", &[])
        .await
        .expect("read the store clock")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_restart_while_ingest_writes_loses_and_duplicates_nothing() {
    let _load = crate::support::fault_test().await;
    let mut stack = Faults::start().await;
    stack.start_agent(stack.ingest_port);
    stack.wait_for_samples(3).await;
    let fault_start = store_now(&stack.store().await).await;

    stack.store_pg.stop().expect("stop the store (immediate)");
    stack
        .ingest
        .wait_for_line("store unavailable", BOUND)
        .expect("ingest answers UNAVAILABLE while the store is down");
    tokio::time::sleep(OUTAGE).await;
    stack.store_pg.restart().expect("restart the store");

    let until = store_now(&stack.store().await).await;
    stack
        .expect_complete_and_exactly_once(&fault_start, &until)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_unreachable_for_a_while_loses_and_duplicates_nothing() {
    let _load = crate::support::fault_test().await;
    let mut stack = Faults::start().await;
    let proxy = ChaosProxy::start(
        format!("127.0.0.1:{}", stack.ingest_port)
            .parse()
            .expect("addr"),
    )
    .await
    .expect("start proxy");
    stack.start_agent(proxy.addr().port());
    stack.wait_for_samples(3).await;
    let store = stack.store().await;
    let fault_start = store_now(&store).await;

    proxy.cut();
    tokio::time::sleep(OUTAGE).await;
    proxy.restore();

    let until = store_now(&store).await;
    stack
        .expect_complete_and_exactly_once(&fault_start, &until)
        .await;
}
