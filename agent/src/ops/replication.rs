//! Logical replication streams (docs/REPLICATION.md, "Streams"): validating either end,
//! creating the publication and its slot, the subscription, and dropping them again.
//!
//! Validation never fails for what it finds: every problem is a row of the summary's
//! `problems` (`check`, `message`), so the API reports all of them at once. It reads catalogs
//! and statistics only and takes no lock on a table (a table's rows are estimated from
//! pg_stat_user_tables, not counted), so it neither waits for nor blocks the application.
//!
//! Drops are idempotent (each object only if it exists) and ordered so nothing that retains
//! WAL is left: the subscription is disabled and detached from its slot (`slot_name = NONE`)
//! before it is dropped, so dropping it never needs the publisher; the publisher's agent then
//! drops the slot and the table-sync slots of that subscription, waiting for their walsenders
//! to leave (and ending them if they do not), then the publication.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_postgres::Client;
use tokio_postgres::types::{FromSql, ToSql};

use lasect_runs::{
    ColumnDef, ConstraintDef, IndexDef, ReplicationDropParams, ReplicationPublishParams,
    ReplicationSubscribeParams, ReplicationValidateParams, StreamSide, StreamTable, TableDef,
};

use super::{OpContext, OpError, OpOutcome, pg_error_line, quote_ident};

/// How long the subscriber's agent tries to reach the publisher.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a slot's walsender gets to leave after its subscription is gone.
const SLOT_RELEASE: Duration = Duration::from_secs(15);
/// Tables one stream may hold (a longer list is a schema's job).
const MAX_TABLES: usize = 1000;

/// One thing validation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub check: &'static str,
    pub message: String,
}

fn problem(check: &'static str, message: impl Into<String>) -> Problem {
    Problem {
        check,
        message: message.into(),
    }
}

fn pg(e: tokio_postgres::Error) -> OpError {
    OpError::Postgres(e)
}

/// The first column of the one row `sql` returns (an `EXISTS`, a privilege check, an oid).
async fn one_value<T>(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<T, OpError>
where
    T: for<'a> FromSql<'a>,
{
    client
        .query_one(sql, params)
        .await
        .map_err(pg)?
        .try_get(0)
        .map_err(pg)
}

fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// A SQL string literal (standard_conforming_strings is on in run sessions).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A libpq conninfo value, quoted (`'…'` with `\` and `'` escaped).
fn conninfo_value(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The names the stream creates: plain identifiers only, so they read the same in
/// catalogs, logs and the conninfo.
fn plain_name(field: &str, name: &str) -> Result<(), OpError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(OpError::Params(format!(
            "`{field}` must be 1 to 63 of a-z, 0-9 and _, not {name:?}"
        )))
    }
}

fn summary(side: StreamSide, problems: &[Problem], extra: Value) -> Value {
    let mut s = json!({
        "side": side.as_str(),
        "problems": problems
            .iter()
            .map(|p| json!({"check": p.check, "message": p.message}))
            .collect::<Vec<_>>(),
    });
    if let (Value::Object(s), Value::Object(extra)) = (&mut s, extra) {
        s.extend(extra);
    }
    s
}

pub async fn validate(
    ctx: &mut OpContext,
    p: &ReplicationValidateParams,
) -> Result<OpOutcome, OpError> {
    plain_name("publication", &p.publication)?;
    plain_name("slot", &p.slot)?;
    plain_name("subscription", &p.subscription)?;
    if p.tables.len() > MAX_TABLES || p.definitions.len() > MAX_TABLES {
        return Err(OpError::Params(format!(
            "at most {MAX_TABLES} tables per stream"
        )));
    }
    let client = ctx.connect(p.database.as_deref()).await?;
    match p.side {
        StreamSide::Publisher => validate_publisher(&client, p).await,
        StreamSide::Subscriber => validate_subscriber(&client, p).await,
    }
}

struct Settings {
    version: i32,
    superuser: bool,
    replication: bool,
}

async fn settings(client: &Client) -> Result<Settings, OpError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, r.rolsuper, r.rolreplication \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .map_err(pg)?;
    Ok(Settings {
        version: row.try_get(0).map_err(pg)?,
        superuser: row.try_get(1).map_err(pg)?,
        replication: row.try_get(2).map_err(pg)?,
    })
}

async fn validate_publisher(
    client: &Client,
    p: &ReplicationValidateParams,
) -> Result<OpOutcome, OpError> {
    let mut problems = Vec::new();
    let me = settings(client).await?;
    let row = client
        .query_one(
            "SELECT current_setting('wal_level'), \
                    current_setting('max_replication_slots')::int, \
                    (SELECT count(*) FROM pg_replication_slots)::int, \
                    current_setting('max_wal_senders')::int, \
                    (SELECT count(*) FROM pg_stat_replication)::int, \
                    has_database_privilege(current_database(), 'CREATE'), \
                    current_database()::text, current_user::text",
            &[],
        )
        .await
        .map_err(pg)?;
    let database: String = row.try_get(6).map_err(pg)?;
    let login: String = row.try_get(7).map_err(pg)?;
    let wal_level: String = row.try_get(0).map_err(pg)?;
    let (max_slots, slots): (i32, i32) = (row.try_get(1).map_err(pg)?, row.try_get(2).map_err(pg)?);
    let (max_senders, senders): (i32, i32) =
        (row.try_get(3).map_err(pg)?, row.try_get(4).map_err(pg)?);
    let may_create: bool = row.try_get(5).map_err(pg)?;
    if wal_level != "logical" {
        problems.push(problem(
            "wal_level",
            format!(
                "wal_level is {wal_level}, logical replication needs logical \
                 (ALTER SYSTEM SET wal_level = logical, then restart the server)"
            ),
        ));
    }
    let tables = publisher_tables(client, p, &mut problems).await?;
    // The stream's slot, plus the table-sync workers' slots during the initial copy (at most
    // max_sync_workers_per_subscription at once, 2 by default).
    let sync = i32::try_from(tables.len().min(2)).unwrap_or(2);
    if max_slots - slots < 1 + sync {
        problems.push(problem(
            "max_replication_slots",
            format!(
                "{slots} of max_replication_slots = {max_slots} are in use; the stream needs {} \
                 free (its slot and {sync} for the initial copy)",
                1 + sync
            ),
        ));
    }
    if max_senders - senders < 1 + sync {
        problems.push(problem(
            "max_wal_senders",
            format!(
                "{senders} of max_wal_senders = {max_senders} are in use; the stream needs {} free",
                1 + sync
            ),
        ));
    }
    if !me.superuser && !me.replication {
        problems.push(problem(
            "privileges",
            "the agent's role may not create replication slots: it needs REPLICATION or superuser",
        ));
    }
    if !me.superuser && !may_create {
        problems.push(problem(
            "privileges",
            "the agent's role may not create a publication: it needs CREATE on the database",
        ));
    }
    if p.schema.is_some() && !me.superuser && me.version >= 150_000 {
        problems.push(problem(
            "privileges",
            "publishing every table of a schema (FOR TABLES IN SCHEMA) needs a superuser; \
             name the tables instead",
        ));
    }
    let exists = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1), \
                    EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $2)",
            &[&p.publication, &p.slot],
        )
        .await
        .map_err(pg)?;
    if exists.try_get::<_, bool>(0).map_err(pg)? {
        problems.push(problem(
            "publication",
            format!("a publication {} exists already", p.publication),
        ));
    }
    if exists.try_get::<_, bool>(1).map_err(pg)? {
        problems.push(problem(
            "slot",
            format!("a replication slot {} exists already", p.slot),
        ));
    }
    if let Some(user) = &p.replication_user {
        replication_user(client, user, &tables, &mut problems).await?;
    }
    let definitions: Vec<TableDef> = tables.into_iter().map(|(_, d)| d).collect();
    Ok(OpOutcome {
        summary: summary(
            StreamSide::Publisher,
            &problems,
            json!({
                "database": database,
                "user": login,
                "wal_level": wal_level,
                "free_replication_slots": max_slots - slots,
                "free_wal_senders": max_senders - senders,
                "tables": definitions,
            }),
        ),
    })
}

/// The tables asked for (or every table of the schema), checked, with their definitions.
async fn publisher_tables(
    client: &Client,
    p: &ReplicationValidateParams,
    problems: &mut Vec<Problem>,
) -> Result<Vec<(u32, TableDef)>, OpError> {
    let mut wanted: Vec<StreamTable> = p.tables.clone();
    if let Some(schema) = &p.schema {
        let rows = client
            .query(
                "SELECT c.relname::text FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
                   AND c.relpersistence = 'p' ORDER BY 1",
                &[schema],
            )
            .await
            .map_err(pg)?;
        if rows.is_empty() {
            problems.push(problem(
                "tables",
                format!("schema {schema} has no tables to publish"),
            ));
        }
        for r in rows {
            wanted.push(StreamTable {
                schema: schema.clone(),
                table: r.try_get(0).map_err(pg)?,
            });
        }
    }
    if wanted.is_empty() && p.schema.is_none() {
        problems.push(problem("tables", "no table to publish"));
    }
    wanted.sort();
    wanted.dedup();
    let mut out = Vec::with_capacity(wanted.len());
    for t in wanted {
        let name = format!("{}.{}", t.schema, t.table);
        let Some(row) = client
            .query_opt(
                "SELECT c.oid, c.relkind::text, c.relpersistence::text, c.relreplident::text, \
                        EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&t.schema, &t.table],
            )
            .await
            .map_err(pg)?
        else {
            problems.push(problem(
                "table_missing",
                format!("table {name} does not exist on the publisher"),
            ));
            continue;
        };
        let oid: u32 = row.try_get(0).map_err(pg)?;
        let kind: String = row.try_get(1).map_err(pg)?;
        let persistence: String = row.try_get(2).map_err(pg)?;
        let identity: String = row.try_get(3).map_err(pg)?;
        let has_pk: bool = row.try_get(4).map_err(pg)?;
        if kind != "r" && kind != "p" {
            problems.push(problem(
                "table_kind",
                format!("{name} is not a table (relkind {kind}): only tables can be published"),
            ));
            continue;
        }
        if persistence != "p" {
            problems.push(problem(
                "table_kind",
                format!("{name} is unlogged or temporary: it writes no WAL to replicate"),
            ));
            continue;
        }
        match identity.as_str() {
            "d" if !has_pk => problems.push(problem(
                "replica_identity",
                format!(
                    "table {name} has no primary key and replica identity DEFAULT: its UPDATEs \
                     and DELETEs could not be replicated (add a primary key, or ALTER TABLE \
                     {name} REPLICA IDENTITY FULL or USING INDEX)"
                ),
            )),
            "n" => problems.push(problem(
                "replica_identity",
                format!(
                    "table {name} has replica identity NOTHING: its UPDATEs and DELETEs could \
                     not be replicated"
                ),
            )),
            _ => {}
        }
        out.push((oid, definition(client, oid, &t).await?));
    }
    Ok(out)
}

async fn definition(client: &Client, oid: u32, t: &StreamTable) -> Result<TableDef, OpError> {
    // A serial column's default names its own sequence, which the subscriber does not have:
    // it is sent as `serial` (the subscriber makes its own), not as the default.
    let columns = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                    pg_get_expr(d.adbin, d.adrelid), \
                    CASE a.attidentity WHEN 'a' THEN 'identity_always' \
                      WHEN 'd' THEN 'identity_by_default' \
                      ELSE CASE WHEN pg_get_serial_sequence(a.attrelid::regclass::text, \
                                                            a.attname::text) IS NOT NULL \
                        THEN 'serial' END END \
             FROM pg_attribute a \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
               AND a.attgenerated = '' ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| {
            let generated: Option<String> = r.try_get(4)?;
            Ok(ColumnDef {
                name: r.try_get(0)?,
                type_sql: r.try_get(1)?,
                not_null: r.try_get(2)?,
                default: if generated.is_some() {
                    None
                } else {
                    r.try_get(3)?
                },
                generated,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .map_err(pg)?;
    let constraints = client
        .query(
            "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = $1 AND contype IN ('c', 'u') ORDER BY conname",
            &[&oid],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| {
            Ok(ConstraintDef {
                name: r.try_get(0)?,
                definition: r.try_get(1)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .map_err(pg)?;
    // Indexes a constraint owns (the primary key, UNIQUE) come with the constraint.
    let indexes = client
        .query(
            "SELECT c.relname::text, i.indisunique, \
                    substring(pg_get_indexdef(i.indexrelid) FROM ' USING (.*)$') \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = $1 AND NOT i.indisprimary \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid \
                               AND k.conrelid = i.indrelid) \
             ORDER BY 1",
            &[&oid],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| {
            Ok(IndexDef {
                name: r.try_get(0)?,
                unique: r.try_get(1)?,
                using: r.try_get::<_, Option<String>>(2)?.unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .map_err(pg)?;
    let primary_key = client
        .query(
            "SELECT a.attname::text FROM pg_index i \
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord",
            &[&oid],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<Vec<String>, _>>()
        .map_err(pg)?;
    Ok(TableDef {
        schema: t.schema.clone(),
        table: t.table.clone(),
        columns,
        primary_key,
        constraints,
        indexes,
    })
}

/// The role the subscriber connects as: it must log in, replicate and read every table.
async fn replication_user(
    client: &Client,
    user: &str,
    tables: &[(u32, TableDef)],
    problems: &mut Vec<Problem>,
) -> Result<(), OpError> {
    let Some(row) = client
        .query_opt(
            "SELECT rolsuper, rolreplication, rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&user],
        )
        .await
        .map_err(pg)?
    else {
        problems.push(problem(
            "privileges",
            format!("the conninfo's user {user} does not exist on the publisher"),
        ));
        return Ok(());
    };
    let (superuser, replication, login): (bool, bool, bool) = (
        row.try_get(0).map_err(pg)?,
        row.try_get(1).map_err(pg)?,
        row.try_get(2).map_err(pg)?,
    );
    if !login {
        problems.push(problem(
            "privileges",
            format!("the conninfo's user {user} may not log in (NOLOGIN)"),
        ));
    }
    if !superuser && !replication {
        problems.push(problem(
            "privileges",
            format!("the conninfo's user {user} needs the REPLICATION attribute"),
        ));
    }
    if superuser {
        return Ok(());
    }
    for (oid, t) in tables {
        let may_read: bool = one_value(
            client,
            "SELECT has_table_privilege($1, $2::oid, 'SELECT')",
            &[&user, oid],
        )
        .await?;
        if !may_read {
            problems.push(problem(
                "privileges",
                format!(
                    "the conninfo's user {user} may not SELECT {}.{}: the initial copy reads it",
                    t.schema, t.table
                ),
            ));
        }
    }
    Ok(())
}

async fn validate_subscriber(
    client: &Client,
    p: &ReplicationValidateParams,
) -> Result<OpOutcome, OpError> {
    let mut problems = Vec::new();
    let me = settings(client).await?;
    let row = client
        .query_one(
            "SELECT current_setting('max_logical_replication_workers')::int, \
                    (SELECT count(*) FROM pg_stat_subscription WHERE pid IS NOT NULL)::int, \
                    current_setting('max_replication_slots')::int, \
                    (SELECT count(*) FROM pg_replication_origin)::int, \
                    EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1), \
                    has_database_privilege(current_database(), 'CREATE')",
            &[&p.subscription],
        )
        .await
        .map_err(pg)?;
    let (max_workers, workers): (i32, i32) =
        (row.try_get(0).map_err(pg)?, row.try_get(1).map_err(pg)?);
    let (max_slots, origins): (i32, i32) =
        (row.try_get(2).map_err(pg)?, row.try_get(3).map_err(pg)?);
    let exists: bool = row.try_get(4).map_err(pg)?;
    let may_create: bool = row.try_get(5).map_err(pg)?;
    if max_workers - workers < 1 {
        problems.push(problem(
            "max_logical_replication_workers",
            format!(
                "{workers} of max_logical_replication_workers = {max_workers} are running; the \
                 subscription's apply worker needs one more"
            ),
        ));
    }
    // Until PostgreSQL 18 a subscriber's replication origins count against its own
    // max_replication_slots (18 has max_active_replication_origins).
    if me.version < 180_000 && max_slots - origins < 1 {
        problems.push(problem(
            "max_replication_slots",
            format!(
                "the subscriber tracks {origins} replication origins with max_replication_slots \
                 = {max_slots}; the subscription needs one more"
            ),
        ));
    }
    if exists {
        problems.push(problem(
            "subscription",
            format!("a subscription {} exists already", p.subscription),
        ));
    }
    let may_subscribe = me.superuser
        || (me.version >= 160_000
            && may_create
            && one_value(
                client,
                "SELECT pg_has_role(current_user, 'pg_create_subscription', 'MEMBER')",
                &[],
            )
            .await?);
    if !may_subscribe {
        problems.push(problem(
            "privileges",
            "the agent's role may not create a subscription: it needs superuser (or, from \
             PostgreSQL 16, pg_create_subscription and CREATE on the database)",
        ));
    }
    let mut to_create = Vec::new();
    for def in &p.definitions {
        target_table(client, def, p.copy_schema, &mut problems, &mut to_create).await?;
    }
    match &p.conninfo {
        Some(conninfo) => {
            if let Err(message) = reach(conninfo, p.password.as_ref().map(|s| s.0.as_str())).await {
                problems.push(problem(
                    "publisher_unreachable",
                    format!("the subscriber's agent cannot reach the publisher: {message}"),
                ));
            }
        }
        None => problems.push(problem("conninfo", "no conninfo to reach the publisher")),
    }
    Ok(OpOutcome {
        summary: summary(
            StreamSide::Subscriber,
            &problems,
            json!({
                "free_logical_replication_workers": max_workers - workers,
                "tables_to_create": to_create,
            }),
        ),
    })
}

/// Checks the subscriber's table for `def`: present with compatible columns, or missing and
/// to be created (`copy_schema`).
async fn target_table(
    client: &Client,
    def: &TableDef,
    copy_schema: bool,
    problems: &mut Vec<Problem>,
    to_create: &mut Vec<StreamTable>,
) -> Result<(), OpError> {
    let name = format!("{}.{}", def.schema, def.table);
    let row = client
        .query_opt(
            "SELECT c.oid, c.relkind::text, coalesce(s.n_live_tup, 0) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&def.schema, &def.table],
        )
        .await
        .map_err(pg)?;
    let Some(row) = row else {
        if !copy_schema {
            problems.push(problem(
                "target_table_missing",
                format!(
                    "table {name} does not exist on the subscriber (create it, or ask for \
                     --copy-schema)"
                ),
            ));
            return Ok(());
        }
        let schema_exists: bool = one_value(
            client,
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&def.schema],
        )
        .await?;
        if schema_exists {
            to_create.push(StreamTable {
                schema: def.schema.clone(),
                table: def.table.clone(),
            });
        } else {
            problems.push(problem(
                "target_table_missing",
                format!(
                    "schema {} does not exist on the subscriber: --copy-schema creates tables, \
                     not schemas",
                    def.schema
                ),
            ));
        }
        return Ok(());
    };
    let oid: u32 = row.try_get(0).map_err(pg)?;
    let kind: String = row.try_get(1).map_err(pg)?;
    let live: i64 = row.try_get(2).map_err(pg)?;
    if kind != "r" && kind != "p" {
        problems.push(problem(
            "target_table",
            format!("{name} on the subscriber is not a table (relkind {kind})"),
        ));
        return Ok(());
    }
    if live > 0 {
        problems.push(problem(
            "target_table_not_empty",
            format!(
                "table {name} on the subscriber holds about {live} rows: the initial copy adds \
                 every row of the publisher's (duplicate keys stop it); empty it first"
            ),
        ));
    }
    let here: Vec<(String, String, bool, bool)> = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                    a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' \
             FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped",
            &[&oid],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(pg)?;
    for c in &def.columns {
        match here.iter().find(|h| h.0 == c.name) {
            None => problems.push(problem(
                "target_columns",
                format!(
                    "{name} on the subscriber has no column {} ({} on the publisher)",
                    c.name, c.type_sql
                ),
            )),
            Some(h) if h.1 != c.type_sql => problems.push(problem(
                "target_columns",
                format!(
                    "{name}.{} is {} on the subscriber and {} on the publisher",
                    c.name, h.1, c.type_sql
                ),
            )),
            Some(_) => {}
        }
    }
    for h in &here {
        if h.2 && !h.3 && !def.columns.iter().any(|c| c.name == h.0) {
            problems.push(problem(
                "target_columns",
                format!(
                    "{name}.{} is NOT NULL without a default on the subscriber and not \
                     published: no replicated row could be inserted",
                    h.0
                ),
            ));
        }
    }
    Ok(())
}

/// Connects to the publisher the way the subscription will (conninfo, password).
async fn reach(conninfo: &str, password: Option<&str>) -> Result<(), String> {
    let mut pg = lasect_pgtls::PgConfig::parse(conninfo).map_err(|e| e.to_string())?;
    if let Some(pw) = password {
        pg.password(pw);
    }
    pg.application_name("lasect stream check");
    let (client, connection) = tokio::time::timeout(REACH_TIMEOUT, pg.connect())
        .await
        .map_err(|_| format!("no answer within {REACH_TIMEOUT:?}"))?
        .map_err(|e| pg_error_line(&e))?;
    let task = tokio::spawn(connection);
    let answer = client.simple_query("SELECT 1").await;
    drop(client);
    let _ = task.await;
    answer.map(|_| ()).map_err(|e| pg_error_line(&e))
}

pub async fn publish(
    ctx: &mut OpContext,
    p: &ReplicationPublishParams,
) -> Result<OpOutcome, OpError> {
    plain_name("publication", &p.publication)?;
    plain_name("slot", &p.slot)?;
    if p.tables.is_empty() || p.tables.len() > MAX_TABLES {
        return Err(OpError::Params(format!(
            "`tables` must name 1 to {MAX_TABLES} tables"
        )));
    }
    let client = ctx.connect(p.database.as_deref()).await?;
    let list = p
        .tables
        .iter()
        .map(|t| qualified(&t.schema, &t.table))
        .collect::<Vec<_>>()
        .join(", ");
    client
        .batch_execute(&format!(
            "CREATE PUBLICATION {} FOR TABLE {list}",
            quote_ident(&p.publication)
        ))
        .await
        .map_err(pg)?;
    // A slot cannot be created in a transaction that wrote: after the publication's commit.
    let lsn: String = one_value(
        &client,
        "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
        &[&p.slot],
    )
    .await?;
    Ok(OpOutcome {
        summary: json!({
            "publication": p.publication,
            "slot": p.slot,
            "consistent_lsn": lsn,
            "tables": p.tables.len(),
        }),
    })
}

pub async fn subscribe(
    ctx: &mut OpContext,
    p: &ReplicationSubscribeParams,
) -> Result<OpOutcome, OpError> {
    plain_name("subscription", &p.subscription)?;
    plain_name("publication", &p.publication)?;
    plain_name("slot", &p.slot)?;
    if p.conninfo.trim().is_empty() {
        return Err(OpError::Params("`conninfo` is required".into()));
    }
    if p.create_tables.len() > MAX_TABLES {
        return Err(OpError::Params(format!(
            "at most {MAX_TABLES} tables per stream"
        )));
    }
    let ddl = p
        .create_tables
        .iter()
        .map(create_table)
        .collect::<Result<Vec<_>, _>>()?;
    let client = ctx.connect(p.database.as_deref()).await?;
    client
        .batch_execute("SET standard_conforming_strings = on")
        .await
        .map_err(pg)?;
    // CREATE SUBSCRIPTION carries the password in its text: keep that text out of
    // pg_stat_activity (which the agent's own lock-wait samples read) and out of the server
    // log when it fails. Both need a superuser; a role that may not set them still subscribes.
    for hide in [
        "SET track_activities = off",
        "SET log_min_error_statement = panic",
        "SET log_statement = none",
    ] {
        if let Err(e) = client.batch_execute(hide).await {
            tracing::debug!(setting = hide, error = %pg_error_line(&e), "not hidden");
        }
    }
    let mut created = Vec::new();
    if !p.create_tables.is_empty() {
        for t in &p.create_tables {
            created.push(json!({"schema": t.schema, "table": t.table}));
        }
        if let Err(e) = create_tables(&client, &ddl).await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(OpError::Failed {
                message: format!(
                    "creating the subscriber's tables failed (none was created): {}",
                    pg_error_line(&e)
                ),
                detail: super::pg_error_detail(&e),
            });
        }
    }
    let mut conninfo = p.conninfo.trim().to_owned();
    if let Some(pw) = &p.password {
        conninfo.push_str(" password=");
        conninfo.push_str(&conninfo_value(&pw.0));
    }
    let create = format!(
        "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} \
         WITH (create_slot = false, slot_name = {}, copy_data = true)",
        quote_ident(&p.subscription),
        literal(&conninfo),
        quote_ident(&p.publication),
        literal(&p.slot),
    );
    if let Err(e) = client.batch_execute(&create).await {
        // This run's own tables go with it: the stream's rollback then has nothing of the
        // subscriber's to undo.
        let mut dropped = Vec::new();
        for t in &p.create_tables {
            let sql = format!("DROP TABLE IF EXISTS {}", qualified(&t.schema, &t.table));
            if client.batch_execute(&sql).await.is_ok() {
                dropped.push(json!({"schema": t.schema, "table": t.table}));
            }
        }
        return Err(OpError::Failed {
            message: format!("CREATE SUBSCRIPTION failed: {}", pg_error_line(&e)),
            detail: json!({
                "error": super::pg_error_detail(&e),
                "created_tables_dropped": dropped,
            }),
        });
    }
    let suboid: i64 = one_value(
        &client,
        "SELECT oid::int8 FROM pg_subscription WHERE subname = $1 \
         AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
        &[&p.subscription],
    )
    .await?;
    Ok(OpOutcome {
        summary: json!({
            "subscription": p.subscription,
            "suboid": suboid,
            "created_tables": created,
        }),
    })
}

/// What format_type() writes: names (quoted when needed), typmods, array brackets; never a
/// statement separator or a comment, which would let a type name carry more SQL.
fn plain_type(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 256
        && !t.contains(';')
        && !t.contains("--")
        && !t.contains("/*")
        && !t.contains('\0')
}

/// Runs the statements of [`create_table`] in one transaction. Each goes alone through the
/// extended protocol, which takes exactly one statement: a definition that tried to carry a
/// second one (`…; DROP …`) fails instead of running it.
async fn create_tables(client: &Client, ddl: &[Vec<String>]) -> Result<(), tokio_postgres::Error> {
    client.batch_execute("BEGIN").await?;
    for statement in ddl.iter().flatten() {
        client.execute(statement.as_str(), &[]).await?;
    }
    client.batch_execute("COMMIT").await
}

/// The statements that create a published table on the subscriber: `CREATE TABLE` with its
/// columns (types, defaults, NOT NULLs, serial and identity columns), primary key, CHECK and
/// UNIQUE constraints, then one `CREATE INDEX` per other index. Definitions that are not of
/// the shape the publisher's agent writes are refused.
fn create_table(t: &TableDef) -> Result<Vec<String>, OpError> {
    let mut parts = Vec::with_capacity(t.columns.len() + t.constraints.len() + 1);
    for c in &t.columns {
        if !plain_type(&c.type_sql) {
            return Err(OpError::Params(format!(
                "column {:?} has type {:?}, which is not a type name",
                c.name, c.type_sql
            )));
        }
        let mut column = format!("{} ", quote_ident(&c.name));
        match c.generated.as_deref() {
            None => column.push_str(&c.type_sql),
            Some("serial") => column.push_str(match c.type_sql.as_str() {
                "bigint" => "bigserial",
                "integer" => "serial",
                "smallint" => "smallserial",
                other => other,
            }),
            Some("identity_always") => {
                column.push_str(&c.type_sql);
                column.push_str(" GENERATED ALWAYS AS IDENTITY");
            }
            Some("identity_by_default") => {
                column.push_str(&c.type_sql);
                column.push_str(" GENERATED BY DEFAULT AS IDENTITY");
            }
            Some(other) => {
                return Err(OpError::Params(format!(
                    "column {:?}: unknown generated kind {other:?} (serial, identity_always, \
                     identity_by_default)",
                    c.name
                )));
            }
        }
        if let Some(default) = &c.default {
            column.push_str(" DEFAULT ");
            column.push_str(default);
        }
        if c.not_null {
            column.push_str(" NOT NULL");
        }
        parts.push(column);
    }
    for k in &t.constraints {
        if !(k.definition.starts_with("CHECK ") || k.definition.starts_with("UNIQUE ")) {
            return Err(OpError::Params(format!(
                "constraint {:?} of {}.{} is not a CHECK or UNIQUE constraint: {:?}",
                k.name, t.schema, t.table, k.definition
            )));
        }
        parts.push(format!(
            "CONSTRAINT {} {}",
            quote_ident(&k.name),
            k.definition
        ));
    }
    if !t.primary_key.is_empty() {
        parts.push(format!(
            "PRIMARY KEY ({})",
            t.primary_key
                .iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut out = vec![format!(
        "CREATE TABLE {} ({})",
        qualified(&t.schema, &t.table),
        parts.join(", ")
    )];
    for i in &t.indexes {
        if i.using.trim().is_empty() {
            return Err(OpError::Params(format!(
                "index {:?} of {}.{} has no definition",
                i.name, t.schema, t.table
            )));
        }
        out.push(format!(
            "CREATE {}INDEX {} ON {} USING {}",
            if i.unique { "UNIQUE " } else { "" },
            quote_ident(&i.name),
            qualified(&t.schema, &t.table),
            i.using
        ));
    }
    Ok(out)
}

pub async fn drop_objects(
    ctx: &mut OpContext,
    p: &ReplicationDropParams,
) -> Result<OpOutcome, OpError> {
    let client = ctx.connect(p.database.as_deref()).await?;
    match p.side {
        StreamSide::Subscriber => drop_subscriber(&client, p).await,
        StreamSide::Publisher => drop_publisher(&client, p).await,
    }
}

async fn drop_subscriber(client: &Client, p: &ReplicationDropParams) -> Result<OpOutcome, OpError> {
    let mut suboid: Option<i64> = None;
    if !p.subscription.is_empty() {
        plain_name("subscription", &p.subscription)?;
        suboid = client
            .query_opt(
                "SELECT oid::int8 FROM pg_subscription WHERE subname = $1 \
                 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[&p.subscription],
            )
            .await
            .map_err(pg)?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(pg)?;
        if suboid.is_some() {
            let sub = quote_ident(&p.subscription);
            // Detached from its slot, the drop does not connect to the publisher (which may
            // be unreachable); the publisher's agent drops the slot.
            for sql in [
                format!("ALTER SUBSCRIPTION {sub} DISABLE"),
                format!("ALTER SUBSCRIPTION {sub} SET (slot_name = NONE)"),
                format!("DROP SUBSCRIPTION {sub}"),
            ] {
                client.batch_execute(&sql).await.map_err(pg)?;
            }
        }
    }
    let mut dropped = Vec::new();
    for t in &p.drop_tables {
        let exists: bool = one_value(
            client,
            "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n \
             ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2)",
            &[&t.schema, &t.table],
        )
        .await?;
        if exists {
            client
                .batch_execute(&format!("DROP TABLE {}", qualified(&t.schema, &t.table)))
                .await
                .map_err(pg)?;
            dropped.push(json!({"schema": t.schema, "table": t.table}));
        }
    }
    Ok(OpOutcome {
        summary: json!({
            "side": "subscriber",
            "subscription_dropped": suboid.is_some(),
            "suboid": suboid,
            "tables_dropped": dropped,
        }),
    })
}

async fn drop_publisher(client: &Client, p: &ReplicationDropParams) -> Result<OpOutcome, OpError> {
    // Table-sync slots: pg_<suboid>_sync_<relid>_<system identifier> (PostgreSQL 14+).
    let sync_prefix = p.suboid.map(|o| format!("pg\\_{o}\\_sync\\_%"));
    let deadline = tokio::time::Instant::now() + SLOT_RELEASE;
    let mut dropped: Vec<String> = Vec::new();
    loop {
        let rows = client
            .query(
                "SELECT slot_name::text, active, active_pid FROM pg_replication_slots \
                 WHERE slot_name = $1 OR ($2::text IS NOT NULL AND slot_name LIKE $2)",
                &[&p.slot, &sync_prefix],
            )
            .await
            .map_err(pg)?;
        if rows.is_empty() {
            break;
        }
        let late = tokio::time::Instant::now() >= deadline;
        for r in &rows {
            let name: String = r.try_get(0).map_err(pg)?;
            let active: bool = r.try_get(1).map_err(pg)?;
            let pid: Option<i32> = r.try_get(2).map_err(pg)?;
            if active && late {
                // Its subscriber is gone or detached; a walsender still holding the slot
                // would keep WAL forever.
                if let Some(pid) = pid {
                    client
                        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
                        .await
                        .map_err(pg)?;
                }
                continue;
            }
            if active {
                continue;
            }
            match client
                .query_one("SELECT pg_drop_replication_slot($1)", &[&name])
                .await
            {
                Ok(_) => dropped.push(name),
                // Taken again between the read and the drop, or already gone: look again.
                Err(e) if e.code().is_some() => {
                    tracing::debug!(slot = %name, error = %pg_error_line(&e), "slot not dropped yet");
                }
                Err(e) => return Err(pg(e)),
            }
        }
        if tokio::time::Instant::now() >= deadline + SLOT_RELEASE {
            return Err(OpError::Failed {
                message: format!(
                    "replication slot(s) {} still in use after {:?}: not dropped (they retain \
                     WAL; run the removal again)",
                    rows.iter()
                        .filter_map(|r| r.try_get::<_, String>(0).ok())
                        .collect::<Vec<_>>()
                        .join(", "),
                    SLOT_RELEASE * 2
                ),
                detail: json!({"slots_dropped": dropped}),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut publication_dropped = false;
    if !p.publication.is_empty() {
        plain_name("publication", &p.publication)?;
        let exists: bool = one_value(
            client,
            "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)",
            &[&p.publication],
        )
        .await?;
        if exists {
            client
                .batch_execute(&format!("DROP PUBLICATION {}", quote_ident(&p.publication)))
                .await
                .map_err(pg)?;
            publication_dropped = true;
        }
    }
    Ok(OpOutcome {
        summary: json!({
            "side": "publisher",
            "slots_dropped": dropped,
            "publication_dropped": publication_dropped,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_names_are_plain() {
        assert!(plain_name("slot", "lasect_stream_12").is_ok());
        for bad in ["", "Upper", "a b", "a\"b", "x';--", &"a".repeat(64)] {
            assert!(plain_name("slot", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_are_quoted_for_libpq_and_sql() {
        assert_eq!(conninfo_value(r"it's\x"), r"'it\'s\\x'");
        assert_eq!(
            literal("host=a password='it\\'s'"),
            "'host=a password=''it\\''s'''"
        );
    }

    #[test]
    fn only_type_names_become_column_types() {
        for t in [
            "integer",
            "character varying(20)",
            "\"My Type\"[]",
            "numeric(10,2)",
        ] {
            assert!(plain_type(t), "{t}");
        }
        for t in ["", "int; DROP TABLE x", "int -- x", "int /* x */"] {
            assert!(!plain_type(t), "{t}");
        }
    }

    #[test]
    fn copied_tables_keep_types_defaults_constraints_and_indexes() {
        let column = |name: &str, type_sql: &str, not_null: bool| ColumnDef {
            name: name.into(),
            type_sql: type_sql.into(),
            not_null,
            default: None,
            generated: None,
        };
        let mut id = column("id", "bigint", true);
        id.generated = Some("serial".into());
        let mut qty = column("qty", "integer", true);
        qty.default = Some("7".into());
        let t = TableDef {
            schema: "sales".into(),
            table: "Orders".into(),
            columns: vec![id, column("note", "character varying(20)", false), qty],
            primary_key: vec!["id".into()],
            constraints: vec![ConstraintDef {
                name: "qty_positive".into(),
                definition: "CHECK ((qty >= 0))".into(),
            }],
            indexes: vec![IndexDef {
                name: "orders_note".into(),
                unique: false,
                using: "btree (note)".into(),
            }],
        };
        assert_eq!(
            create_table(&t).expect("statements"),
            [
                "CREATE TABLE \"sales\".\"Orders\" (\"id\" bigserial NOT NULL, \
                 \"note\" character varying(20), \"qty\" integer DEFAULT 7 NOT NULL, \
                 CONSTRAINT \"qty_positive\" CHECK ((qty >= 0)), PRIMARY KEY (\"id\"))",
                "CREATE INDEX \"orders_note\" ON \"sales\".\"Orders\" USING btree (note)",
            ]
        );
        let mut foreign = t.clone();
        foreign.constraints[0].definition = "FOREIGN KEY (id) REFERENCES other(id)".into();
        assert!(create_table(&foreign).is_err());
        let mut odd = t.clone();
        odd.columns[0].generated = Some("sometimes".into());
        assert!(create_table(&odd).is_err());
        let mut typed = t;
        typed.columns[1].type_sql = "int; DROP TABLE x".into();
        assert!(create_table(&typed).is_err());
    }
}
