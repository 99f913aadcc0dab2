//! `lasect`, the command-line client of the Lasect API.
//!
//! - [`args`]: the command line (clap);
//! - [`api_client`]: finds the API from `LASECT_URL`, trusts `LASECT_CA_FILE`, sends
//!   `LASECT_TOKEN`, and turns API error bodies into [`api_client::ApiError`];
//! - [`instance_ref`]: `--instance` as an id, a name or `agent/name`;
//! - [`instance_table`], [`samples_table`], [`human_units`], [`json_table`]: table output;
//! - [`printable`]: every value from a database or the API is escaped before a table or a
//!   message shows it (no terminal escapes from data);
//! - [`people`]: login, users, tokens, agents, audit; [`config_file`]: what `login` writes;
//! - [`live_client`]: the live WebSocket, for following runs (`run watch`, `backup progress
//!   --follow`);
//! - [`exit`]: the exit codes.
//!
//! `main.rs` only parses arguments, reads the environment and calls [`run`].

pub mod agents_cmd;
pub mod alert_channel_cmd;
pub mod alert_cmd;
pub mod api_client;
pub mod args;
pub mod backup_catalogue;
pub mod backup_cmd;
pub mod backup_restore;
pub mod backup_schedule;
pub mod config_file;
pub mod data_cmd;
pub mod exit;
pub mod human_units;
pub mod instance_ref;
pub mod instance_table;
pub mod json_table;
pub mod live_client;
pub mod migrate_cmd;
pub mod password;
pub mod people;
pub mod plans_table;
pub mod printable;
pub mod replication_cmd;
pub mod replication_stream_cmd;
pub mod runs_cmd;
pub mod samples_table;
pub mod series_table;
pub mod since;
pub mod top_table;

use anyhow::Context;
use serde_json::Value;

use crate::api_client::{ApiClient, ClientEnv};
use crate::args::{
    Cli, Command, DataCommand, ExtensionCommand, InstanceCommand, MetricsCommand, MigrateCommand,
    OutputFormat, QueriesCommand, RunCommand, SchemaCommand, SqlCommand, SqlTarget,
};

/// Runs one command and returns what to print on stdout. `env` is already layered (flags,
/// environment, config file).
pub async fn run(cli: Cli, env: ClientEnv) -> anyhow::Result<String> {
    // Login builds its own clients (first without a token); every other command one.
    let client = || ApiClient::from_env(env.clone());
    let output = cli.output;
    match cli.command {
        Command::Login {
            username,
            password_stdin,
            expires_in,
        } => people::login(env.clone(), username, password_stdin, expires_in, output).await,
        Command::User(crate::args::UserCommand::Passwd {
            username,
            password_stdin,
        }) => people::passwd(env.clone(), username, password_stdin, output).await,
        Command::User(c) => people::user(&client()?, c, output).await,
        Command::Token(c) => people::token(&client()?, c, output).await,
        Command::Agent(c) => people::agent(&client()?, c, output).await,
        Command::Audit(c) => people::audit(&client()?, c, output).await,
        Command::Alert(c) => alert_cmd::run(&client()?, c, output).await,
        Command::Replication(c) => replication_cmd::run(&client()?, c, output).await,
        Command::Backup(c) => backup_cmd::run(&client()?, c, output).await,
        Command::Instance(InstanceCommand::List) => {
            let list: lasect_api_contract::instances::InstanceList =
                client()?.get("api/v1/instances").await?;
            render(
                output,
                &serde_json::to_value(&list)?,
                instance_table::render,
            )
        }
        Command::Instance(InstanceCommand::Add(add)) => {
            runs_cmd::instance_add(&client()?, add, output).await
        }
        Command::Instance(InstanceCommand::Remove { instance }) => {
            runs_cmd::instance_remove(&client()?, &instance).await
        }
        Command::Instance(InstanceCommand::Test { instance }) => {
            runs_cmd::instance_test(&client()?, &instance, output).await
        }
        Command::Instance(InstanceCommand::Show { instance, refresh }) => {
            runs_cmd::instance_show(&client()?, &instance, refresh, output).await
        }
        Command::Sql(SqlCommand::Run { target, max_rows }) => {
            runs_cmd::sql_run(&client()?, sql_args(target, max_rows), output).await
        }
        Command::Sql(SqlCommand::Explain { target, analyze }) => {
            runs_cmd::sql_explain(&client()?, sql_args(target, None), analyze, output).await
        }
        Command::Migrate(MigrateCommand::Run {
            targets,
            file,
            dry_run,
            wait,
            name,
            lock_timeout,
            statement_timeout,
            database,
        }) => {
            let args = migrate_cmd::RunArgs {
                targets,
                file,
                dry_run,
                wait,
                name,
                lock_timeout,
                statement_timeout,
                database,
            };
            migrate_cmd::run(&client()?, args, output).await
        }
        Command::Schema(SchemaCommand::Show {
            instance,
            database,
            table,
            refresh,
        }) => data_cmd::schema_show(&client()?, instance, database, table, refresh, output).await,
        Command::Schema(SchemaCommand::Changes { instance }) => {
            data_cmd::schema_changes(&client()?, instance, output).await
        }
        Command::Data(DataCommand::Export {
            instance,
            table,
            query,
            database,
            out,
        }) => data_cmd::export(&client()?, instance, table, query, database, out).await,
        Command::Data(DataCommand::Import {
            instance,
            table,
            file,
            no_header,
            database,
        }) => {
            data_cmd::import(
                &client()?,
                instance,
                table,
                file,
                no_header,
                database,
                output,
            )
            .await
        }
        Command::Data(DataCommand::Dump {
            instance,
            schema,
            table,
            with_data,
            database,
            out,
        }) => {
            data_cmd::dump(
                &client()?,
                instance,
                schema,
                table,
                with_data,
                database,
                out,
            )
            .await
        }
        Command::Extension(ExtensionCommand::List { instance }) => {
            data_cmd::extension_list(&client()?, instance, output).await
        }
        Command::Extension(ExtensionCommand::Enable {
            name,
            instance,
            version,
            cascade,
        }) => {
            data_cmd::extension_action(
                &client()?,
                instance,
                "enable",
                name,
                version,
                cascade,
                output,
            )
            .await
        }
        Command::Extension(ExtensionCommand::Disable {
            name,
            instance,
            cascade,
        }) => {
            data_cmd::extension_action(&client()?, instance, "disable", name, None, cascade, output)
                .await
        }
        Command::Extension(ExtensionCommand::Update {
            name,
            instance,
            version,
        }) => {
            data_cmd::extension_action(&client()?, instance, "update", name, version, false, output)
                .await
        }
        Command::Migrate(MigrateCommand::Status { id }) => {
            migrate_cmd::status(&client()?, id, output).await
        }
        Command::Migrate(MigrateCommand::Cancel { id }) => {
            migrate_cmd::cancel(&client()?, id, output).await
        }
        Command::Run(RunCommand::List {
            instance,
            status,
            limit,
        }) => runs_cmd::run_list(&client()?, instance, status, limit, output).await,
        Command::Run(RunCommand::Show { id }) => runs_cmd::run_show(&client()?, id, output).await,
        Command::Run(RunCommand::Cancel { id }) => {
            runs_cmd::run_cancel(&client()?, id, output).await
        }
        Command::Run(RunCommand::Watch { id }) => runs_cmd::run_watch(&client()?, id, output).await,
        Command::Metrics(MetricsCommand::Show {
            instance,
            family,
            since: Some(since),
            step,
            ..
        }) => {
            let client = client()?;
            let id = instance_ref::resolve(&client, &instance).await?;
            let from = since::from_param(&since, chrono::Utc::now()).map_err(anyhow::Error::msg)?;
            let mut path = format!(
                "api/v1/instances/{id}/metrics/{}?from={from}",
                encode_segment(&family)
            );
            if let Some(step) = step {
                path.push_str(&format!("&step={}", encode_segment(&step)));
            }
            let series = client.get_json(&path).await?;
            render(output, &series, series_table::render)
        }
        Command::Queries(QueriesCommand::Top {
            instance,
            by,
            limit,
            since,
        }) => {
            let client = client()?;
            let id = runs_cmd::instance_or_only(&client, instance.as_deref()).await?;
            let from = since::from_param(&since, chrono::Utc::now()).map_err(anyhow::Error::msg)?;
            let path = format!(
                "api/v1/instances/{id}/statements/top?by={}&limit={limit}&from={from}",
                by.as_str()
            );
            let top = client.get_json(&path).await?;
            render(output, &top, top_table::render)
        }
        Command::Queries(QueriesCommand::Plans {
            queryid,
            instance,
            limit,
            since,
        }) => {
            let client = client()?;
            let id = runs_cmd::instance_or_only(&client, instance.as_deref()).await?;
            let from = since::from_param(&since, chrono::Utc::now()).map_err(anyhow::Error::msg)?;
            let path = format!(
                "api/v1/instances/{id}/statements/{queryid}/plans?limit={limit}&since={from}"
            );
            let plans = client.get_json(&path).await?;
            render(output, &plans, plans_table::render)
        }
        Command::Metrics(MetricsCommand::Show {
            instance,
            family,
            limit,
            ..
        }) => {
            let client = client()?;
            let id = instance_ref::resolve(&client, &instance).await?;
            let mut path = format!("api/v1/instances/{id}/samples/{}", encode_segment(&family));
            if let Some(limit) = limit {
                path.push_str(&format!("?limit={limit}"));
            }
            let samples = client.get_json(&path).await?;
            render(output, &samples, samples_table::render)
        }
    }
}

fn sql_args(t: SqlTarget, max_rows: Option<i64>) -> runs_cmd::SqlArgs {
    runs_cmd::SqlArgs {
        instance: t.instance,
        sql: t.sql,
        params: t.params,
        nulls: t.nulls,
        write: t.write,
        timeout: t.timeout,
        max_rows,
        database: t.database,
    }
}

pub(crate) fn render(
    output: OutputFormat,
    body: &Value,
    table: impl Fn(&Value) -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    match output {
        OutputFormat::Json => {
            let mut text = serde_json::to_string_pretty(body).context("format JSON")?;
            text.push('\n');
            Ok(text)
        }
        OutputFormat::Table => table(body),
    }
}

/// Percent-encodes a path segment typed by the user, so `../x` or `a?b` stay one segment.
pub(crate) fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Installs ring as rustls' process-wide provider (reqwest is built without one).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::encode_segment;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_segment("host_cpu"), "host_cpu");
        assert_eq!(encode_segment("../x?y"), "..%2Fx%3Fy");
        assert_eq!(encode_segment("a b"), "a%20b");
    }
}
