//! The alert evaluation benchmark of `make bench` (bench/alerts.sh runs it on the store that
//! loadgen filled): one evaluation round of the default pack plus 50 threshold rules over
//! every instance, against the same conditions run as one SQL statement per rule and
//! instance, one by one (what a checker that loops over its instances does).
//!
//! `alert_bench STORE_DSN [REFERENCE_INSTANCES]` prints one JSON object: wall time and store
//! CPU (the one backend's user + system time from /proc, the store runs on this machine) of a
//! round (median of three, after a first round that creates the alert rows), and of the
//! reference over REFERENCE_INSTANCES instances (default all), scaled to every instance.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use lasect_api::alerts::evaluator::tick;
use lasect_api::alerts::query;
use lasect_api::alerts::rule::{Catalog, RuleDef, compile};
use lasect_api::alerts::store;
use lasect_api::store_dsn::StoreDsn;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;

/// Numeric columns loadgen fills, with an aggregation that suits them.
const COLUMNS: &[(&str, &str, &str)] = &[
    ("activity", "connection_use_percent", "avg"),
    ("activity", "total_sessions", "max"),
    ("activity", "oldest_xact_age_seconds", "last"),
    ("database", "xact_commit", "rate"),
    ("database", "xact_rollback", "rate"),
    ("database", "blks_read", "rate"),
    ("database", "tup_inserted", "rate"),
    ("database", "size_bytes", "max"),
    ("host_cpu", "usage_percent", "avg"),
    ("host_memory", "available_bytes", "min"),
];

/// User + system CPU seconds of process `pid` so far.
fn cpu_secs(pid: i32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat (is the store on this machine?)"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .context("unexpected /proc stat format")?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        fields
            .get(i)
            .context("short /proc stat")?
            .parse::<f64>()
            .context("a /proc stat field")
    };
    // utime and stime are fields 14 and 15 of proc(5); `rest` starts at field 3. They count
    // USER_HZ ticks, 100 a second on every Linux architecture.
    let hz = 100.0;
    Ok((ticks(11)? + ticks(12)?) / hz)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(dsn) = args.next() else {
        bail!("usage: alert_bench STORE_DSN [REFERENCE_INSTANCES]");
    };
    let reference_limit: Option<usize> = match args.next() {
        None => None,
        Some(n) => Some(n.parse().context("REFERENCE_INSTANCES is a number")?),
    };
    // One connection: the round and the reference each run on one backend whose CPU is read.
    let options = StoreDsn::new(dsn)
        .pg_connect_options()
        .context("parse STORE_DSN")?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .context("connect to the store")?;
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await?;

    let mut conn = pool.acquire().await?;
    for i in 0..50 {
        let (family, column, agg) = COLUMNS[i % COLUMNS.len()];
        let def: RuleDef = serde_json::from_value(json!({
            "name": format!("bench_threshold_{i:02}"),
            "severity": "warning",
            "condition": {
                "kind": "threshold", "family": family, "column": column, "agg": agg,
                "window_secs": 300, "op": ">", "threshold": 1e15 + i as f64
            },
            "for_secs": 60,
            "annotations": {"summary": "{{ instance }}: {{ value }}"}
        }))?;
        store::insert(&mut conn, &def, "bench").await?;
    }
    let instances: Vec<i64> = sqlx::query_scalar("SELECT id FROM instances ORDER BY id")
        .fetch_all(&mut *conn)
        .await?;
    drop(conn);
    let rules: Vec<RuleDef> = store::load_all(&pool)
        .await?
        .into_iter()
        .filter_map(Result::ok)
        .map(|r| r.def)
        .filter(|d| d.enabled)
        .collect();

    // The rounds: the first writes every alert row, the next three are measured.
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut errors = 0;
    for round in 0..4 {
        let cpu0 = cpu_secs(backend)?;
        let t0 = Instant::now();
        let report = tick(&pool, Duration::ZERO, None, "bench").await?;
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_secs(backend)? - cpu0;
        if !report.evaluated {
            bail!("the round was not evaluated (another evaluator holds the lease?)");
        }
        errors = report.errors;
        if round > 0 {
            walls.push(wall);
            cpus.push(cpu);
        }
    }

    // The reference: each rule's condition as one statement per instance, one by one.
    let chosen: Vec<i64> = instances
        .iter()
        .copied()
        .take(reference_limit.unwrap_or(instances.len()))
        .collect();
    let catalog = Catalog::load_pool(&pool).await?;
    let mut conn = pool.acquire().await?;
    let at = Utc::now();
    let mut statements = 0usize;
    let cpu0 = cpu_secs(backend)?;
    let t0 = Instant::now();
    for def in &rules {
        for id in &chosen {
            let mut one = def.clone();
            one.scope.instance_id = Some(*id);
            one.scope.selector = None;
            let compiled =
                compile(&one, &catalog).map_err(|e| anyhow::anyhow!("rule {}: {e}", def.name))?;
            query::run(&mut conn, &compiled, at, None).await?;
            statements += 1;
        }
    }
    let ref_wall = t0.elapsed().as_secs_f64();
    let ref_cpu = cpu_secs(backend)? - cpu0;
    let scale = instances.len() as f64 / chosen.len().max(1) as f64;
    println!(
        "{}",
        json!({
            "instances": instances.len(),
            "rules": rules.len(),
            "rule_errors": errors,
            "round_s": median(walls),
            "round_store_cpu_s": median(cpus),
            "reference_instances": chosen.len(),
            "reference_statements": statements,
            "reference_s": ref_wall * scale,
            "reference_store_cpu_s": ref_cpu * scale,
            "reference_measured_s": ref_wall,
        })
    );
    Ok(())
}
