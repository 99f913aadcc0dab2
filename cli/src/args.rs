//! The command line of `lasect`.

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "lasect",
    version,
    about = "Command-line client of the Lasect API",
    after_help = "The API URL, CA file and token come from the flags, then the environment, then \
                  ~/.config/lasect/config.toml (or $XDG_CONFIG_HOME/lasect/config.toml), written by \
                  `lasect login`.\n\n\
                  Environment:\n  LASECT_URL      API base URL, e.g. https://127.0.0.1:8443\n  \
                  LASECT_CA_FILE  PEM CA certificate(s) to trust for the API, instead of the system roots\n  \
                  LASECT_TOKEN    bearer token (API token or access token) sent to the API\n\n\
                  Exit codes:\n  0  success\n  1  other error\n  \
                  2  usage error (bad arguments, no URL, request refused as invalid)\n  \
                  3  authentication or authorization error (401, 403, 429)\n  \
                  4  not found (404)\n  5  server error or API unreachable"
)]
pub struct Cli {
    /// API base URL (overrides LASECT_URL and the config file)
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// Bearer token (overrides LASECT_TOKEN and the config file)
    #[arg(long, global = true, value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA file to trust (overrides LASECT_CA_FILE and the config file)
    #[arg(long, global = true, value_name = "PATH")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Output format; before or after the subcommand (`lasect -o json instance list`)
    #[arg(long, short, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Monitored PostgreSQL instances
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// Run SQL or EXPLAIN on an instance, through its agent
    #[command(subcommand)]
    Sql(SqlCommand),
    /// Runs: work executed by agents, with their history
    #[command(subcommand)]
    Run(RunCommand),
    /// Fleet schema migrations: one script on many instances in turn (admin)
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// The schema explorer: snapshots and their recorded changes
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// CSV export and import, pg_dump
    #[command(subcommand)]
    Data(DataCommand),
    /// Extensions: list, enable, disable, update
    #[command(subcommand)]
    Extension(ExtensionCommand),
    /// Collected metrics
    #[command(subcommand)]
    Metrics(MetricsCommand),
    /// Log in with a username and password; stores an API token in the config file (0600)
    Login {
        #[arg(long, short)]
        username: String,
        /// Read the password from the first line of stdin (otherwise it is asked for)
        #[arg(long)]
        password_stdin: bool,
        /// Lifetime of the stored API token, e.g. 30d, 12h
        #[arg(long, default_value = "30d")]
        expires_in: String,
    },
    /// Users and their roles (admin)
    #[command(subcommand)]
    User(UserCommand),
    /// Your API tokens (all tokens for admins)
    #[command(subcommand)]
    Token(TokenCommand),
    /// Agents and their enrollment (admin)
    #[command(subcommand)]
    Agent(AgentCommand),
    /// The audit log (admin)
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Statements (pg_stat_statements) of an instance
    #[command(subcommand)]
    Queries(QueriesCommand),
    /// Alerts, their rules, silences and history
    #[command(subcommand)]
    Alert(crate::alert_cmd::AlertCommand),
    /// Replication: the topology of primaries, standbys, publications and subscriptions
    #[command(subcommand)]
    Replication(crate::replication_cmd::ReplicationCommand),
    /// Backups with pgBackRest: repositories, stanza, backups, the catalogue
    #[command(subcommand)]
    Backup(crate::backup_cmd::BackupCommand),
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List users
    List,
    /// Create a user; without --password-stdin a generated password is printed once
    Create {
        #[arg(long, short)]
        username: String,
        /// Global role: admin, user or viewer (none: only --grant roles)
        #[arg(long)]
        role: Option<String>,
        /// A role on instances with a label, as key=value:role (repeatable)
        #[arg(long = "grant", value_name = "KEY=VALUE:ROLE")]
        grants: Vec<String>,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Replace a user's global role and label grants
    SetRole {
        username: String,
        /// Global role: admin, user or viewer (omit for none)
        #[arg(long)]
        role: Option<String>,
        #[arg(long = "grant", value_name = "KEY=VALUE:ROLE")]
        grants: Vec<String>,
    },
    /// Disable a user: logins, sessions and API tokens stop working
    Disable { username: String },
    /// Change your own password (asks for the old and the new one without echo)
    Passwd {
        /// Log in as this user with the old password first (needed after an admin reset);
        /// otherwise the stored token's user
        #[arg(long, short)]
        username: Option<String>,
        /// Read the old password from the first line of stdin and the new one from the second
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token; its secret is printed once
    Create {
        #[arg(long, short)]
        name: String,
        /// Role of the token (default and maximum: yours)
        #[arg(long)]
        role: Option<String>,
        /// Lifetime, e.g. 90d, 12h (default: no expiry)
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List API tokens (never their secrets)
    List,
    /// Revoke an API token by id
    Revoke { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// List agents: id, host, version, last seen, certificate expiry, spool backlog
    List,
    /// Enrollment tokens
    #[command(subcommand)]
    Token(AgentTokenCommand),
    /// Disable (revoke) an agent; its data stays queryable
    Disable { id: String },
    /// The agent's certificates (serials ingest accepts)
    #[command(subcommand)]
    Cert(AgentCertCommand),
}

#[derive(Debug, Subcommand)]
pub enum AgentCertCommand {
    /// List an agent's recorded certificates, newest first
    List { agent: String },
    /// Revoke one certificate: ingest refuses it and ends its connections
    Revoke {
        agent: String,
        /// Serial in hex, as `lasect agent cert list` or `openssl x509 -serial` shows it
        serial: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentTokenCommand {
    /// Create an enrollment token; printed once
    Create {
        /// Lifetime, e.g. 1h, 30m
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// How many enrollments it allows
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Bind the token to this agent id
        #[arg(long)]
        agent_id: Option<String>,
    },
    /// List enrollment tokens (never their secret): state, uses, bound and enrolled agents
    List,
    /// Revoke an enrollment token: it enrolls nothing more
    Revoke { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit entries, newest first
    List {
        /// Only entries since this long ago (15m, 1h, 7d) or an RFC 3339 time
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        actor: Option<String>,
        /// Action prefix, e.g. "POST /api/v1/users"
        #[arg(long)]
        action: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// List the instances
    List,
    /// Add an instance by DSN; its agent checks it before it is saved (admin)
    Add(NewInstance),
    /// Remove an instance: no longer listed or monitored through the API; its data stays (admin)
    Remove {
        /// Instance: id, name or agent/name
        instance: String,
    },
    /// Have the agent connect and report what works
    Test { instance: String },
    /// Show an instance and its metadata (version, uptime, databases, extensions)
    Show {
        instance: String,
        /// Ask the agent for fresh metadata first
        #[arg(long)]
        refresh: bool,
    },
}

// What `instance add` sends (no doc comment: clap would show it instead of the command's).
#[derive(Debug, clap::Args)]
pub struct NewInstance {
    /// libpq connection string or URL; the password is stored encrypted, never shown
    #[arg(long)]
    pub dsn: String,
    /// Name (default from host, port and database)
    #[arg(long)]
    pub name: Option<String>,
    /// Agent that serves it (default: the only agent)
    #[arg(long)]
    pub agent: Option<String>,
    /// A label as key=value (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Connection of the read-only runs (sql, explain, export, table data, schema), logging
    /// in as an unprivileged role (e.g. granted pg_read_all_data and pg_monitor); default:
    /// --dsn. Stored encrypted, never shown
    #[arg(long)]
    pub run_dsn: Option<String>,
    /// Let read-only runs log in as a superuser or a member of pg_execute_server_program,
    /// pg_read_server_files, pg_write_server_files or pg_signal_backend anyway
    #[arg(long)]
    pub allow_privileged_runs: bool,
}

/// What `sql run` and `sql explain` share.
#[derive(Debug, clap::Args)]
pub struct SqlTarget {
    /// Instance: id, name or agent/name (default: the only instance)
    #[arg(long, short)]
    pub instance: Option<String>,
    /// The statement; `$1`, `$2`... are bound from --param
    pub sql: String,
    /// A parameter value, in order (repeatable); bound, never interpolated
    #[arg(long = "param", value_name = "VALUE")]
    pub params: Vec<String>,
    /// Make parameter N (from 1) NULL (repeatable)
    #[arg(long = "param-null", value_name = "N")]
    pub nulls: Vec<usize>,
    /// Allow writes (admin on the instance); default is a read-only transaction
    #[arg(long)]
    pub write: bool,
    /// Statement timeout, e.g. 500ms, 5s, 2m (default 30s)
    #[arg(long)]
    pub timeout: Option<String>,
    /// Database to connect to (default: the instance's)
    #[arg(long)]
    pub database: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SqlCommand {
    /// Run one statement through the instance's agent and print its rows
    Run {
        #[command(flatten)]
        target: SqlTarget,
        /// Stop after this many rows (default 10000)
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
        max_rows: Option<i64>,
    },
    /// Show the plan of a statement (EXPLAIN, JSON format, as a tree)
    Explain {
        #[command(flatten)]
        target: SqlTarget,
        /// EXPLAIN ANALYZE with BUFFERS: executes the statement (rolled back unless --write)
        #[arg(long)]
        analyze: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// List runs, newest first
    List {
        #[arg(long, short)]
        instance: Option<String>,
        /// queued, dispatched, running, succeeded, failed, timed_out, cancelled or expired
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: u32,
    },
    /// Show one run
    Show { id: i64 },
    /// Cancel a run (best effort: the agent cancels its statement)
    Cancel { id: i64 },
    /// Follow a run until it ends: its status changes and progress as they happen (live
    /// stream); exit 0 if it succeeded, 5 with its error otherwise
    Watch { id: i64 },
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
        /// replication, replication_slot, progress, wait, host_network, host_disk_io, standby,
        /// subscription, subscription_tables, replication_identity, subscription_source,
        /// publication, subscription_copy, custom, host_filesystem, collector_event, log, log_plans,
        /// log_drops
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
    },
}

#[derive(Debug, Subcommand)]
pub enum QueriesCommand {
    /// The statements that cost the most over a time range
    Top {
        /// Instance: id, name or agent/name (default: the only instance)
        #[arg(long, short)]
        instance: Option<String>,
        /// What to rank by
        #[arg(long, short, value_enum, default_value_t = TopBy::TotalTime)]
        by: TopBy,
        /// How many statements (1..=1000)
        #[arg(long, short, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// How far back (15m, 2h, 7d)
        #[arg(long, default_value = "1h", value_parser = crate::since::duration_arg)]
        since: String,
    },
    /// A statement's recent auto_explain plans, newest first, each printed whole
    Plans {
        /// The statement's query id (pg_stat_statements' queryid, as `queries top` lists it)
        #[arg(allow_negative_numbers = true)]
        queryid: i64,
        /// Instance: id, name or agent/name (default: the only instance)
        #[arg(long, short)]
        instance: Option<String>,
        /// How many plans (1..=100)
        #[arg(long, short, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: u32,
        /// How far back (15m, 2h, 7d)
        #[arg(long, default_value = "1d", value_parser = crate::since::duration_arg)]
        since: String,
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

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Start a migration; it halts at the first instance where the script fails
    Run {
        /// id:1,2 | label:env=prod | role:primary|standby|subscriber[:publication]
        #[arg(long)]
        targets: String,
        /// The SQL script (one transaction per instance)
        #[arg(long)]
        file: std::path::PathBuf,
        /// Run in a transaction that is rolled back: checks the script, changes nothing
        #[arg(long)]
        dry_run: bool,
        /// Wait for the end and print the per-instance report (exit 5 if it failed)
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        name: Option<String>,
        /// lock_timeout per statement, e.g. 5s (default 5s)
        #[arg(long)]
        lock_timeout: Option<String>,
        /// statement_timeout per statement, e.g. 60s (default 60s)
        #[arg(long)]
        statement_timeout: Option<String>,
        /// Database to migrate (default: each instance's)
        #[arg(long)]
        database: Option<String>,
    },
    /// The migrations, or one migration's per-instance report
    Status { id: Option<i64> },
    /// Cancel the running migration: its current run is cancelled, the rest skipped
    Cancel { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Show the latest schema snapshot (tables), or one table in detail
    Show {
        #[arg(long, short)]
        instance: Option<String>,
        #[arg(long = "db")]
        database: Option<String>,
        /// One table, as schema.table
        #[arg(long)]
        table: Option<String>,
        /// Take a fresh snapshot first
        #[arg(long)]
        refresh: bool,
    },
    /// Recorded changes between snapshots, breaking or not
    Changes {
        #[arg(long, short)]
        instance: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// A table or a query as CSV (with a header), streamed to stdout or a file
    Export {
        #[arg(long, short)]
        instance: Option<String>,
        /// schema.table
        #[arg(long, conflicts_with = "query")]
        table: Option<String>,
        /// A read-only query
        #[arg(long)]
        query: Option<String>,
        #[arg(long = "db")]
        database: Option<String>,
        /// Write to this file instead of stdout
        #[arg(long, value_name = "PATH")]
        out: Option<std::path::PathBuf>,
    },
    /// A CSV file into a table, all or nothing, with a per-row error report (admin)
    Import {
        #[arg(long, short)]
        instance: Option<String>,
        /// schema.table
        #[arg(long)]
        table: String,
        #[arg(long)]
        file: std::path::PathBuf,
        /// The file has no header line (columns in table order)
        #[arg(long)]
        no_header: bool,
        #[arg(long = "db")]
        database: Option<String>,
    },
    /// pg_dump (definitions only unless --with-data), run by the agent
    Dump {
        #[arg(long, short)]
        instance: Option<String>,
        #[arg(long)]
        schema: Option<String>,
        /// schema.table
        #[arg(long)]
        table: Option<String>,
        /// Rows too (admin)
        #[arg(long)]
        with_data: bool,
        #[arg(long = "db")]
        database: Option<String>,
        /// Write to this file instead of stdout
        #[arg(long, value_name = "PATH")]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExtensionCommand {
    /// Available and installed extensions
    List {
        #[arg(long, short)]
        instance: Option<String>,
    },
    /// CREATE EXTENSION (admin)
    Enable {
        name: String,
        #[arg(long, short)]
        instance: Option<String>,
        #[arg(long)]
        version: Option<String>,
        #[arg(long)]
        cascade: bool,
    },
    /// DROP EXTENSION (admin)
    Disable {
        name: String,
        #[arg(long, short)]
        instance: Option<String>,
        #[arg(long)]
        cascade: bool,
    },
    /// ALTER EXTENSION … UPDATE (admin)
    Update {
        name: String,
        #[arg(long, short)]
        instance: Option<String>,
        #[arg(long)]
        version: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn command_line_is_consistent() {
        // Catches, among others, a subcommand that declares its own `--output` again.
        Cli::command().debug_assert();
    }

    /// Every leaf subcommand, as its path of names.
    fn leaves(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        if cmd.get_subcommands().next().is_none() {
            out.push(path);
            return;
        }
        // `help` is clap's own, not a command of ours.
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut p = path.clone();
            p.push(sub.get_name().to_owned());
            leaves(sub, p, out);
        }
    }

    #[test]
    fn output_is_accepted_before_and_after_every_subcommand() {
        let mut cmd = Cli::command();
        cmd.build();
        let mut all = Vec::new();
        leaves(&cmd, Vec::new(), &mut all);
        assert!(all.len() > 30, "{all:?}");
        for path in &all {
            let mut sub = &cmd;
            for name in path {
                sub = sub.find_subcommand(name).expect("subcommand");
            }
            let output = sub
                .get_arguments()
                .find(|a| a.get_id() == "output")
                .unwrap_or_else(|| panic!("{path:?} has no --output"));
            assert!(output.is_global_set(), "{path:?}");
        }
        for args in [
            &["lasect", "--output", "json", "instance", "list"][..],
            &["lasect", "-o", "json", "queries", "top"][..],
            &["lasect", "instance", "list", "--output", "json"][..],
            &["lasect", "user", "-o", "json", "list"][..],
        ] {
            let cli = Cli::try_parse_from(args).expect("parses");
            assert_eq!(cli.output, OutputFormat::Json, "{args:?}");
        }
        let cli = Cli::try_parse_from(["lasect", "token", "list"]).expect("parses");
        assert_eq!(cli.output, OutputFormat::Table);
    }

    /// pg_stat_statements' queryid is signed: a negative one is a query id, not a flag.
    #[test]
    fn plans_take_a_negative_queryid() {
        let cli = Cli::try_parse_from(["lasect", "queries", "plans", "-8123456789", "-i", "main"])
            .expect("parses");
        match cli.command {
            Command::Queries(QueriesCommand::Plans {
                queryid,
                instance,
                limit,
                ..
            }) => assert_eq!(
                (queryid, instance.as_deref(), limit),
                (-8123456789, Some("main"), 5)
            ),
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["lasect", "queries", "plans", "x"]).is_err());
        assert!(
            Cli::try_parse_from(["lasect", "queries", "plans", "1", "--limit", "101"]).is_err()
        );
    }
}
