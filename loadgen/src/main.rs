//! `lasect-loadgen`: simulates a fleet of agents pushing realistic batches
//! to `lasect-ingest` over real mTLS, and prints a JSON summary.
//!
//! Each simulated agent gets its own client certificate, issued in-process
//! by the Lasect CA in `--ca-dir` (`ca.pem` + `ca.key`, as written by
//! `lasect-api ca init`), CN `<prefix>-<i>`. See [`fleet`] for the live and
//! backlog modes and [`batch`] for what a batch holds. `--wire-report`
//! only compares encodings and needs no server.
//!
//! ```text
//! lasect-loadgen --endpoint https://127.0.0.1:7443 --ca-dir tls \
//!     --agents 1000 --interval-ms 10000 --duration-secs 30
//! lasect-loadgen --endpoint ... --ca-dir tls --agents 1 --batches-per-agent 360
//! lasect-loadgen --wire-report 360
//! lasect-loadgen --wire-report-spool /var/lib/lasect-agent
//! ```

mod batch;
mod fleet;
mod fsync_probe;
mod wire;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use lasect_pki::CertificateAuthority;
use serde_json::json;

use crate::batch::Shape;
use crate::fleet::{Plan, Tally};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Simulates many Lasect agents pushing to lasect-ingest"
)]
struct Args {
    /// Simulated agents.
    #[arg(long, default_value_t = 100)]
    agents: u32,
    /// Time between two batches of one agent (live mode), and between the
    /// sample times of consecutive backlog batches.
    #[arg(long, default_value_t = 10_000)]
    interval_ms: u64,
    /// How long the live mode runs (warm-up included).
    #[arg(long, default_value_t = 30)]
    duration_secs: u64,
    /// Live mode: pushes in the first seconds (while agents connect) are
    /// not measured, only counted as `warmup_ok` / `warmup_failed`.
    #[arg(long, default_value_t = 0)]
    warmup_secs: u64,
    /// Backlog mode: each agent pushes this many batches as fast as it can.
    #[arg(long)]
    batches_per_agent: Option<u64>,
    /// Backlog mode: pushes each agent keeps in flight.
    #[arg(long, default_value_t = 1)]
    window: usize,
    /// Most pushes in flight over all agents (default: no limit).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Databases per simulated instance.
    #[arg(long, default_value_t = 10)]
    databases: u32,
    /// What a batch holds: `agent` = every family of the real agent at its
    /// default interval (a tick is 10 s), `database` = only `database`,
    /// `instance_info` and the host (databases + 2 rows per batch).
    #[arg(long, value_enum, default_value_t = ShapeArg::Agent)]
    shape: ShapeArg,
    /// `https://host:port` of lasect-ingest.
    #[arg(long, default_value = "https://127.0.0.1:7443")]
    endpoint: String,
    /// Name the ingest certificate must carry.
    #[arg(long, default_value = "lasect-ingest")]
    server_name: String,
    /// Directory with the Lasect CA (`ca.pem`, `ca.key`).
    #[arg(long)]
    ca_dir: Option<PathBuf>,
    /// Agent ids are `<prefix>-<i>`.
    #[arg(long, default_value = "loadgen")]
    agent_prefix: String,
    /// First seq of every agent (default: the current time in microseconds,
    /// so a new run never collides with an earlier one).
    #[arg(long)]
    seq_base: Option<u64>,
    /// OS threads of the async runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Live mode: send every batch whole, never as a delta push (by default
    /// agents send delta pushes once ingest keeps their bases, as the real
    /// agent does).
    #[arg(long)]
    whole: bool,
    /// Only sample the disk's fsync latency in this directory for
    /// `--duration-secs` (see `fsync_probe.rs`).
    #[arg(long, value_name = "DIR")]
    fsync_probe: Option<PathBuf>,
    /// Only compare wire encodings over this many ticks of one agent.
    #[arg(long, value_name = "TICKS")]
    wire_report: Option<u64>,
    /// Only compare wire encodings over the batches in a real agent's
    /// spool (its state dir), as `--wire-report` does over generated ones.
    #[arg(long, value_name = "STATE_DIR")]
    wire_report_spool: Option<PathBuf>,
    /// Only train the zstd dictionary of `CODEC_ZSTD_DICT_V1` and write it
    /// to this file (see proto/dict/README.md).
    #[arg(long, value_name = "FILE")]
    train_dictionary: Option<PathBuf>,
    /// Only train the zstd dictionary of `CODEC_ZSTD_DICT_V3` (delta
    /// pushes of the current `DeltaBatch` format) and write it to this file.
    #[arg(long, value_name = "FILE")]
    train_delta_dictionary: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ShapeArg {
    Agent,
    Database,
}

/// CPU seconds (user + system) this process has used so far; `None` where
/// /proc is not available.
fn own_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th of the whole line.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // The kernel reports in USER_HZ, 100 on every Linux architecture Rust targets.
    Some(ticks / 100.0)
}

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lasect-loadgen: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> anyhow::Result<()> {
    let args = Args::parse();
    let shape = match args.shape {
        ShapeArg::Agent => Shape::agent(args.databases),
        ShapeArg::Database => Shape::database_only(args.databases),
    };
    let training = match (&args.train_dictionary, &args.train_delta_dictionary) {
        (Some(path), _) => Some((path, wire::train(args.databases)?)),
        (None, Some(path)) => Some((path, wire::train_delta(args.databases)?)),
        (None, None) => None,
    };
    if let Some((path, dictionary)) = training {
        std::fs::write(path, &dictionary).with_context(|| format!("write {}", path.display()))?;
        eprintln!(
            "wrote a {} byte dictionary to {}",
            dictionary.len(),
            path.display()
        );
        return Ok(());
    }
    if let Some(dir) = &args.fsync_probe {
        let report = fsync_probe::probe(dir, Duration::from_secs(args.duration_secs))?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if let Some(ticks) = args.wire_report {
        anyhow::ensure!(ticks > 0, "--wire-report needs at least one tick");
        let report = wire::compare(shape, ticks)?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if let Some(state_dir) = &args.wire_report_spool {
        let report = wire::compare_spool(state_dir)?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    anyhow::ensure!(args.agents > 0, "--agents must be at least 1");
    anyhow::ensure!(args.interval_ms > 0, "--interval-ms must be at least 1");
    anyhow::ensure!(args.threads > 0, "--threads must be at least 1");
    anyhow::ensure!(
        args.concurrency != Some(0),
        "--concurrency must be at least 1"
    );
    let ca_dir = args
        .ca_dir
        .clone()
        .context("--ca-dir is required to issue agent certificates")?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = CertificateAuthority::load(&ca_dir)
        .with_context(|| format!("load the CA from {}", ca_dir.display()))?;

    let issuing = Instant::now();
    let certs = fleet::issue_certs(&ca, &args.agent_prefix, args.agents)?;
    eprintln!(
        "issued {} agent certificates in {:.1} s",
        certs.len(),
        issuing.elapsed().as_secs_f64()
    );
    let seq_base = match args.seq_base {
        Some(base) => base,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("read the clock")?
            .as_micros() as u64,
    };
    let plan = Plan {
        agents: args.agents,
        agent_prefix: args.agent_prefix.clone(),
        interval: Duration::from_millis(args.interval_ms),
        duration: Duration::from_secs(args.duration_secs),
        warmup: Duration::from_secs(args.warmup_secs),
        batches_per_agent: args.batches_per_agent,
        window: args.window,
        concurrency: args.concurrency,
        shape,
        endpoint: args.endpoint.clone(),
        server_name: args.server_name.clone(),
        seq_base,
        delta: !args.whole,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let encoding = Instant::now();
    let backlog = fleet::prepare_backlog(&plan)?;
    let encode_s = encoding.elapsed().as_secs_f64();
    let cpu_before = own_cpu_secs();
    let tally = runtime.block_on(fleet::run(
        plan.clone(),
        ca.cert_pem().to_owned(),
        certs,
        backlog,
    ))?;
    let push_cpu_s = cpu_before.zip(own_cpu_secs()).map(|(a, b)| b - a);
    let mut report = summary(&plan, tally);
    report["encode_s"] = json!(encode_s);
    report["push_cpu_s"] = json!(push_cpu_s);
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// The `p`-quantile (0..=1) of sorted values, nearest rank.
fn quantile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(plan: &Plan, mut tally: Tally) -> serde_json::Value {
    tally.latencies_us.sort_unstable();
    let ms = |us: u64| us as f64 / 1000.0;
    let elapsed = match (tally.first_push, tally.last_answer) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    let per_s = |n: u64| {
        if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        }
    };
    let failed_total: u64 = tally.failed.values().sum();
    json!({
        "agents": plan.agents,
        "agent_prefix": plan.agent_prefix,
        "mode": if plan.batches_per_agent.is_some() { "backlog" } else { "live" },
        "interval_ms": plan.interval.as_millis() as u64,
        "duration_s": plan.duration.as_secs(),
        "warmup_s": plan.warmup.as_secs(),
        "warmup_ok": tally.warmup_ok,
        "warmup_failed": tally.warmup_failed,
        "batches_per_agent": plan.batches_per_agent,
        "window": plan.window,
        "shape": if plan.shape.all_families { "agent" } else { "database" },
        "rows_per_batch": if tally.ok > 0 { tally.rows as f64 / tally.ok as f64 } else { 0.0 },
        "elapsed_s": elapsed,
        "batches_ok": tally.ok,
        "duplicates": tally.duplicate,
        "failed": tally.failed,
        "failed_total": failed_total,
        "rows": tally.rows,
        "samples": tally.samples,
        "compressed_bytes": tally.compressed_bytes,
        "latency_ms": {
            "p50": ms(quantile(&tally.latencies_us, 0.50)),
            "p99": ms(quantile(&tally.latencies_us, 0.99)),
            "max": ms(tally.latencies_us.last().copied().unwrap_or(0)),
        },
        "rows_per_s": per_s(tally.rows),
        "batches_per_s": per_s(tally.ok),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[], 0.5), 0);
        assert_eq!(quantile(&[7], 0.01), 7);
    }
}
