//! Who a read-only run logs in as.
//!
//! The read-only kinds (`sql` and `explain` without `write`, `export_csv`,
//! `table_data`, `schema_snapshot`) run their statement in a READ ONLY
//! transaction. That stops writes to tables, not the side effects a
//! privileged role can reach from a single `SELECT`: `COPY … TO PROGRAM`,
//! `pg_read_file`, `lo_export`, `pg_terminate_backend`, `dblink_exec`,
//! `set_config` of superuser settings. What a session may do is bounded only
//! by its *login* role (`session_user`): a `SET ROLE` to an unprivileged role
//! is no boundary, since the run's own SQL can `RESET ROLE` or
//! `SELECT set_config('role', 'postgres', false)`.
//!
//! So a read-only run connects with the instance's `run_dsn` (default: its
//! DSN) and, before any of the run's SQL is sent, [`check_login_role`]
//! refuses the session when its login role is a superuser or a member
//! (directly or through other roles) of one of [`PRIVILEGED_ROLES`], unless
//! the instance sets `allow_privileged_runs`. The other kinds are opt-in
//! classes of the agent's `[control] allow` (writes, DDL, import, dump,
//! extension changes) or fixed SQL of the agent's own (instance check and
//! metadata); they use the instance's DSN and are not checked here.

use lasect_runs::{ExplainParams, RunParams, SqlParams};
use tokio_postgres::Client;

use super::OpError;

/// Predefined roles whose members escape a READ ONLY transaction: they run
/// server programs, read or write server files, or signal other backends.
pub const PRIVILEGED_ROLES: &[&str] = &[
    "pg_execute_server_program",
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_signal_backend",
];

/// Whether the run is one of the read-only kinds whose login role is
/// checked.
pub fn is_read_only(params: &RunParams) -> bool {
    match params {
        RunParams::Sql(SqlParams { write, .. })
        | RunParams::Explain(ExplainParams { write, .. }) => !write,
        RunParams::ExportCsv(_) | RunParams::TableData(_) | RunParams::SchemaSnapshot(_) => true,
        RunParams::InstanceCheck(_)
        | RunParams::InstanceMetadata(_)
        | RunParams::ImportCsv(_)
        | RunParams::DumpSql(_)
        | RunParams::ExtensionList(_)
        | RunParams::ExtensionAction(_)
        | RunParams::Migration(_)
        | RunParams::BackupStanza(_)
        | RunParams::Backup(_)
        | RunParams::BackupInfo(_)
        | RunParams::BackupRestore(_)
        | RunParams::BackupDrill(_)
        | RunParams::ReplicationValidate(_)
        | RunParams::ReplicationPublish(_)
        | RunParams::ReplicationSubscribe(_)
        | RunParams::ReplicationDrop(_) => false,
    }
}

/// Refuses the session (`OpError::Refused`) when its login role is a
/// superuser or a member of a [`PRIVILEGED_ROLES`] role. `instance` names the
/// instance in the message, which says how to fix it.
pub async fn check_login_role(client: &Client, instance: &str) -> Result<(), OpError> {
    // A role that does not exist in this server version is skipped rather
    // than failing pg_has_role.
    let row = client
        .query_one(
            "SELECT session_user::text, r.rolsuper,
                    ARRAY(SELECT g FROM unnest($1::text[]) AS g
                          WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = g)
                            AND pg_has_role(session_user, g, 'MEMBER'))
             FROM pg_roles r WHERE r.rolname = session_user",
            &[&PRIVILEGED_ROLES],
        )
        .await
        .map_err(OpError::Postgres)?;
    let login: String = row.try_get(0).map_err(OpError::Postgres)?;
    let superuser: bool = row.try_get(1).map_err(OpError::Postgres)?;
    let member_of: Vec<String> = row.try_get(2).map_err(OpError::Postgres)?;
    let what = if superuser {
        "a superuser".to_owned()
    } else if let Some(first) = member_of.first() {
        format!("a member of {first}")
    } else {
        return Ok(());
    };
    Err(OpError::Refused(refusal(instance, &login, &what)))
}

fn refusal(instance: &str, login: &str, what: &str) -> String {
    format!(
        "refused: read-only runs on instance `{instance}` log in as `{login}`, {what}, \
         which can run programs, touch server files or stop backends even in a READ ONLY \
         transaction. Give the instance a `run_dsn` whose role is unprivileged (e.g. a role \
         granted only pg_read_all_data and pg_monitor), or set `allow_privileged_runs = true` \
         for it to accept the risk"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn params(kind: &str, params: &Value) -> RunParams {
        RunParams::from_json(kind.parse().expect("a kind"), params).expect("parameters")
    }

    #[test]
    fn read_only_kinds_are_the_ones_checked() {
        for (kind, json) in [
            ("sql", json!({})),
            ("sql", json!({"write": false})),
            ("explain", json!({"analyze": true})),
            ("explain", json!({})),
            ("export_csv", json!({"sql": "SELECT 1"})),
            ("table_data", json!({"table": "t"})),
            ("schema_snapshot", json!({})),
        ] {
            assert!(is_read_only(&params(kind, &json)), "{kind} {json}");
        }
        for (kind, json) in [
            ("sql", json!({"write": true})),
            ("explain", json!({"analyze": true, "write": true})),
            ("import_csv", json!({"table": "t"})),
            ("dump_sql", json!({})),
            ("migration", json!({})),
            ("extension_action", json!({"action": "enable", "name": "x"})),
            ("instance_check", json!({})),
        ] {
            assert!(!is_read_only(&params(kind, &json)), "{kind} {json}");
        }
    }

    #[test]
    fn the_refusal_names_the_role_and_both_fixes() {
        let m = refusal("main", "postgres", "a superuser");
        for needle in [
            "`main`",
            "`postgres`",
            "a superuser",
            "run_dsn",
            "pg_read_all_data",
            "allow_privileged_runs = true",
        ] {
            assert!(m.contains(needle), "{needle} missing from {m}");
        }
    }
}
