//! `instance_check`: can the agent work with this instance, and which
//! features will not work and why. Fails (with the reasons as detail) when
//! the server is unreachable or older than PostgreSQL 13.

use serde_json::{Value, json};

use super::{OpContext, OpError, OpOutcome};

const MIN_VERSION_NUM: i32 = 130_000;

pub async fn run(ctx: &mut OpContext) -> Result<OpOutcome, OpError> {
    let client = ctx.connect(None).await?;
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int,
                    current_setting('server_version'),
                    pg_is_in_recovery(),
                    current_user::text,
                    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                    pg_has_role(current_user, 'pg_monitor', 'USAGE'),
                    pg_has_role(current_user, 'pg_read_all_settings', 'USAGE'),
                    EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'),
                    current_setting('shared_preload_libraries') ~ 'pg_stat_statements',
                    has_function_privilege('pg_ls_logdir()', 'EXECUTE'),
                    current_database()::text",
            &[],
        )
        .await
        .map_err(OpError::Postgres)?;
    let version_num: i32 = row.get(0);
    let version: String = row.get(1);
    let in_recovery: bool = row.get(2);
    let user: String = row.get(3);
    let superuser: bool = row.get::<_, Option<bool>>(4).unwrap_or(false);
    let monitor = superuser || row.get::<_, bool>(5);
    let settings = superuser || row.get::<_, bool>(6);
    let pgss_installed: bool = row.get(7);
    let pgss_preloaded: bool = row.get(8);
    let logdir: bool = superuser || row.get::<_, bool>(9);
    let database: String = row.get(10);

    let feature = |name: &str, ok: bool, reason: &str| json!({ "feature": name, "ok": ok, "reason": if ok { Value::Null } else { Value::from(reason) } });
    let features = vec![
        feature(
            "activity_and_statistics",
            monitor,
            "the role is not a member of pg_monitor: other sessions' queries and some statistics are hidden",
        ),
        feature(
            "statements",
            pgss_installed && pgss_preloaded,
            if !pgss_preloaded {
                "pg_stat_statements is not in shared_preload_libraries"
            } else {
                "CREATE EXTENSION pg_stat_statements has not been run in this database"
            },
        ),
        feature(
            "settings",
            settings,
            "the role cannot read all settings (pg_read_all_settings)",
        ),
        feature(
            "logs",
            logdir,
            "the role may not list the log directory (pg_ls_logdir); the agent needs file access to the logs",
        ),
        feature(
            "replication",
            monitor,
            "replication details (pg_stat_replication) need pg_monitor",
        ),
        feature(
            "least_privilege",
            !superuser,
            "the agent connects as a superuser: read-only runs cannot stop COPY TO PROGRAM or \
             server file functions; give the agent a pg_monitor role instead",
        ),
    ];
    let summary = json!({
        "ok": version_num >= MIN_VERSION_NUM,
        "server_version_num": version_num,
        "version": version,
        "in_recovery": in_recovery,
        "user": user,
        "superuser": superuser,
        "database": database,
        "features": features,
    });
    if version_num < MIN_VERSION_NUM {
        return Err(OpError::Failed {
            message: format!(
                "PostgreSQL {version} is not supported: Lasect needs version 13 or later"
            ),
            detail: summary,
        });
    }
    Ok(OpOutcome { summary })
}
