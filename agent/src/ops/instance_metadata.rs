//! `instance_metadata`: what a DBA looks at first: version, uptime,
//! replication state, roles, extensions and database sizes.

use serde_json::{Value, json};

use super::{OpContext, OpError, OpOutcome};

pub async fn run(ctx: &mut OpContext) -> Result<OpOutcome, OpError> {
    let client = ctx.connect(None).await?;
    let pg = |e| OpError::Postgres(e);
    let head = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int,
                    to_char(pg_postmaster_start_time() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    extract(epoch FROM now() - pg_postmaster_start_time())::bigint,
                    pg_is_in_recovery()",
            &[],
        )
        .await
        .map_err(pg)?;
    let json_rows = |rows: Vec<tokio_postgres::Row>| -> Vec<Value> {
        rows.iter()
            .filter_map(|r| r.try_get::<_, Value>(0).ok())
            .collect()
    };
    let senders = client
        .query(
            "SELECT json_build_object('application_name', application_name,
                 'client_addr', client_addr::text, 'state', state, 'sync_state', sync_state,
                 'replay_lag_bytes', pg_wal_lsn_diff(
                     CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                          ELSE pg_current_wal_lsn() END, replay_lsn))
             FROM pg_stat_replication",
            &[],
        )
        .await
        .map_err(pg)?;
    let receiver = client
        .query(
            "SELECT json_build_object('status', status, 'sender_host', sender_host,
                 'sender_port', sender_port, 'slot_name', slot_name)
             FROM pg_stat_wal_receiver",
            &[],
        )
        .await
        .map_err(pg)?;
    let slots = client
        .query(
            "SELECT json_build_object('slot_name', slot_name, 'slot_type', slot_type,
                 'active', active, 'database', database)
             FROM pg_replication_slots",
            &[],
        )
        .await
        .map_err(pg)?;
    let publications = client
        .query("SELECT to_json(pubname) FROM pg_publication", &[])
        .await
        .map_err(pg)?;
    let subscriptions = client
        .query(
            "SELECT json_build_object('name', subname, 'enabled', subenabled,
                 'publications', subpublications)
             FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database
                                                   WHERE datname = current_database())",
            &[],
        )
        .await
        .map_err(pg)?;
    let roles = client
        .query(
            "SELECT json_build_object('name', r.rolname, 'superuser', r.rolsuper,
                 'login', r.rolcanlogin, 'replication', r.rolreplication,
                 'member_of', ARRAY(SELECT b.rolname FROM pg_auth_members m
                                    JOIN pg_roles b ON b.oid = m.roleid
                                    WHERE m.member = r.oid ORDER BY 1))
             FROM pg_roles r WHERE r.rolname !~ '^pg_' ORDER BY r.rolname",
            &[],
        )
        .await
        .map_err(pg)?;
    let extensions = client
        .query(
            "SELECT json_build_object('name', extname, 'version', extversion,
                 'database', current_database())
             FROM pg_extension ORDER BY extname",
            &[],
        )
        .await
        .map_err(pg)?;
    let databases = client
        .query(
            "SELECT json_build_object('name', datname, 'size_bytes',
                 CASE WHEN has_database_privilege(datname, 'CONNECT')
                      THEN pg_database_size(datname) END)
             FROM pg_database WHERE datallowconn ORDER BY datname",
            &[],
        )
        .await
        .map_err(pg)?;
    Ok(OpOutcome {
        summary: json!({
            "version": head.get::<_, String>(0),
            "server_version_num": head.get::<_, i32>(1),
            "started_at": head.get::<_, Option<String>>(2),
            "uptime_s": head.get::<_, Option<i64>>(3),
            "in_recovery": head.get::<_, bool>(4),
            "replication": {
                "senders": json_rows(senders),
                "receiver": json_rows(receiver).into_iter().next(),
                "slots": json_rows(slots),
                "publications": json_rows(publications),
                "subscriptions": json_rows(subscriptions),
            },
            "roles": json_rows(roles),
            "extensions": json_rows(extensions),
            "databases": json_rows(databases),
        }),
    })
}
