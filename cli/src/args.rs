//! The command line of `lasect`.

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "lasect",
    version,
    about = "Command-line client of the Lasect API",
    after_help = "Environment:\n  LASECT_URL      API base URL, e.g. https://127.0.0.1:8443 (required)\n  \
                  LASECT_CA_FILE  PEM CA certificate(s) to trust for the API, instead of the system roots\n  \
                  LASECT_TOKEN    bearer token sent to the API, when set"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Monitored PostgreSQL instances
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// Collected metrics
    #[command(subcommand)]
    Metrics(MetricsCommand),
    /// Statements (pg_stat_statements) of an instance
    #[command(subcommand)]
    Queries(QueriesCommand),
}

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// List the instances
    List {
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
}

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// Show the latest samples of one metric family of an instance
    Show {
        /// Instance: numeric id, name, or agent/name when a name is on several agents
        #[arg(long, short)]
        instance: String,
        /// Metric family: database, host_cpu, host_memory, statement, table, index, wal, bgwriter,
        /// archiver, settings, setting_changes, activity, activity_sessions, lock, lock_waits,
        /// replication, replication_slot, progress, wait, host_network, host_disk_io
        #[arg(long, short, default_value = "database")]
        family: String,
        /// How many sample times back (database) or samples (host families); API default 1
        #[arg(long, short, value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "since")]
        limit: Option<u32>,
        /// Show the time series of this long back (15m, 2h, 7d) instead of the latest samples
        #[arg(long, value_parser = crate::since::duration_arg)]
        since: Option<String>,
        /// Bucket width of the series (30s, 5m, 1h); default chosen by the API
        #[arg(long, value_parser = crate::since::duration_arg, requires = "since")]
        step: Option<String>,
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueriesCommand {
    /// The statements that cost the most over a time range
    Top {
        /// Instance: numeric id, name, or agent/name when a name is on several agents
        #[arg(long, short)]
        instance: String,
        /// What to rank by
        #[arg(long, short, value_enum, default_value_t = TopBy::TotalTime)]
        by: TopBy,
        /// How many statements (1..=1000)
        #[arg(long, short, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// How far back (15m, 2h, 7d)
        #[arg(long, default_value = "1h", value_parser = crate::since::duration_arg)]
        since: String,
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum TopBy {
    TotalTime,
    MeanTime,
    Calls,
    Rows,
    Io,
}

impl TopBy {
    /// The API's name of the order.
    pub fn as_str(self) -> &'static str {
        match self {
            TopBy::TotalTime => "total_time",
            TopBy::MeanTime => "mean_time",
            TopBy::Calls => "calls",
            TopBy::Rows => "rows",
            TopBy::Io => "io",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}
