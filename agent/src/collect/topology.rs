//! `replication_identity`, `subscription_source` and `publication`: what the
//! replication topology needs beyond the other replication families.
//!
//! Publications are per database: those of the DSN's database, with their
//! tables from pg_publication_tables (FOR ALL TABLES and, from 15, FOR
//! TABLES IN SCHEMA expanded; the view's columns used here are the same
//! from 13 to 18).
//!
//! The identity is the cluster's system identifier (a primary and its
//! physical standbys share it), the timeline and the WAL position. On a
//! primary the timeline is read from the current WAL file's name, which
//! follows a promotion at once (the control file's checkpoint timeline only
//! after the next checkpoint); on a standby from the WAL receiver, else the
//! last checkpoint. The same SQL serves PostgreSQL 13 to 18.
//!
//! A subscription's source is parsed here from its conninfo: only host, port
//! and dbname leave the agent, never the conninfo itself (it may hold a
//! password). subconninfo is readable by superusers only; for other roles
//! the source columns stay empty and the slot and publications still come.

use lasect_proto::v1::{
    PublicationSnapshot, PublishedTable, ReplicationIdentity, SubscriptionSource,
    SubscriptionSourceSnapshot,
};
use tokio_postgres::Client;

/// Subscriptions sent per sample, at most.
const MAX_ROWS: i64 = 1000;

pub const IDENTITY_QUERY: &str = "SELECT (pg_control_system()).system_identifier AS system_identifier, \
     pg_is_in_recovery() AS in_recovery, \
     CASE WHEN pg_is_in_recovery() \
       THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver LIMIT 1), \
                     (pg_control_checkpoint()).timeline_id) \
       ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int4 \
     END AS timeline_id, \
     ((CASE WHEN pg_is_in_recovery() \
        THEN coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) \
        ELSE pg_current_wal_lsn() END) - '0/0')::int8 AS wal_lsn, \
     current_setting('port')::int4 AS port, \
     coalesce(host(inet_server_addr()), '') AS server_addr, \
     (SELECT conninfo FROM pg_stat_wal_receiver LIMIT 1) AS receiver_conninfo, \
     current_setting('cluster_name') AS cluster_name";

pub fn sources_query(may_read_conninfo: bool) -> String {
    let conninfo = if may_read_conninfo {
        "s.subconninfo"
    } else {
        "NULL::text"
    };
    format!(
        "SELECT s.subname::text AS subname, d.datname::text AS datname, s.subenabled AS enabled, \
         coalesce(s.subslotname::text, '') AS slot_name, \
         array_to_string(s.subpublications, ',') AS publications, {conninfo} AS conninfo \
         FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid \
         ORDER BY 1, 2 LIMIT {MAX_ROWS}"
    )
}

pub const PUBLICATIONS_QUERY: &str = "SELECT current_database()::text AS datname, \
     p.pubname::text AS pubname, p.puballtables AS all_tables, \
     coalesce(t.schemaname::text, '') AS schemaname, coalesce(t.tablename::text, '') AS relname \
     FROM pg_publication p LEFT JOIN pg_publication_tables t ON t.pubname = p.pubname \
     ORDER BY 2, 4, 5 LIMIT 1000";

/// The published tables, or `None` when the database has no publication.
pub async fn publications(
    client: &Client,
) -> Result<Option<PublicationSnapshot>, tokio_postgres::Error> {
    let rows = client.query(PUBLICATIONS_QUERY, &[]).await?;
    let mut tables = Vec::with_capacity(rows.len());
    for row in &rows {
        tables.push(PublishedTable {
            datname: row.try_get("datname")?,
            pubname: row.try_get("pubname")?,
            all_tables: row.try_get("all_tables")?,
            schemaname: row.try_get("schemaname")?,
            relname: row.try_get("relname")?,
        });
    }
    if tables.is_empty() {
        return Ok(None);
    }
    Ok(Some(PublicationSnapshot { tables }))
}

const CONNINFO_PRIVILEGE: &str =
    "SELECT has_column_privilege('pg_catalog.pg_subscription', 'subconninfo', 'SELECT')";

pub async fn identity(client: &Client) -> Result<ReplicationIdentity, tokio_postgres::Error> {
    let row = client.query_one(IDENTITY_QUERY, &[]).await?;
    let in_recovery: bool = row.try_get("in_recovery")?;
    let receiver_application_name = if in_recovery {
        receiver_application_name(
            row.try_get::<_, Option<String>>("receiver_conninfo")?
                .as_deref(),
            &row.try_get::<_, String>("cluster_name")?,
        )
    } else {
        String::new()
    };
    Ok(ReplicationIdentity {
        system_identifier: row.try_get("system_identifier")?,
        timeline_id: row.try_get("timeline_id")?,
        in_recovery,
        wal_lsn: row.try_get("wal_lsn")?,
        port: row.try_get("port")?,
        server_addr: row.try_get("server_addr")?,
        receiver_application_name,
    })
}

/// The application_name a WAL receiver connects with: its conninfo's, else
/// cluster_name, else libpq's fallback the receiver sets ("walreceiver").
pub fn receiver_application_name(conninfo: Option<&str>, cluster_name: &str) -> String {
    conninfo
        .map(|c| Target::parse(c).application_name)
        .filter(|a| !a.is_empty())
        .or_else(|| (!cluster_name.is_empty()).then(|| cluster_name.to_string()))
        .unwrap_or_else(|| "walreceiver".to_string())
}

/// The sources, or `None` when the instance has no subscriptions.
pub async fn sources(
    client: &Client,
) -> Result<Option<SubscriptionSourceSnapshot>, tokio_postgres::Error> {
    let may_read: bool = client
        .query_one(CONNINFO_PRIVILEGE, &[])
        .await?
        .try_get(0)?;
    let rows = client.query(&sources_query(may_read), &[]).await?;
    let mut subscriptions = Vec::with_capacity(rows.len());
    for row in &rows {
        let target = row
            .try_get::<_, Option<String>>("conninfo")?
            .map(|c| Target::parse(&c))
            .unwrap_or_default();
        subscriptions.push(SubscriptionSource {
            subname: row.try_get("subname")?,
            datname: row.try_get("datname")?,
            enabled: row.try_get("enabled")?,
            slot_name: row.try_get("slot_name")?,
            conn_host: target.host,
            conn_port: target.port,
            conn_dbname: target.dbname,
            publications: row
                .try_get::<_, Option<String>>("publications")?
                .unwrap_or_default(),
        });
    }
    if subscriptions.is_empty() {
        return Ok(None);
    }
    Ok(Some(SubscriptionSourceSnapshot { subscriptions }))
}

/// Where a libpq connection string points; everything else in it (user,
/// password, TLS files, options) is dropped while parsing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// `host`, else `hostaddr`; empty for the default (a local socket).
    pub host: String,
    /// The first port; `None` when absent (libpq's default, 5432) or not a port.
    pub port: Option<i32>,
    pub dbname: String,
    pub application_name: String,
}

impl Target {
    /// Parses both libpq forms: `key=value ...` (values optionally quoted
    /// with `'`, backslash escapes) and `postgres[ql]://...` URIs. A
    /// malformed string gives what could be read, never an error: the
    /// server accepted it already.
    pub fn parse(conninfo: &str) -> Target {
        let trimmed = conninfo.trim_start();
        let pairs = if trimmed.starts_with("postgresql://") || trimmed.starts_with("postgres://") {
            uri_pairs(trimmed)
        } else {
            keyword_pairs(trimmed)
        };
        let mut host = String::new();
        let mut hostaddr = String::new();
        let mut target = Target::default();
        for (key, value) in pairs {
            match key.as_str() {
                "host" => host = value,
                "hostaddr" => hostaddr = value,
                "port" => {
                    target.port = value
                        .split(',')
                        .next()
                        .and_then(|p| p.trim().parse::<i32>().ok())
                        .filter(|p| (1..=65_535).contains(p));
                }
                "dbname" => target.dbname = value,
                "application_name" => target.application_name = value,
                _ => {}
            }
        }
        target.host = if host.is_empty() { hostaddr } else { host };
        target
    }
}

fn keyword_pairs(s: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        if key.is_empty() {
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
    pairs
}

fn uri_pairs(s: &str) -> Vec<(String, String)> {
    let rest = s.split_once("://").map_or("", |(_, r)| r);
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = main.split_once('/').unwrap_or((main, ""));
    // The user info (and its password) is everything before the last '@'.
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let mut pairs = Vec::new();
    let first = hosts.split(',').next().unwrap_or("");
    let (host, port) = if let Some(inner) = first.strip_prefix('[') {
        let (h, after) = inner.split_once(']').unwrap_or((inner, ""));
        (h.to_string(), after.strip_prefix(':').unwrap_or(""))
    } else {
        let (h, p) = first.split_once(':').unwrap_or((first, ""));
        (percent_decode(h), p)
    };
    pairs.push(("host".to_string(), host));
    if !port.is_empty() {
        pairs.push(("port".to_string(), port.to_string()));
    }
    if !path.is_empty() {
        pairs.push(("dbname".to_string(), percent_decode(path)));
    }
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        pairs.push((percent_decode(k), percent_decode(v)));
    }
    pairs
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_conninfo_keeps_host_port_dbname_only() {
        let t = Target::parse(
            "host=db1.example port=5433 user=rep password='s3cr\\'et x' dbname = app sslmode=require",
        );
        assert_eq!(
            t,
            Target {
                host: "db1.example".into(),
                port: Some(5433),
                dbname: "app".into(),
                application_name: String::new(),
            }
        );
        let t = Target::parse("hostaddr=10.0.0.5 dbname='my db'");
        assert_eq!(t.host, "10.0.0.5");
        assert_eq!(t.dbname, "my db");
        assert_eq!(t.port, None);
        assert_eq!(Target::parse("port=99999 dbname=x").port, None);
        assert_eq!(Target::parse("host=a,b port=1,2").port, Some(1));
        assert_eq!(Target::parse("garbage"), Target::default());
    }

    #[test]
    fn uri_conninfo_drops_the_user_info() {
        let t = Target::parse("postgresql://rep:p%40ss@db1:6432/app%20x?sslmode=require");
        assert_eq!(
            t,
            Target {
                host: "db1".into(),
                port: Some(6432),
                dbname: "app x".into(),
                application_name: String::new(),
            }
        );
        let t = Target::parse("postgres://[::1]:5434/app");
        assert_eq!((t.host.as_str(), t.port), ("::1", Some(5434)));
        let t = Target::parse("postgresql:///app?host=/tmp&port=5440");
        assert_eq!((t.host.as_str(), t.port), ("/tmp", Some(5440)));
    }

    #[test]
    fn the_receiver_names_itself_like_postgresql() {
        let c = "user=rep password=******** host=p port=5432 application_name=s1 sslmode=prefer";
        assert_eq!(receiver_application_name(Some(c), "cl"), "s1");
        assert_eq!(receiver_application_name(Some("host=p"), "cl"), "cl");
        assert_eq!(receiver_application_name(None, ""), "walreceiver");
    }

    #[test]
    fn one_sql_for_13_to_18_and_conninfo_only_when_readable() {
        assert!(IDENTITY_QUERY.contains("pg_control_system()"));
        assert!(IDENTITY_QUERY.contains("received_tli"));
        assert!(sources_query(true).contains("s.subconninfo AS conninfo"));
        assert!(!sources_query(false).contains("subconninfo"));
        assert!(PUBLICATIONS_QUERY.contains("LEFT JOIN pg_publication_tables"));
    }
}
