//! Agent enrollment through the real binaries: `lasect-agent enroll` with a
//! token, the running agent on its enrolled identity, refused tokens and
//! identities, a disabled agent cut off, and renewal of a short-lived
//! certificate across an ingest restart.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use lasect_e2e::Stack;
use lasect_testkit::ChildGuard;

/// Deadline of each wait (not a timing assertion).
const BOUND: Duration = Duration::from_secs(60);
/// The bound for cutting off a disabled agent.
const REFUSAL_BOUND: Duration = Duration::from_secs(30);

/// The agent config body: the store cluster itself is the monitored instance.
fn agent_body(stack: &Stack) -> String {
    format!(
        "[collect]\ninterval_secs = 1\n[[instances]]\nname = \"main\"\ndsn = \"{}\"\n",
        stack.store_pg.dsn("postgres")
    )
}

fn ingest_toml(stack: &Stack, validity_secs: u64) -> String {
    format!(
        "{}[agents]\nrefresh_interval_secs = 1\n",
        stack.enrollment_toml(validity_secs)
    )
}

async fn count(store: &tokio_postgres::Client, sql: &str, agent: &str) -> i64 {
    store
        .query_one(sql, &[&agent])
        .await
        .expect("count query")
        .get(0)
}

const BATCHES: &str = "SELECT count(*) FROM ingest_batches WHERE agent_id = $1";
const RENEWALS: &str =
    "SELECT count(*) FROM agent_certificates WHERE agent_id = $1 AND reason = 'renew'";

/// Waits until `sql` counts at least `at_least` for `agent`; returns the count.
async fn wait_count(store: &tokio_postgres::Client, sql: &str, agent: &str, at_least: i64) -> i64 {
    let start = Instant::now();
    loop {
        let n = count(store, sql, agent).await;
        if n >= at_least {
            return n;
        }
        assert!(
            start.elapsed() < BOUND,
            "{sql} for {agent} stayed at {n} < {at_least} for {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn refused(out: &std::process::Output, reason: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "enrollment succeeded: {}",
        stdout(out)
    );
    assert!(stderr.contains(reason), "{reason:?} not in: {stderr}");
}

fn lines_with(child: &ChildGuard, needle: &str) -> usize {
    child.lines().iter().filter(|l| l.contains(needle)).count()
}

/// Waits until `child` has printed more than `seen` lines containing `needle`.
async fn wait_more_lines(child: &ChildGuard, needle: &str, seen: usize, bound: Duration) {
    let start = Instant::now();
    while lines_with(child, needle) <= seen {
        assert!(
            start.elapsed() < bound,
            "no new {needle:?} within {bound:?}:\n{}",
            child.lines().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolled_agent_pushes_and_a_disabled_one_is_cut_off() {
    const ID: &str = "db-enrolled";
    let stack = Stack::new("ca-agent").await;
    let ingest = stack.start_ingest(&ingest_toml(&stack, 7 * 86_400));
    let store = stack.store().await;

    let token = stack.enrollment_token(None, 1, "1 hour").await;
    let out = stack.enroll(&token, ID, &stack.agent_state());
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains(&format!("enrolled as agent {ID}")),
        "{out:?}"
    );
    let identity = stack.agent_state().join("identity");
    assert_eq!(mode(&identity.join("agent.key")), 0o600);
    assert_eq!(mode(&identity), 0o700);

    stack.enrolled_agent_config(stack.ingest_port, &agent_body(&stack));
    let mut agent = stack.start_agent(&[]);
    agent
        .wait_for_line("enrolled identity", BOUND)
        .expect("the agent uses its enrolled identity");
    wait_count(&store, BATCHES, ID, 2).await;
    let metric_rows = "SELECT count(*) FROM metric_database d JOIN instances i ON i.id = d.instance_id WHERE i.agent_id = $1";
    wait_count(&store, metric_rows, ID, 1).await;
    // What the agent reports lands on its row (written every refresh).
    let reported = "SELECT count(*) FROM agents WHERE id = $1 AND hostname IS NOT NULL \
                    AND version IS NOT NULL AND spool_backlog_batches IS NOT NULL \
                    AND spool_backlog_bytes IS NOT NULL AND enrolled_at IS NOT NULL \
                    AND cert_not_after > now() + interval '6 days'";
    wait_count(&store, reported, ID, 1).await;

    // The single-use token is spent; another agent's identity is refused;
    // expired and garbage tokens are refused, each with its reason.
    let elsewhere = stack.path("other-state");
    refused(&stack.enroll(&token, "db-other", &elsewhere), "used up");
    let fresh = stack.enrollment_token(None, 1, "1 hour").await;
    refused(&stack.enroll(&fresh, ID, &elsewhere), "already taken");
    let expired = stack.enrollment_token(None, 1, "-1 minute").await;
    refused(&stack.enroll(&expired, "db-other", &elsewhere), "expired");
    refused(
        &stack.enroll("lset_garbage", "db-other", &elsewhere),
        "malformed enrollment token",
    );
    assert!(
        !elsewhere.join("identity").exists(),
        "nothing stored on refusal"
    );

    // Disabled: the running agent is cut off (open connection closed, new
    // handshakes refused) within the bound; its data stays.
    let refusal = format!("refused a handshake of a disabled agent agent={ID}");
    store
        .execute(
            "UPDATE agents SET disabled_at = now(), disabled_by = 'test' WHERE id = $1",
            &[&ID],
        )
        .await
        .expect("disable the agent");
    wait_more_lines(&ingest, &refusal, 0, REFUSAL_BOUND).await;
    // A push committed just before the cut may still be finishing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stored = count(&store, BATCHES, ID).await;
    assert!(stored >= 2);
    assert!(count(&store, metric_rows, ID).await >= 1, "its data stays");

    // Reconnecting is refused too: a restarted agent cannot deliver, and
    // nothing more is stored. (With TLS 1.3 the client has finished its side
    // of the handshake when ingest refuses the certificate, so the agent may
    // see the alert or only the closed connection; ingest logs the reason.)
    drop(agent);
    let seen = lines_with(&ingest, &refusal);
    let restarted = stack.start_agent(&[]);
    wait_more_lines(&ingest, &refusal, seen, REFUSAL_BOUND).await;
    wait_more_lines(&restarted, "cannot deliver to ingest", 0, REFUSAL_BOUND).await;
    assert_eq!(
        count(&store, BATCHES, ID).await,
        stored,
        "nothing stored after the refusal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_certificate_is_renewed_across_an_ingest_restart() {
    const ID: &str = "db-renewing";
    let stack = Stack::new("ca-agent").await;
    // 20 s certificates: renewed about every 12 s.
    let mut ingest = stack.start_ingest(&ingest_toml(&stack, 20));
    let store = stack.store().await;
    let token = stack.enrollment_token(Some(ID), 1, "10 minutes").await;
    let out = stack.enroll(&token, ID, &stack.agent_state());
    assert!(out.status.success(), "{out:?}");

    stack.enrolled_agent_config(stack.ingest_port, &agent_body(&stack));
    let agent = stack.start_agent(&[]);
    wait_count(&store, BATCHES, ID, 1).await;
    wait_count(&store, RENEWALS, ID, 1).await;

    // A new ingest process (nothing of the old one survives) renews next.
    ingest.terminate(Duration::from_secs(10));
    drop(ingest);
    let _ingest = stack.start_ingest(&ingest_toml(&stack, 20));
    let renewed = count(&store, RENEWALS, ID).await;
    wait_count(&store, RENEWALS, ID, renewed + 1).await;

    // And the agent keeps pushing with the renewed certificate, past the
    // expiry of the first ones.
    let batches = count(&store, BATCHES, ID).await;
    wait_count(&store, BATCHES, ID, batches + 3).await;
    // Renewed twice, and the new certificate was swapped into the running
    // sender (no restart).
    assert!(
        lines_with(&agent, "certificate renewed") >= 2,
        "{}",
        agent.lines().join("\n")
    );
    assert!(
        lines_with(&agent, "connecting again with the renewed certificate") >= 1,
        "{}",
        agent.lines().join("\n")
    );
    let identity = stack.agent_state().join("identity");
    assert_eq!(mode(&identity.join("agent.key")), 0o600);
    let generations = std::fs::read_dir(stack.agent_state())
        .expect("list state dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("identity."))
        .count();
    assert_eq!(generations, 1, "old identities are removed");
}
