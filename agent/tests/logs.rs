//! The `log` family against a real csvlog cluster, through the agent's
//! collector: multi-line statements (quoted newlines in CSV), auto_explain
//! plans (multi-line messages), offsets that survive a restart without
//! repeating events, and the per-round event cap with its drop count.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use lasect_agent::collect::Collector;
use lasect_agent::collect::schedule::FamilyKind;
use lasect_agent::config::{CollectConfig, Dsn, InstanceConfig, LogsConfig};
use lasect_proto::v1::LogSnapshot;
use lasect_proto::v1::sample::Family;
use lasect_testkit::{LogFormat, PgCluster, PgOptions};

fn collector(dsn: String, state_dir: &Path, logs: &LogsConfig) -> Collector {
    let instance = InstanceConfig {
        name: "main".into(),
        dsn: Dsn::new(dsn),
        run_dsn: None,
        allow_privileged_runs: false,
        intervals: BTreeMap::new(),
        max_connections: None,
        databases: None,
    };
    // Only `log` runs often; the rest once at the start.
    let intervals = FamilyKind::configurable()
        .filter(|f| *f != FamilyKind::Log)
        .map(|f| (f.name().to_owned(), 3600))
        .collect();
    let collect = CollectConfig {
        host: false,
        intervals,
        ..CollectConfig::default()
    };
    Collector::new(&[instance], &collect)
        .expect("collector")
        .with_logs(state_dir, logs)
}

/// The `log` samples of one tick.
async fn tick_logs(c: &mut Collector) -> Vec<LogSnapshot> {
    let tick = c.tick().await;
    assert!(tick.failures.is_empty(), "{:?}", tick.failures);
    tick.batch
        .samples
        .into_iter()
        .filter_map(|s| match s.family {
            Some(Family::Log(l)) => Some(l),
            _ => None,
        })
        .collect()
}

/// Ticks (about once a second) until `done` holds for what was collected.
async fn collect_until(
    c: &mut Collector,
    done: impl Fn(&[LogSnapshot]) -> bool,
) -> Vec<LogSnapshot> {
    let start = Instant::now();
    let mut all = Vec::new();
    loop {
        all.extend(tick_logs(c).await);
        if done(&all) {
            return all;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{all:?}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
}

fn statements(all: &[LogSnapshot]) -> Vec<String> {
    all.iter()
        .flat_map(|l| l.events.iter())
        .filter(|e| e.sqlstate == "22012")
        .map(|e| e.statement.clone())
        .collect()
}

async fn fail(client: &tokio_postgres::Client, sql: &str) {
    let e = client.simple_query(sql).await.expect_err("must fail");
    assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("22012"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csvlog_events_plans_offsets_and_caps() {
    let pg = PgCluster::start(PgOptions {
        log_format: Some(LogFormat::Csv),
        ..PgOptions::default()
    })
    .expect("cluster");
    let client = pg.connect("postgres").await.expect("connect");
    let state = tempfile::tempdir().expect("state dir");
    let logs = LogsConfig::default();

    let mut c = collector(pg.dsn("postgres"), state.path(), &logs);
    // First round: discovery; the server's history is not replayed.
    let first = tick_logs(&mut c).await;
    assert!(statements(&first).is_empty(), "{first:?}");

    fail(&client, "SELECT 1/0\n  AS lasect_first").await;
    for sql in [
        "LOAD 'auto_explain'",
        "SET auto_explain.log_min_duration = 0",
        "SELECT count(*) AS lasect_plan FROM pg_class WHERE relname = 'hidden'",
        "SET auto_explain.log_min_duration = -1",
    ] {
        client.batch_execute(sql).await.expect(sql);
    }
    let all = collect_until(&mut c, |all| {
        !statements(all).is_empty() && all.iter().any(|l| !l.plans.is_empty())
    })
    .await;
    assert_eq!(statements(&all), ["SELECT ?/?\n  AS lasect_first"]);
    let event = all
        .iter()
        .flat_map(|l| l.events.iter())
        .find(|e| e.sqlstate == "22012")
        .expect("event");
    assert_eq!(
        (
            event.severity.as_str(),
            event.message.as_str(),
            event.source.as_str()
        ),
        ("ERROR", "division by zero", "csvlog")
    );
    assert_eq!(
        (event.user_name.as_str(), event.database.as_str()),
        ("postgres", "postgres")
    );
    assert!(event.pid.is_some() && event.time_unix_micros.is_some());
    let plan = all
        .iter()
        .flat_map(|l| l.plans.iter())
        .find(|p| p.query_text.contains("lasect_plan"))
        .expect("plan");
    assert_eq!(
        plan.query_text,
        "SELECT count(*) AS lasect_plan FROM pg_class WHERE relname = ?"
    );
    assert!(
        plan.plan.contains("pg_class") && !plan.plan.contains("hidden"),
        "{}",
        plan.plan
    );
    assert!(plan.duration_ms.is_some());
    // The batch is spooled: the offsets are kept.
    c.spooled();
    drop(c);

    // A restart reads on from the saved offsets: only what came since.
    fail(&client, "SELECT 2/0 AS lasect_second").await;
    let mut c = collector(pg.dsn("postgres"), state.path(), &logs);
    let all = collect_until(&mut c, |all| !statements(all).is_empty()).await;
    assert_eq!(statements(&all), ["SELECT ?/? AS lasect_second"]);
    // Not spooled (e.g. the batch was lost): read again after a rewind.
    c.not_spooled();
    let again = collect_until(&mut c, |all| !statements(all).is_empty()).await;
    assert_eq!(statements(&again), ["SELECT ?/? AS lasect_second"]);
    c.spooled();
    drop(c);

    // The cap: ten errors while the agent is down, two per round sent.
    for i in 0..10 {
        fail(&client, &format!("SELECT {i}/0 AS lasect_capped")).await;
    }
    let capped = LogsConfig {
        max_events_per_interval: 2,
        ..LogsConfig::default()
    };
    let mut c = collector(pg.dsn("postgres"), state.path(), &capped);
    let all = collect_until(&mut c, |all| all.iter().any(|l| l.dropped_events > 0)).await;
    for l in &all {
        assert!(l.events.len() + l.plans.len() <= 2, "{l:?}");
    }
    let sent = statements(&all).len() as u64;
    let dropped: u64 = all.iter().map(|l| l.dropped_events).sum();
    assert!(sent + dropped >= 10, "sent {sent}, dropped {dropped}");
    assert!(!statements(&all).iter().any(|s| s.contains("lasect_second")));
}

/// stderr with a custom `log_line_prefix`: the STATEMENT line and the
/// tab-indented continuation lines of a multi-line statement and of an
/// auto_explain plan join their entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_multi_line_entries_from_a_real_server() {
    let pg = PgCluster::start(PgOptions {
        settings: vec![
            ("logging_collector".into(), "on".into()),
            ("log_destination".into(), "'stderr'".into()),
            ("log_directory".into(), "'log'".into()),
            ("log_line_prefix".into(), "'%m [%p] %q%u@%d/%a %e '".into()),
        ],
        ..PgOptions::default()
    })
    .expect("cluster");
    let client = pg.connect("postgres").await.expect("connect");
    let state = tempfile::tempdir().expect("state dir");
    let mut c = collector(pg.dsn("postgres"), state.path(), &LogsConfig::default());
    tick_logs(&mut c).await;

    client
        .batch_execute("SET application_name = 'lasect test'")
        .await
        .expect("set");
    fail(&client, "SELECT 1/0\n\tAS lasect_multi,\n  'x' AS y").await;
    for sql in [
        "LOAD 'auto_explain'",
        "SET auto_explain.log_min_duration = 0",
        "SELECT relname AS lasect_plan FROM pg_class\n WHERE relname = 'hidden'",
        "SET auto_explain.log_min_duration = -1",
    ] {
        client.batch_execute(sql).await.expect(sql);
    }
    let all = collect_until(&mut c, |all| {
        !statements(all).is_empty() && all.iter().any(|l| !l.plans.is_empty())
    })
    .await;
    assert_eq!(all.iter().map(|l| l.unparsed_lines).sum::<u64>(), 0);
    // The server prefixes each continuation line with a tab; the statement
    // comes back exactly as the client sent it.
    assert_eq!(
        statements(&all),
        ["SELECT ?/?\n\tAS lasect_multi,\n  ? AS y"]
    );
    let event = all
        .iter()
        .flat_map(|l| l.events.iter())
        .find(|e| e.sqlstate == "22012")
        .expect("event");
    assert_eq!(
        (
            event.user_name.as_str(),
            event.database.as_str(),
            event.application.as_str(),
            event.source.as_str()
        ),
        ("postgres", "postgres", "lasect test", "stderr")
    );
    let plan = all
        .iter()
        .flat_map(|l| l.plans.iter())
        .find(|p| p.query_text.contains("lasect_plan"))
        .expect("plan");
    assert_eq!(
        plan.query_text,
        "SELECT relname AS lasect_plan FROM pg_class\n WHERE relname = ?"
    );
    assert!(plan.plan.contains("pg_class"), "{}", plan.plan);
    assert!(!plan.plan.contains("hidden"), "{}", plan.plan);
}

/// Discovery as a pg_monitor role (no right to `pg_current_logfile()`) still finds the files
/// from the settings, and never writes a "permission denied" ERROR into the log it reads.
#[tokio::test]
async fn discovery_without_the_logfile_function_leaves_no_error_in_the_log() {
    let pg = PgCluster::start(PgOptions {
        log_format: Some(LogFormat::Csv),
        ..PgOptions::default()
    })
    .expect("cluster");
    let admin = pg.connect("postgres").await.expect("connect");
    // PostgreSQL 18 grants pg_current_logfile() to pg_monitor: take it back,
    // so that the role has no right to ask on every version.
    admin
        .batch_execute(
            "CREATE ROLE watcher LOGIN IN ROLE pg_monitor;
             REVOKE EXECUTE ON FUNCTION pg_current_logfile(), pg_current_logfile(text)
                 FROM pg_monitor;",
        )
        .await
        .expect("role");
    let dsn = pg.dsn("postgres").replace("user=postgres", "user=watcher");
    let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .expect("connect as watcher");
    tokio::spawn(conn);

    for _ in 0..3 {
        let settings = lasect_agent::logs::discover::read(&client)
            .await
            .expect("settings");
        assert!(settings.current.is_empty(), "no right to ask the server");
        lasect_agent::logs::discover::plan(&settings).expect("files found from the settings");
    }
    // A statement after discovery, so the log has been flushed past it.
    admin.batch_execute("SELECT 1").await.expect("select");
    let mut text = String::new();
    for entry in std::fs::read_dir(pg.log_dir()).expect("log dir") {
        let path = entry.expect("entry").path();
        text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
    }
    assert!(
        !text.contains("pg_current_logfile"),
        "the agent's discovery left errors in the server log:\n{text}"
    );
}

/// Plans bigger than the plan cap from a real server (a wide table's every column, output by
/// three nodes with `log_verbose`), in JSON, read past the csvlog line cap: each is cut to the
/// cap after redaction and marked truncated with its query text whole; a burst of them is
/// spread over rounds that each stay within the round's text budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_plans_are_capped_marked_and_budgeted() {
    use lasect_agent::logs::entry::MAX_PLAN_BYTES;
    let pg = PgCluster::start(PgOptions {
        log_format: Some(LogFormat::Csv),
        ..PgOptions::default()
    })
    .expect("cluster");
    let client = pg.connect("postgres").await.expect("connect");
    // 1500 columns of 60-byte names: each node's Output list is ~95 KB.
    let columns: Vec<String> = (0..1500)
        .map(|i| format!("c{i:04}_{}", "w".repeat(54)))
        .collect();
    client
        .batch_execute(&format!(
            "CREATE TABLE wide ({})",
            columns
                .iter()
                .map(|c| format!("{c} int"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .await
        .expect("wide table");
    let state = tempfile::tempdir().expect("state dir");
    let logs = LogsConfig::default();
    let mut c = collector(pg.dsn("postgres"), state.path(), &logs);
    tick_logs(&mut c).await;
    c.spooled();
    drop(c);

    // While the agent is away: twenty plans of ~290 KB, more than one round's budget.
    for sql in [
        "LOAD 'auto_explain'",
        "SET auto_explain.log_min_duration = 0",
        "SET auto_explain.log_format = json",
        "SET auto_explain.log_verbose = on",
    ] {
        client.batch_execute(sql).await.expect(sql);
    }
    let query = format!(
        "SELECT * FROM wide WHERE {} = 4242 ORDER BY 1 LIMIT 1",
        columns[7]
    );
    for _ in 0..20 {
        client.batch_execute(&query).await.expect("wide query");
    }
    client
        .batch_execute("SET auto_explain.log_min_duration = -1")
        .await
        .expect("auto_explain off");

    let mut c = collector(pg.dsn("postgres"), state.path(), &logs);
    let all = collect_until(&mut c, |all| {
        all.iter()
            .map(|l| l.plans.len() as u64 + l.dropped_events)
            .sum::<u64>()
            >= 20
    })
    .await;
    let plans: Vec<_> = all.iter().flat_map(|l| l.plans.iter()).collect();
    assert!(!plans.is_empty());
    for p in &plans {
        assert_eq!(p.truncated, Some(true), "{}", p.plan.len());
        assert!(p.plan.len() <= MAX_PLAN_BYTES && p.plan.len() > MAX_PLAN_BYTES - 8);
        assert!(p.plan.starts_with('{') && p.plan.contains("\"Node Type\": \"Limit\""));
        assert!(!p.plan.contains("4242"), "redacted before the cut");
        assert_eq!(
            p.query_text,
            format!(
                "SELECT * FROM wide WHERE {} = ? ORDER BY ? LIMIT ?",
                columns[7]
            )
        );
    }
    // Each round reads at most 4 MiB of a file and sends at most 4 MiB of text: twenty plans
    // take more than one round, none is lost.
    let dropped: u64 = all.iter().map(|l| l.dropped_events).sum();
    assert_eq!((plans.len(), dropped), (20, 0));
    assert!(all.iter().filter(|l| !l.plans.is_empty()).count() >= 2);
    for l in &all {
        let text: usize = l
            .plans
            .iter()
            .map(|p| p.plan.len() + p.query_text.len())
            .sum();
        assert!(text < (4 << 20) + MAX_PLAN_BYTES + (64 << 10), "{text}");
    }
}
