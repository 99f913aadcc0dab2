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
        /// replication, replication_slot, progress, wait, host_network, host_disk_io, log,
        /// log_plans, log_drops
        #[arg(long, short, default_value = "database")]
        family: String,
        /// How many sample times back (database) or samples (host families); API default 1
        #[arg(long, short, value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}
