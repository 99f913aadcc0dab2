//! `GET /api/v1/replication/topology`: how the instances Lasect watches replicate to each
//! other and to servers it does not watch, built from the latest samples of the replication
//! families (docs/REPLICATION.md).
//!
//! Physical edges (primary → standby, cascades) join a standby's WAL receiver (sender host and
//! port) to the instance listening there with the same system identifier; the upstream's
//! `pg_stat_replication` row is the one whose application_name is the standby's receiver's.
//! Logical edges join a subscription's conninfo (host, port) to the instance listening there,
//! preferring the one holding the subscription's slot. Senders and slots no watched instance
//! accounts for become edges to external nodes: a slot nobody reads keeps WAL until the disk
//! fills, so it is shown, never dropped.
//!
//! A logical edge in initial sync carries its backfill (per table progress and ETA).
//!
//! Who sees what: a caller with any role; the graph is built from the instances the caller may
//! view only (a label-scoped user sees their instances and the external nodes their samples
//! name, never an instance outside their grants).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgPool;

pub use lasect_api_contract::replication::{Edge, EdgeTable, Node, Topology};

use super::AppState;
use super::api_error::ApiError;
use super::instances::rfc3339;
use super::openapi::responses::WithInput;
use crate::auth::{Principal, Role};

/// Samples older than this are not part of the topology (an instance that stopped reporting
/// shows without its edges rather than with stale ones).
const FRESH: &str = "interval '15 minutes'";

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TopologyQuery {
    /// `key=value`: only the instances with this label and the edges (and their other ends)
    /// that touch them.
    #[param(pattern = "^[^=]+=")]
    pub label: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/replication/topology",
    tag = "replication",
    security(("bearer" = [])),
    params(TopologyQuery),
    responses(
        (status = 200, description = "The replication graph of the instances the caller may view", body = Topology),
        WithInput,
    )
)]
/// Needs any role (the graph holds only the instances the caller may view).
pub async fn topology(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<TopologyQuery>, QueryRejection>,
) -> Result<Json<Topology>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let label = match query.label.as_deref() {
        None => None,
        Some(l) => match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Some((k.to_owned(), v.to_owned())),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("label must be key=value with a non-empty key, not {l:?}"),
                ));
            }
        },
    };
    if principal.highest_role().is_none() {
        return Err(ApiError::forbidden(
            "this needs role viewer on some instance; you have no role",
        ));
    }
    let data = load(&state.pool, &principal).await?;
    let mut graph = build(&data);
    let instance = |node: &str| node.strip_prefix("instance:")?.parse::<i64>().ok();
    for edge in graph
        .edges
        .iter_mut()
        .filter(|e| e.kind == "logical" && e.state == "initial_sync")
    {
        let (Some(subscriber), Some(subname)) = (instance(&edge.to), edge.subscription.clone())
        else {
            continue;
        };
        let database = edge.publisher_database.clone();
        let publisher = instance(&edge.from).map(|p| (p, database.as_deref()));
        edge.backfill = Some(
            crate::replication_backfill::backfill(&state.pool, subscriber, &subname, publisher)
                .await?,
        );
    }
    if let Some((key, value)) = label {
        graph = filter_by_label(graph, &data, &key, &value);
    }
    Ok(Json(graph))
}

/// The logical streams of publication `publication` between instances the caller may view, as
/// the topology matches them: (publisher instance id, subscriber instance id). Fleet migrations
/// use it to reach "the publisher and its subscribers, subscribers first".
pub(crate) async fn publication_pairs(
    pool: &PgPool,
    principal: &Principal,
    publication: &str,
) -> Result<Vec<(i64, i64)>, ApiError> {
    let data = load(pool, principal).await?;
    let id_of = |node: &str| node.strip_prefix("instance:")?.parse::<i64>().ok();
    Ok(build(&data)
        .edges
        .iter()
        .filter(|e| e.kind == "logical")
        .filter(|e| {
            e.publications
                .as_ref()
                .is_some_and(|p| p.iter().any(|p| p == publication))
        })
        .filter_map(|e| Some((id_of(&e.from)?, id_of(&e.to)?)))
        .collect())
}

#[derive(sqlx::FromRow)]
struct InstanceRow {
    id: i64,
    name: String,
    agent_id: String,
    labels: serde_json::Value,
    hostname: Option<String>,
}

#[derive(sqlx::FromRow)]
struct IdentityRow {
    instance_id: i64,
    time: DateTime<Utc>,
    system_identifier: i64,
    timeline_id: i32,
    in_recovery: bool,
    wal_lsn: Option<i64>,
    port: i32,
    server_addr: Option<String>,
    receiver_application_name: Option<String>,
}

#[derive(sqlx::FromRow)]
struct StandbyRow {
    instance_id: i64,
    receiver_status: Option<String>,
    sender_host: Option<String>,
    sender_port: Option<i32>,
    slot_name: Option<String>,
    replay_delay_seconds: Option<f64>,
    last_msg_age_seconds: Option<f64>,
}

#[derive(sqlx::FromRow)]
struct SenderRow {
    instance_id: i64,
    pid: i32,
    application_name: Option<String>,
    client_addr: Option<String>,
    state: Option<String>,
    sync_state: Option<String>,
    sent_lag_bytes: Option<i64>,
    write_lag_bytes: Option<i64>,
    flush_lag_bytes: Option<i64>,
    replay_lag_bytes: Option<i64>,
    write_lag_seconds: Option<f64>,
    flush_lag_seconds: Option<f64>,
    replay_lag_seconds: Option<f64>,
}

#[derive(sqlx::FromRow)]
struct SlotRow {
    instance_id: i64,
    slot_name: String,
    slot_type: String,
    datname: Option<String>,
    active: bool,
    retained_bytes: Option<i64>,
    wal_status: Option<String>,
}

#[derive(sqlx::FromRow)]
struct SourceRow {
    instance_id: i64,
    subname: String,
    datname: String,
    enabled: bool,
    slot_name: Option<String>,
    conn_host: Option<String>,
    conn_port: Option<i32>,
    conn_dbname: Option<String>,
    publications: Option<String>,
}

#[derive(sqlx::FromRow)]
struct WorkerRow {
    instance_id: i64,
    subname: String,
    pid: Option<i32>,
    received_lsn: Option<i64>,
    latest_end_lsn: Option<i64>,
    last_msg_receipt: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct TableRow {
    instance_id: i64,
    subname: String,
    schemaname: String,
    relname: String,
    state: String,
}

#[derive(sqlx::FromRow)]
struct PublishedRow {
    instance_id: i64,
    datname: String,
    pubname: String,
    schemaname: Option<String>,
    relname: Option<String>,
}

struct Data {
    instances: Vec<InstanceRow>,
    published: Vec<PublishedRow>,
    identity: BTreeMap<i64, IdentityRow>,
    standby: BTreeMap<i64, StandbyRow>,
    senders: Vec<SenderRow>,
    slots: Vec<SlotRow>,
    sources: Vec<SourceRow>,
    workers: Vec<WorkerRow>,
    tables: Vec<TableRow>,
}

/// The rows of `table`'s latest sample per visible instance (every argument is a constant
/// of this file).
fn latest(table: &str, columns: &str, extra: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM {table} t \
         JOIN (SELECT instance_id, max(time) AS time FROM {table} \
               WHERE time > now() - {FRESH} AND instance_id = ANY($1) GROUP BY instance_id) l \
         USING (instance_id, time) {extra}"
    ))
}

async fn load(pool: &PgPool, principal: &Principal) -> Result<Data, ApiError> {
    let instances: Vec<InstanceRow> = sqlx::query_as(
        "SELECT i.id, i.name, i.agent_id, i.labels, a.hostname FROM instances i \
         LEFT JOIN agents a ON a.id = i.agent_id WHERE i.state <> 'removed' ORDER BY i.name, i.id",
    )
    .fetch_all(pool)
    .await?;
    let instances: Vec<InstanceRow> = instances
        .into_iter()
        .filter(|r| principal.role_for_labels(&r.labels) >= Some(Role::Viewer))
        .collect();
    let ids: Vec<i64> = instances.iter().map(|i| i.id).collect();
    let identity: Vec<IdentityRow> = sqlx::query_as(latest(
        "metric_replication_identity",
        "instance_id, time, system_identifier, timeline_id, in_recovery, wal_lsn, port, \
         server_addr, receiver_application_name",
        "",
    ))
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let standby: Vec<StandbyRow> = sqlx::query_as(latest(
        "metric_standby",
        "instance_id, receiver_status, sender_host, sender_port, slot_name, \
         replay_delay_seconds, last_msg_age_seconds",
        "",
    ))
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let senders: Vec<SenderRow> = sqlx::query_as(latest(
        "metric_replication",
        "instance_id, pid, application_name, client_addr, state, sync_state, sent_lag_bytes, \
         write_lag_bytes, flush_lag_bytes, replay_lag_bytes, write_lag_seconds, \
         flush_lag_seconds, replay_lag_seconds",
        "ORDER BY instance_id, application_name, pid",
    ))
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let slots: Vec<SlotRow> = sqlx::query_as(latest(
        "metric_replication_slot",
        "instance_id, slot_name, slot_type, datname, active, retained_bytes, wal_status",
        "ORDER BY instance_id, slot_name",
    ))
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let sources: Vec<SourceRow> = sqlx::query_as(latest(
        "metric_subscription_source",
        "instance_id, subname, datname, enabled, slot_name, conn_host, conn_port, conn_dbname, \
         publications",
        "ORDER BY instance_id, subname, datname",
    ))
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let workers: Vec<WorkerRow> = sqlx::query_as(latest(
        "metric_subscription",
        "instance_id, subname, pid, received_lsn, latest_end_lsn, \
         last_msg_receipt",
        "WHERE relid IS NULL ORDER BY instance_id, subname",
    ))
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let tables: Vec<TableRow> = sqlx::query_as(latest(
        "metric_subscription_tables",
        "instance_id, subname, schemaname, relname, state",
        "ORDER BY instance_id, subname, schemaname, relname",
    ))
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let published: Vec<PublishedRow> = sqlx::query_as(latest(
        "metric_publication",
        "instance_id, datname, pubname, schemaname, relname",
        "ORDER BY instance_id, pubname, schemaname, relname",
    ))
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    Ok(Data {
        instances,
        published,
        identity: identity.into_iter().map(|r| (r.instance_id, r)).collect(),
        standby: standby.into_iter().map(|r| (r.instance_id, r)).collect(),
        senders,
        slots,
        sources,
        workers,
        tables,
    })
}

fn node_id(instance_id: i64) -> String {
    format!("instance:{instance_id}")
}

fn is_local(host: &str) -> bool {
    host.is_empty()
        || host.starts_with('/')
        || host == "localhost"
        || host.starts_with("127.")
        || host == "::1"
}

/// Whether `host` as written on `from` names the machine of `to`.
fn host_names(host: &str, from: &InstanceRow, to: &InstanceRow, to_id: &IdentityRow) -> bool {
    let same_machine =
        from.agent_id == to.agent_id || (from.hostname.is_some() && from.hostname == to.hostname);
    if is_local(host) {
        return same_machine;
    }
    to_id.server_addr.as_deref() == Some(host)
        || to.hostname.as_deref().is_some_and(|h| {
            h.eq_ignore_ascii_case(host)
                || h.split('.')
                    .next()
                    .is_some_and(|s| s.eq_ignore_ascii_case(host))
        })
        || (same_machine && to_id.server_addr.as_deref().is_some_and(is_local))
}

/// The visible instances listening at `host`:`port` as seen from `from`.
fn locate(data: &Data, from: &InstanceRow, host: &str, port: Option<i32>) -> Vec<i64> {
    // A conninfo host may list several hosts; the first is where libpq starts.
    let host = host.split(',').next().unwrap_or("").trim();
    let port = port.unwrap_or(5432);
    data.instances
        .iter()
        .filter_map(|to| {
            let id = data.identity.get(&to.id)?;
            (id.port == port && host_names(host, from, to, id)).then_some(to.id)
        })
        .collect()
}

fn external(host: &str, port: Option<i32>) -> Node {
    let host = if host.is_empty() {
        "local socket"
    } else {
        host
    };
    let port = port.unwrap_or(5432);
    Node {
        id: format!("external:{host}:{port}"),
        kind: "external".into(),
        instance_id: None,
        name: format!("{host}:{port}"),
        role: "unknown".into(),
        labels: None,
        system_identifier: None,
        timeline_id: None,
        wal_lsn: None,
        host: Some(host.to_owned()),
        port: Some(port),
        sampled_at: None,
    }
}

fn sender_fields(edge: &mut Edge, s: &SenderRow) {
    edge.sync_state = s.sync_state.clone();
    edge.application_name = s.application_name.clone();
    edge.sent_lag_bytes = s.sent_lag_bytes;
    edge.write_lag_bytes = s.write_lag_bytes;
    edge.flush_lag_bytes = s.flush_lag_bytes;
    edge.replay_lag_bytes = s.replay_lag_bytes;
    edge.write_lag_seconds = s.write_lag_seconds;
    edge.flush_lag_seconds = s.flush_lag_seconds;
    edge.replay_lag_seconds = s.replay_lag_seconds;
}

fn slot_fields(edge: &mut Edge, s: &SlotRow) {
    edge.slot_name = Some(s.slot_name.clone());
    edge.slot_active = Some(s.active);
    edge.slot_retained_bytes = s.retained_bytes;
    edge.slot_wal_status = s.wal_status.clone();
}

fn build(data: &Data) -> Topology {
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    for i in &data.instances {
        let id = data.identity.get(&i.id);
        let role = match id.map(|r| r.in_recovery) {
            Some(true) => "standby",
            Some(false) => "primary",
            None if data.standby.contains_key(&i.id) => "standby",
            None => "unknown",
        };
        nodes.insert(
            node_id(i.id),
            Node {
                id: node_id(i.id),
                kind: "instance".into(),
                instance_id: Some(i.id),
                name: i.name.clone(),
                role: role.into(),
                labels: Some(i.labels.clone()),
                // The control file's identifier is unsigned; PostgreSQL shows it as a bigint.
                system_identifier: id.map(|r| (r.system_identifier as u64).to_string()),
                timeline_id: id.map(|r| r.timeline_id),
                wal_lsn: id.and_then(|r| r.wal_lsn),
                host: id
                    .and_then(|r| r.server_addr.clone())
                    .or(i.hostname.clone()),
                port: id.map(|r| r.port),
                sampled_at: id.map(|r| rfc3339(r.time)),
            },
        );
    }
    let by_id: BTreeMap<i64, &InstanceRow> = data.instances.iter().map(|i| (i.id, i)).collect();
    let mut edges = Vec::new();
    // (instance, pid) of senders and (instance, slot) of slots an edge accounts for.
    let mut used_senders: HashSet<(i64, i32)> = HashSet::new();
    let mut used_slots: HashSet<(i64, String)> = HashSet::new();

    for (sid, standby) in &data.standby {
        let Some(from_inst) = by_id.get(sid) else {
            continue;
        };
        let me = data.identity.get(sid);
        let host = standby.sender_host.clone().unwrap_or_default();
        let mut ups: Vec<i64> = if host.is_empty() && standby.sender_port.is_none() {
            Vec::new()
        } else {
            locate(data, from_inst, &host, standby.sender_port)
        };
        ups.retain(|u| {
            *u != *sid
                && match (me, data.identity.get(u)) {
                    (Some(a), Some(b)) => a.system_identifier == b.system_identifier,
                    _ => true,
                }
        });
        if ups.is_empty()
            && host.is_empty()
            && let Some(me) = me
        {
            // No receiver running: the cluster's only primary is still its upstream.
            let primaries: Vec<i64> = data
                .identity
                .values()
                .filter(|r| !r.in_recovery && r.system_identifier == me.system_identifier)
                .map(|r| r.instance_id)
                .collect();
            if primaries.len() == 1 {
                ups = primaries;
            }
        }
        let from = match ups.first() {
            Some(u) => node_id(*u),
            None if host.is_empty() => continue,
            None => {
                let n = external(&host, standby.sender_port);
                let id = n.id.clone();
                nodes.entry(id.clone()).or_insert(n);
                id
            }
        };
        let mut edge = Edge {
            kind: "physical".into(),
            from,
            to: node_id(*sid),
            state: standby
                .receiver_status
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "disconnected".into()),
            replay_delay_seconds: standby.replay_delay_seconds,
            last_message_age_seconds: standby.last_msg_age_seconds,
            slot_name: standby.slot_name.clone(),
            ..Edge::default()
        };
        if let Some(up) = ups.first() {
            let app = me.and_then(|r| r.receiver_application_name.clone());
            let candidates: Vec<&SenderRow> = data
                .senders
                .iter()
                .filter(|s| s.instance_id == *up && !used_senders.contains(&(*up, s.pid)))
                .collect();
            let named: Vec<&&SenderRow> = candidates
                .iter()
                .filter(|s| app.is_some() && s.application_name == app)
                .collect();
            let sender = match (named.as_slice(), candidates.as_slice()) {
                ([one], _) => Some(**one),
                ([], [only]) => Some(*only),
                _ => None,
            };
            if let Some(s) = sender {
                used_senders.insert((*up, s.pid));
                sender_fields(&mut edge, s);
                if let Some(state) = s.state.clone().filter(|s| !s.is_empty()) {
                    edge.state = state;
                }
            }
            if let Some(slot_name) = standby.slot_name.as_deref()
                && let Some(slot) = data
                    .slots
                    .iter()
                    .find(|s| s.instance_id == *up && s.slot_name == slot_name)
            {
                used_slots.insert((*up, slot.slot_name.clone()));
                slot_fields(&mut edge, slot);
            }
        }
        edges.push(edge);
    }

    for src in &data.sources {
        let Some(sub_inst) = by_id.get(&src.instance_id) else {
            continue;
        };
        let host = src.conn_host.clone().unwrap_or_default();
        let mut pubs = if src.conn_host.is_none() && src.conn_port.is_none() {
            Vec::new()
        } else {
            locate(data, sub_inst, &host, src.conn_port)
        };
        if pubs.len() > 1
            && let Some(slot_name) = src.slot_name.as_deref()
        {
            let holding: Vec<i64> = pubs
                .iter()
                .copied()
                .filter(|p| {
                    data.slots
                        .iter()
                        .any(|s| s.instance_id == *p && s.slot_name == slot_name)
                })
                .collect();
            if !holding.is_empty() {
                pubs = holding;
            }
        }
        let from = match pubs.first() {
            Some(p) => node_id(*p),
            None => {
                let n = if src.conn_host.is_none() && src.conn_port.is_none() {
                    // The agent may not read the conninfo: the publisher is not known.
                    let mut n = external("unknown", None);
                    n.id = format!("external:unknown/{}/{}", src.instance_id, src.subname);
                    n.name = "publisher not readable".into();
                    n.host = None;
                    n.port = None;
                    n
                } else {
                    external(&host, src.conn_port)
                };
                let id = n.id.clone();
                nodes.entry(id.clone()).or_insert(n);
                id
            }
        };
        let worker = data
            .workers
            .iter()
            .find(|w| w.instance_id == src.instance_id && w.subname == src.subname);
        let tables: Vec<EdgeTable> = data
            .tables
            .iter()
            .filter(|t| t.instance_id == src.instance_id && t.subname == src.subname)
            .map(|t| EdgeTable {
                schema: t.schemaname.clone(),
                table: t.relname.clone(),
                state: t.state.clone(),
            })
            .collect();
        let state = if !src.enabled {
            "disabled"
        } else if tables.iter().any(|t| t.state != "ready") {
            "initial_sync"
        } else if worker.is_some_and(|w| w.pid.is_some()) {
            "streaming"
        } else {
            "stopped"
        };
        let mut edge = Edge {
            kind: "logical".into(),
            from,
            to: node_id(src.instance_id),
            state: state.into(),
            slot_name: src.slot_name.clone(),
            subscription: Some(src.subname.clone()),
            subscriber_database: Some(src.datname.clone()),
            publisher_database: src.conn_dbname.clone(),
            publications: src
                .publications
                .as_deref()
                .map(|p| p.split(',').map(str::to_owned).collect()),
            tables: Some(tables),
            ..Edge::default()
        };
        if let Some(w) = worker {
            edge.received_lsn = w.received_lsn;
            edge.latest_end_lsn = w.latest_end_lsn;
            edge.apply_lag_bytes = w
                .received_lsn
                .zip(w.latest_end_lsn)
                .map(|(r, e)| (r - e).max(0));
            edge.last_message_at = w.last_msg_receipt.map(rfc3339);
        }
        if let Some(p) = pubs.first() {
            let names = edge.publications.clone().unwrap_or_default();
            // Publications are seen only when the publisher's agent connects to the published
            // database; otherwise the edge says nothing rather than "no tables".
            let rows: Vec<&PublishedRow> = data
                .published
                .iter()
                .filter(|t| {
                    t.instance_id == *p
                        && names.contains(&t.pubname)
                        && src.conn_dbname.as_deref().is_none_or(|d| d == t.datname)
                })
                .collect();
            if !rows.is_empty() {
                let published: BTreeSet<String> = rows
                    .iter()
                    .filter_map(|t| {
                        Some(format!(
                            "{}.{}",
                            t.schemaname.as_ref()?,
                            t.relname.as_ref()?
                        ))
                    })
                    .collect();
                edge.published_tables = Some(published.into_iter().collect());
            }
            edge.publisher_lag_bytes = data
                .identity
                .get(p)
                .and_then(|r| r.wal_lsn)
                .zip(edge.received_lsn)
                .map(|(w, r)| (w - r).max(0));
            if let Some(slot_name) = src.slot_name.as_deref() {
                if let Some(slot) = data
                    .slots
                    .iter()
                    .find(|s| s.instance_id == *p && s.slot_name == slot_name)
                {
                    used_slots.insert((*p, slot.slot_name.clone()));
                    slot_fields(&mut edge, slot);
                }
                // A logical walsender names itself after the subscription's slot.
                if let Some(s) = data.senders.iter().find(|s| {
                    s.instance_id == *p
                        && !used_senders.contains(&(*p, s.pid))
                        && (s.application_name.as_deref() == Some(src.subname.as_str())
                            || s.application_name.as_deref() == Some(slot_name))
                }) {
                    used_senders.insert((*p, s.pid));
                    sender_fields(&mut edge, s);
                }
            }
        }
        edges.push(edge);
    }

    // Senders to servers Lasect does not watch.
    for s in &data.senders {
        if used_senders.contains(&(s.instance_id, s.pid)) {
            continue;
        }
        let app = s.application_name.clone().unwrap_or_default();
        let slot = data.slots.iter().find(|sl| {
            sl.instance_id == s.instance_id
                && sl.slot_type == "logical"
                && sl.slot_name == app
                && !used_slots.contains(&(sl.instance_id, sl.slot_name.clone()))
        });
        let addr = s
            .client_addr
            .clone()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "local socket".into());
        let id = format!("external:{addr}/{app}");
        nodes.entry(id.clone()).or_insert_with(|| Node {
            id: id.clone(),
            kind: "external".into(),
            instance_id: None,
            name: if app.is_empty() {
                addr.clone()
            } else {
                format!("{app} at {addr}")
            },
            role: "unknown".into(),
            labels: None,
            system_identifier: None,
            timeline_id: None,
            wal_lsn: None,
            host: Some(addr.clone()),
            port: None,
            sampled_at: None,
        });
        let mut edge = Edge {
            kind: if slot.is_some() {
                "logical"
            } else {
                "physical"
            }
            .into(),
            from: node_id(s.instance_id),
            to: id,
            state: s.state.clone().unwrap_or_default(),
            ..Edge::default()
        };
        sender_fields(&mut edge, s);
        if let Some(slot) = slot {
            used_slots.insert((slot.instance_id, slot.slot_name.clone()));
            slot_fields(&mut edge, slot);
            edge.publisher_database = slot.datname.clone();
        }
        edges.push(edge);
    }

    // Slots no edge reads from: they keep WAL whether anyone comes back or not.
    for slot in &data.slots {
        if used_slots.contains(&(slot.instance_id, slot.slot_name.clone())) {
            continue;
        }
        let id = format!("external:slot:{}/{}", slot.instance_id, slot.slot_name);
        nodes.entry(id.clone()).or_insert_with(|| Node {
            id: id.clone(),
            kind: "external".into(),
            instance_id: None,
            name: format!("reader of slot {}", slot.slot_name),
            role: "unknown".into(),
            labels: None,
            system_identifier: None,
            timeline_id: None,
            wal_lsn: None,
            host: None,
            port: None,
            sampled_at: None,
        });
        let mut edge = Edge {
            kind: if slot.slot_type == "logical" {
                "logical"
            } else {
                "physical"
            }
            .into(),
            from: node_id(slot.instance_id),
            to: id,
            state: if slot.active { "active" } else { "inactive" }.into(),
            publisher_database: slot.datname.clone(),
            ..Edge::default()
        };
        slot_fields(&mut edge, slot);
        edges.push(edge);
    }

    Topology {
        nodes: nodes.into_values().collect(),
        edges,
    }
}

fn filter_by_label(graph: Topology, data: &Data, key: &str, value: &str) -> Topology {
    let matching: HashSet<String> = data
        .instances
        .iter()
        .filter(|i| i.labels.get(key).and_then(|v| v.as_str()) == Some(value))
        .map(|i| node_id(i.id))
        .collect();
    let edges: Vec<Edge> = graph
        .edges
        .into_iter()
        .filter(|e| matching.contains(&e.from) || matching.contains(&e.to))
        .collect();
    let keep: HashSet<&str> = edges
        .iter()
        .flat_map(|e| [e.from.as_str(), e.to.as_str()])
        .chain(matching.iter().map(String::as_str))
        .collect();
    let nodes = graph
        .nodes
        .into_iter()
        .filter(|n| keep.contains(n.id.as_str()))
        .collect();
    Topology { nodes, edges }
}
