//! `statement_cycle_ms` of `make bench` (bench/agent.sh): the agent's
//! `statement` collection cycle in steady state against a reference that
//! reads the query texts every cycle, on one server, in one run.
//!
//! ```text
//! statement_cycle --dsn "host=/tmp/sock port=5432 user=postgres dbname=bench" \
//!     [--entries 5000] [--pad-bytes 10300] [--cycles 7] [--touch 250]
//! ```
//!
//! Setup: `entries` distinct statements (25 shapes over entries/25 tables),
//! each carrying a literal-free comment of `pad-bytes`, so the server's
//! query-text file holds entries × pad-bytes. The agent's collector then
//! takes its baseline and its first sight of every entry, then catches up
//! until every text is sent once (a budget of text bytes per round); after that, cycles alternate: `touch` statements run
//! (untimed, so the interval has deltas), one agent cycle is timed, `touch`
//! more run, one reference cycle is timed. The reference is the agent's
//! own counter query over `pg_stat_statements(true)` plus the `query`
//! column: what an exporter reading the view does every scrape.
//!
//! The steady state must not read texts: the executions of the agent's text
//! query ([`statement::TEXTS_SQL_HEAD`]) are counted in `pg_stat_statements`
//! before and after the steady cycles; the program fails if they moved.
//! Prints one JSON object on stdout.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use lasect_agent::collect::statement::{self, ExtVersion, StatementCollector};
use tokio_postgres::{Client, NoTls};

const SCHEMA: &str = "lasect_stmt_bench";
const PAD_MARK: &str = "lasect-bench-pad";
/// Distinct statements per table: SELECT c<a> ... WHERE c<b> = const.
const SHAPES: usize = 25;
const BATCH: usize = 50;
/// Cycles before the steady state (see the loop).
const WARM_CYCLES: usize = 3;

struct Args {
    dsn: String,
    entries: usize,
    pad_bytes: usize,
    cycles: usize,
    touch: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        dsn: String::new(),
        entries: 5000,
        pad_bytes: 10_300,
        cycles: 7,
        touch: 250,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<usize>()
                .with_context(|| format!("{flag}: not a number: {value:?}"))
        };
        match flag.as_str() {
            "--dsn" => args.dsn = value.clone(),
            "--entries" => args.entries = number()?,
            "--pad-bytes" => args.pad_bytes = number()?,
            "--cycles" => args.cycles = number()?,
            "--touch" => args.touch = number()?,
            other => bail!("unknown argument {other:?}"),
        }
    }
    if args.dsn.is_empty() {
        bail!("--dsn is required");
    }
    if args.entries == 0 || args.cycles == 0 {
        bail!("--entries and --cycles must be at least 1");
    }
    Ok(args)
}

/// The text of statement `i`: a distinct (table, shape) pair; the constant
/// is normalised away, the comment stays in the stored text.
fn statement_sql(i: usize, pad: &str) -> String {
    let table = i / SHAPES;
    let a = (i % SHAPES) / 5 + 1;
    let b = i % 5 + 1;
    format!("SELECT /* {pad} */ c{a} FROM {SCHEMA}.t{table} WHERE c{b} = {i}")
}

async fn run_statements(
    client: &Client,
    ids: impl Iterator<Item = usize>,
    pad: &str,
) -> anyhow::Result<()> {
    let mut sql = String::new();
    let mut n = 0;
    for i in ids {
        sql.push_str(&statement_sql(i, pad));
        sql.push_str(";\n");
        n += 1;
        if n == BATCH {
            client.batch_execute(&sql).await.context("run statements")?;
            sql.clear();
            n = 0;
        }
    }
    if !sql.is_empty() {
        client.batch_execute(&sql).await.context("run statements")?;
    }
    Ok(())
}

/// Executions so far of the agent's text query.
async fn text_fetches(client: &Client) -> anyhow::Result<i64> {
    let prefix = statement::TEXTS_SQL_HEAD;
    let row = client
        .query_one(
            "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements \
             WHERE starts_with(query, $1)",
            &[&prefix],
        )
        .await?;
    Ok(row.try_get(0)?)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let (client, connection) = tokio_postgres::connect(&args.dsn, NoTls)
        .await
        .context("connect")?;
    tokio::spawn(connection);
    let version: String = client
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'",
            &[],
        )
        .await
        .context("pg_stat_statements must be installed in the DSN's database")?
        .try_get(0)?;
    let version = ExtVersion::parse(&version).context("extension version")?;
    let max: i64 = client
        .query_one(
            "SELECT current_setting('pg_stat_statements.max')::int8",
            &[],
        )
        .await?
        .try_get(0)?;
    if (max as usize) < args.entries + 100 {
        bail!(
            "pg_stat_statements.max = {max} cannot hold {} entries",
            args.entries
        );
    }

    // Setup, untimed.
    let tables = args.entries.div_ceil(SHAPES);
    let mut ddl = format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA};");
    for t in 0..tables {
        ddl.push_str(&format!(
            "CREATE TABLE {SCHEMA}.t{t} (c1 int, c2 int, c3 int, c4 int, c5 int);"
        ));
    }
    client.batch_execute(&ddl).await.context("create tables")?;
    client
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await?;
    let word = "abcdefghijklmnopqrstuvwxyz ";
    let mut pad = format!("{PAD_MARK} ");
    while pad.len() < args.pad_bytes {
        pad.push_str(word);
    }
    run_statements(&client, 0..args.entries, &pad).await?;
    let row = client
        .query_one(
            "SELECT count(*)::int8, coalesce(sum(octet_length(query)), 0)::int8 \
             FROM pg_stat_statements WHERE strpos(query, $1) > 0",
            &[&PAD_MARK],
        )
        .await?;
    let (entries, text_bytes): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
    if (entries as usize) < args.entries {
        bail!(
            "only {entries} of {} statements are in pg_stat_statements",
            args.entries
        );
    }

    let mut collector = StatementCollector::default();
    let t = Instant::now();
    collector.collect(&client, "bench").await?;
    let baseline_ms = ms(t.elapsed());
    run_statements(&client, 0..args.entries, &pad).await?;
    let t = Instant::now();
    let first = collector
        .collect(&client, "bench")
        .await?
        .context("a round after the baseline gives a snapshot")?;
    let first_sight_ms = ms(t.elapsed());
    // Texts go out a budget per round: the rounds until every one is sent.
    let mut first_texts = first.texts.len();
    let mut catch_up_rounds = 1;
    while collector.texts_pending() > 0 {
        if let Some(s) = collector.collect(&client, "bench").await? {
            first_texts += s.texts.len();
        }
        catch_up_rounds += 1;
    }

    let reference_sql = statement::query(version)
        .replacen("SELECT queryid,", "SELECT query, queryid,", 1)
        .replace("pg_stat_statements(false)", "pg_stat_statements(true)");
    let mut next = 0;
    let mut touch = |n: usize| {
        let ids: Vec<usize> = (0..n).map(|k| (next + k) % args.entries).collect();
        next = (next + n) % args.entries;
        ids
    };
    let (mut lasect, mut reference) = (Vec::new(), Vec::new());
    let (mut steady_rows, mut steady_texts, mut reference_bytes) = (0, 0, 0);
    let mut fetches_before = 0;
    for cycle in 0..WARM_CYCLES + args.cycles {
        // The first cycles also see this program's own statements (the
        // reference, the fetch counter) and the text query's own entry for
        // the first time: not the steady state yet.
        let steady = cycle >= WARM_CYCLES;
        let fetches = text_fetches(&client).await?;
        if cycle == WARM_CYCLES {
            fetches_before = fetches;
        }
        run_statements(&client, touch(args.touch).into_iter(), &pad).await?;
        let t = Instant::now();
        let snap = collector.collect(&client, "bench").await?;
        let took = ms(t.elapsed());
        if let (true, Some(s)) = (steady, snap) {
            lasect.push(took);
            steady_rows += s.rows.len();
            steady_texts += s.texts.len();
        }

        run_statements(&client, touch(args.touch).into_iter(), &pad).await?;
        let t = Instant::now();
        let rows = client.query(&reference_sql, &[]).await?;
        let mut bytes = 0;
        for row in &rows {
            let text: Option<&str> = row.try_get(0)?;
            bytes += text.map_or(0, str::len);
        }
        let took = ms(t.elapsed());
        if steady {
            reference.push(took);
            reference_bytes = bytes;
        }
    }
    let fetches_after = text_fetches(&client).await?;
    let steady_fetches = fetches_after - fetches_before;
    if steady_fetches != 0 || steady_texts != 0 {
        bail!("the steady state read texts: {steady_fetches} text queries, {steady_texts} texts");
    }
    let lasect_ms = median(&mut lasect);
    let reference_ms = median(&mut reference);
    println!(
        "{{\"entries\": {entries}, \"text_bytes\": {text_bytes}, \"cycles\": {}, \
         \"touched_per_cycle\": {}, \"lasect_ms\": {lasect_ms:.3}, \"reference_ms\": {reference_ms:.3}, \
         \"lasect_max_ms\": {:.3}, \"reference_max_ms\": {:.3}, \
         \"baseline_ms\": {baseline_ms:.3}, \"first_sight_ms\": {first_sight_ms:.3}, \
         \"first_sight_texts\": {first_texts}, \"catch_up_rounds\": {catch_up_rounds}, \"steady_rows\": {steady_rows}, \
         \"steady_text_fetches\": {steady_fetches}, \"reference_text_bytes_per_cycle\": {reference_bytes}}}",
        args.cycles,
        args.touch,
        lasect.last().copied().unwrap_or(0.0),
        reference.last().copied().unwrap_or(0.0),
    );
    Ok(())
}
