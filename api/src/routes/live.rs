//! `GET /api/v1/live`: a WebSocket streaming new samples of chosen instances and families,
//! alert state changes (`crate::alerts::live`) and runs' status changes and progress
//! (`crate::runs::live`) to clients that subscribe to them.
//!
//! "The store is the bus": ingest announces every stored group with `pg_notify` on
//! `lasect_samples` (payload in `lasect_ingest::writer::notify`), sent inside the group's
//! transaction so it arrives after the commit. The API keeps one listener connection (its own,
//! outside the request pool), started when the first client subscribes. A reader task reads the
//! announced rows of the (instance or agent, family) pairs some client wants, once, and
//! publishes them on a bounded `tokio::sync::broadcast` channel; each client task forwards what
//! it subscribed to.
//!
//! Memory is bounded everywhere: announcements wait in a queue of [`NOTIFY_QUEUE`] (more are
//! dropped and counted), events in a broadcast of [`EVENT_CAPACITY`] (a client that falls that
//! far behind is closed with code 1013 and reason `too slow: …`), a send to a client may take
//! [`SEND_TIMEOUT`] (then it is dropped), client messages are at most [`MAX_CLIENT_MESSAGE`]
//! bytes, a client holds at most [`MAX_SUBSCRIPTIONS`] pairs, and at most [`MAX_CLIENTS`]
//! clients are connected (more get 503 `too_many_clients`). A slow or misbehaving client only
//! ever loses its own connection. Protocol: docs/CONTRACTS.md ("Live stream").
//!
//! A stream outlives the request that opened it, so its caller is checked again every
//! `auth.live_recheck_secs` (30 s at most) and before every subscribe: once the user is
//! disabled, the API token revoked or the session logged out, the stream closes with code 1008
//! and the reason.
//!
//! A browser cannot set `Authorization` on a WebSocket, so it first asks
//! `POST /api/v1/live/ticket` (with its bearer) for a ticket and opens `/api/v1/live?ticket=…`.
//! A ticket is good for one upgrade within [`TICKET_TTL`], carries the credential it was issued
//! for (checked again when it is used) and lives only in this process's memory, hashed. The
//! request log records paths only, so the ticket in the query string is never logged.

use crate::auth::principal::{authenticate, recheck};
use crate::auth::{Principal, Role};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{OnceCell, broadcast, mpsc};

use super::AppState;
use super::alerts::may_see;
use super::api_error::ApiError;
use super::instances;
use super::metric_families::{self, FamilyKey, FamilySpec};
use super::openapi::responses::{SignedIn, WithInput};
use crate::alerts::live::{AlertFeed, Pushed};
use crate::pg_listen::dedicated_listener;
use crate::runs::live::{PushedRun, RunFeed, RunFilter};

/// The channel ingest notifies on (`lasect_ingest::writer::notify::CHANNEL`).
pub const CHANNEL: &str = "lasect_samples";
pub const EVENT_CAPACITY: usize = 256;
pub const NOTIFY_QUEUE: usize = 1024;
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the close frame to a departing client may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
pub const MAX_SUBSCRIPTIONS: usize = 1024;
pub const MAX_CLIENTS: usize = 512;
/// Most rows read for one announced (key, family) range.
const MAX_EVENT_ROWS: i64 = 10_000;
/// Close code "try again later" (RFC 6455 registry), for clients too slow to keep up.
const CLOSE_TOO_SLOW: u16 = 1013;

/// What an event is about: an instance (instance-keyed families) or an agent (host families).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Scope {
    Instance(i64),
    Agent(String),
}

/// Rows of one family and scope that were just stored.
#[derive(Debug)]
struct LiveEvent {
    scope: Scope,
    family: &'static str,
    columns: &'static [&'static str],
    rows: Vec<Map<String, Value>>,
}

/// The live stream's shared part: cheap to clone, started on first use.
#[derive(Debug, Clone)]
pub struct LiveHub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    events: broadcast::Sender<Arc<LiveEvent>>,
    started: OnceCell<()>,
    /// How many clients want each (scope, family); the reader reads only these.
    interest: Mutex<HashMap<(Scope, &'static str), usize>>,
    clients: AtomicUsize,
    dropped_slow: AtomicUsize,
    dropped_notifications: AtomicUsize,
    /// Alert state changes (issue 18): their own listener, started by the first client that
    /// subscribes to them.
    alerts: AlertFeed,
    /// Runs' status changes and progress (issue 17), likewise.
    runs: RunFeed,
    /// Outstanding tickets by [`lasect_pki::hash_token`] of the ticket.
    tickets: Mutex<HashMap<String, Ticket>>,
    ticket_ttl: Duration,
}

impl LiveHub {
    pub fn new(pool: PgPool) -> Self {
        Self::with_ticket_ttl(pool, TICKET_TTL)
    }

    /// A hub whose tickets live `ttl` instead of [`TICKET_TTL`] (tests of expiry).
    pub fn with_ticket_ttl(pool: PgPool, ttl: Duration) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        LiveHub {
            inner: Arc::new(Inner {
                alerts: AlertFeed::new(pool.clone()),
                runs: RunFeed::new(pool.clone()),
                pool,
                events,
                started: OnceCell::new(),
                interest: Mutex::new(HashMap::new()),
                clients: AtomicUsize::new(0),
                dropped_slow: AtomicUsize::new(0),
                dropped_notifications: AtomicUsize::new(0),
                tickets: Mutex::new(HashMap::new()),
                ticket_ttl: ttl,
            }),
        }
    }

    /// Connected clients.
    pub fn clients(&self) -> usize {
        self.inner.clients.load(Ordering::Relaxed)
    }

    /// Clients closed for being too slow, since start.
    pub fn dropped_slow_clients(&self) -> usize {
        self.inner.dropped_slow.load(Ordering::Relaxed)
    }

    /// Announcements (of samples and of runs) dropped because a reader was behind, since start.
    pub fn dropped_notifications(&self) -> usize {
        self.inner.dropped_notifications.load(Ordering::Relaxed)
            + self.inner.runs.dropped_notifications()
    }

    /// Starts the listener and reader once; returns when the listener is LISTENing.
    async fn ensure_started(&self) -> Result<(), sqlx::Error> {
        self.inner
            .started
            .get_or_try_init(|| async {
                let listener = dedicated_listener(&self.inner.pool, CHANNEL).await?;
                let (queue, announcements) = mpsc::channel(NOTIFY_QUEUE);
                tokio::spawn(listen(listener, queue, Arc::clone(&self.inner)));
                tokio::spawn(read(announcements, Arc::clone(&self.inner)));
                tracing::info!(channel = CHANNEL, "live stream listening");
                Ok(())
            })
            .await
            .map(|_| ())
    }

    fn add_interest(&self, key: &(Scope, &'static str)) {
        let mut interest = self
            .inner
            .interest
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *interest.entry(key.clone()).or_default() += 1;
    }

    fn remove_interest(&self, key: &(Scope, &'static str)) {
        let mut interest = self
            .inner
            .interest
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = interest.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                interest.remove(key);
            }
        }
    }
}

/// Moves announcements from the listener connection to the bounded queue of the reader.
async fn listen(mut listener: PgListener, queue: mpsc::Sender<String>, inner: Arc<Inner>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                if queue.try_send(notification.payload().to_owned()).is_err() {
                    inner.dropped_notifications.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(None) => {
                tracing::warn!(
                    "live stream: listener connection lost; samples meanwhile are not streamed"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "live stream: listener failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct Announcement {
    v: u32,
    samples: Vec<AnnouncedRange>,
}

#[derive(Debug, Deserialize)]
struct AnnouncedRange {
    instance: Option<i64>,
    agent: Option<String>,
    family: String,
    from_us: i64,
    to_us: i64,
}

/// Reads the announced rows somebody wants and publishes them.
async fn read(mut announcements: mpsc::Receiver<String>, inner: Arc<Inner>) {
    while let Some(payload) = announcements.recv().await {
        let announcement: Announcement = match serde_json::from_str(&payload) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "live stream: unreadable announcement ignored");
                continue;
            }
        };
        if announcement.v != 1 {
            tracing::warn!(
                version = announcement.v,
                "live stream: unknown announcement version"
            );
            continue;
        }
        for range in announcement.samples {
            let Some(spec) = metric_families::find(&range.family) else {
                continue;
            };
            let scope = match (spec.key, range.instance, range.agent) {
                (FamilyKey::Instance, Some(id), _) => Scope::Instance(id),
                (FamilyKey::Agent, _, Some(agent)) => Scope::Agent(agent),
                _ => continue,
            };
            let wanted = inner
                .interest
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(&(scope.clone(), spec.name));
            if !wanted {
                continue;
            }
            let (Some(from), Some(to)) = (
                DateTime::<Utc>::from_timestamp_micros(range.from_us),
                DateTime::<Utc>::from_timestamp_micros(range.to_us),
            ) else {
                continue;
            };
            match read_rows(&inner.pool, spec, &scope, from, to).await {
                Ok(rows) if !rows.is_empty() => {
                    // An error only means nobody listens right now.
                    let _ = inner.events.send(Arc::new(LiveEvent {
                        scope,
                        family: spec.name,
                        columns: spec.columns,
                        rows,
                    }));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, family = spec.name, "live stream: reading new rows failed")
                }
            }
        }
    }
}

async fn read_rows(
    pool: &PgPool,
    spec: &FamilySpec,
    scope: &Scope,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Map<String, Value>>, String> {
    let key_column = match scope {
        Scope::Instance(_) => "instance_id",
        Scope::Agent(_) => "agent_id",
    };
    // Every part is a literal of the family table: nothing from a client or the payload.
    let sql = format!(
        "SELECT {columns} FROM {table} WHERE {key_column} = $1 AND time >= $2 AND time <= $3 \
         ORDER BY time, {order} LIMIT $4",
        columns = spec.columns.join(", "),
        table = spec.table,
        order = spec.order,
    );
    let query = sqlx::query(sqlx::AssertSqlSafe(sql));
    let query = match scope {
        Scope::Instance(id) => query.bind(*id),
        Scope::Agent(agent) => query.bind(agent.clone()),
    };
    let rows = query
        .bind(from)
        .bind(to)
        .bind(MAX_EVENT_ROWS)
        .fetch_all(pool)
        .await
        .map_err(|e| e.to_string())?;
    rows.iter().map(metric_families::row_to_json).collect()
}

/// The WebSocket's path (the auth gate takes a ticket there).
pub const PATH: &str = "/api/v1/live";
/// How long a ticket may wait for its WebSocket upgrade.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// Kind prefix of live tickets (see [`lasect_pki::new_token`]).
pub const TICKET_PREFIX: &str = "lslt";
/// Outstanding tickets per user: more evict that user's oldest, so memory stays bounded even
/// for a caller that asks in a loop.
pub const MAX_TICKETS_PER_USER: usize = 16;

/// A ticket waiting for its upgrade: who asked and until when.
#[derive(Debug)]
struct Ticket {
    principal: Principal,
    expires: Instant,
}

/// The answer of `POST /api/v1/live/ticket`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LiveTicket {
    /// Opaque; pass it once as `GET /api/v1/live?ticket=…`.
    pub ticket: String,
    /// Seconds it stays valid.
    pub expires_in: u64,
}

impl LiveHub {
    fn issue_ticket(&self, principal: Principal) -> String {
        let ticket = lasect_pki::new_token(TICKET_PREFIX);
        let now = Instant::now();
        let mut tickets = self
            .inner
            .tickets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        tickets.retain(|_, t| t.expires > now);
        let mut mine: Vec<(Instant, String)> = tickets
            .iter()
            .filter(|(_, t)| t.principal.user_id == principal.user_id)
            .map(|(hash, t)| (t.expires, hash.clone()))
            .collect();
        if mine.len() >= MAX_TICKETS_PER_USER {
            mine.sort();
            for (_, hash) in &mine[..=mine.len() - MAX_TICKETS_PER_USER] {
                tickets.remove(hash);
            }
        }
        tickets.insert(
            lasect_pki::hash_token(&ticket),
            Ticket {
                principal,
                expires: now + self.inner.ticket_ttl,
            },
        );
        ticket
    }

    /// Takes the ticket out (whatever follows, it cannot be used again).
    fn take_ticket(&self, ticket: &str) -> Result<Principal, ApiError> {
        if !lasect_pki::looks_like_token(ticket, TICKET_PREFIX) {
            return Err(ApiError::unauthorized("malformed live ticket"));
        }
        let taken = self
            .inner
            .tickets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&lasect_pki::hash_token(ticket));
        match taken {
            None => Err(ApiError::unauthorized(
                "unknown or already used live ticket: ask POST /api/v1/live/ticket for a new one",
            )),
            Some(t) if t.expires <= Instant::now() => Err(ApiError::unauthorized(
                "this live ticket has expired: ask POST /api/v1/live/ticket for a new one",
            )),
            Some(t) => Ok(t.principal),
        }
    }

    /// Tickets waiting for their upgrade (expired ones included until the next issue).
    pub fn outstanding_tickets(&self) -> usize {
        self.inner
            .tickets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The `ticket` parameter of a query string, if any (tickets are base64url: no escapes).
fn ticket_param(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("ticket="))
}

/// Who opens `GET /api/v1/live`: the ticket's caller when the query names one (checked again
/// now; with an `Authorization` header too, both must be the same user), else the header's.
pub async fn authenticate_live(
    state: &AppState,
    header: Option<&str>,
    query: Option<&str>,
) -> Result<Principal, ApiError> {
    let Some(ticket) = ticket_param(query) else {
        return authenticate(state, header).await;
    };
    let issued_to = state.live.take_ticket(ticket)?;
    if header.is_some() {
        let caller = authenticate(state, header).await?;
        if caller.user_id != issued_to.user_id {
            return Err(ApiError::forbidden(
                "this live ticket was issued to another user",
            ));
        }
    }
    recheck(state, &issued_to).await
}

/// A single-use ticket for opening the live WebSocket from a browser, which cannot send
/// `Authorization` on an upgrade. Any authenticated caller; the stream then sees what the
/// caller sees.
#[utoipa::path(
    post,
    path = "/api/v1/live/ticket",
    tag = "live",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A ticket for one `GET /api/v1/live?ticket=…` within 30 s", body = LiveTicket),
        SignedIn,
    )
)]
pub async fn ticket(State(state): State<AppState>, principal: Principal) -> Json<LiveTicket> {
    let ticket = state.live.issue_ticket(principal);
    Json(LiveTicket {
        ticket,
        expires_in: state.live.inner.ticket_ttl.as_secs(),
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/live",
    tag = "live",
    security(("bearer" = [])),
    params(
        ("ticket" = Option<String>, Query, description = "A ticket from `POST /api/v1/live/ticket` instead of `Authorization` (browsers): good once, for 30 s"),
    ),
    description = "WebSocket upgrade (RFC 6455). After the upgrade the client sends \
        `{\"type\":\"subscribe\",\"instances\":[…],\"families\":[…]}` (or `unsubscribe`), \
        or `{\"type\":\"subscribe_alerts\"}` (or `unsubscribe_alerts`), and receives \
        `subscribed`, `samples`, `subscribed_alerts`, `alert` and `error` messages; see \
        docs/CONTRACTS.md.",
    responses(
        (status = 101, description = "Switching protocols: the WebSocket is open"),
        WithInput,
        (status = 403, description = "The ticket was issued to another user than the `Authorization` header's", body = super::openapi::ErrorBody),
    )
)]
pub async fn live(
    State(state): State<AppState>,
    principal: Principal,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => {
            return ApiError::bad_request("not_websocket", rejection.body_text()).into_response();
        }
    };
    let hub = state.live.clone();
    let previous = hub.inner.clients.fetch_add(1, Ordering::Relaxed);
    if previous >= MAX_CLIENTS {
        hub.inner.clients.fetch_sub(1, Ordering::Relaxed);
        return ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "too_many_clients",
            format!("at most {MAX_CLIENTS} live clients are served"),
        )
        .into_response();
    }
    let slot = ClientSlot(hub.clone());
    upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            Client::new(state, hub, principal).run(socket).await;
        })
        .into_response()
}

/// Counts a connected client until dropped (also when the upgrade never completes).
struct ClientSlot(LiveHub);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.inner.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Subscribe {
        instances: Vec<i64>,
        families: Vec<String>,
    },
    Unsubscribe {
        instances: Vec<i64>,
        families: Vec<String>,
    },
    /// Alert state changes (pending, firing, resolved) of the instances the caller may see.
    SubscribeAlerts,
    UnsubscribeAlerts,
    /// Status changes and progress of the runs the caller may see, optionally only of these
    /// instances, runs and kinds (an absent or empty list: any); replaces the previous filter.
    SubscribeRuns {
        #[serde(default)]
        instances: Vec<i64>,
        #[serde(default)]
        runs: Vec<i64>,
        #[serde(default)]
        kinds: Vec<String>,
    },
    UnsubscribeRuns,
}

/// A change of the client's alert subscription, for `run` to apply to its receiver.
enum AlertsChange {
    Start(broadcast::Receiver<Arc<Vec<Pushed>>>),
    Stop,
}

/// A change of the client's run subscription, likewise.
enum RunsChange {
    Start(broadcast::Receiver<Arc<PushedRun>>),
    Stop,
}

#[derive(Serialize)]
struct SamplesMessage<'a> {
    r#type: &'static str,
    instance: i64,
    family: &'static str,
    columns: &'static [&'static str],
    rows: &'a [Map<String, Value>],
}

/// Why a client is closed.
struct Close(u16, String);

struct Client {
    state: AppState,
    /// Who opened the stream: every subscription is checked against its roles.
    principal: Principal,
    hub: LiveHub,
    /// (scope, family) → the client's instances it is delivered as.
    subscriptions: BTreeMap<(Scope, &'static str), BTreeSet<i64>>,
    alerts_change: Option<AlertsChange>,
    runs_change: Option<RunsChange>,
    /// Which runs the client wants, while subscribed to runs.
    run_filter: RunFilter,
}

impl Drop for Client {
    fn drop(&mut self) {
        for key in self.subscriptions.keys() {
            self.hub.remove_interest(key);
        }
    }
}

impl Client {
    fn new(state: AppState, hub: LiveHub, principal: Principal) -> Self {
        Client {
            state,
            principal,
            hub,
            subscriptions: BTreeMap::new(),
            alerts_change: None,
            runs_change: None,
            run_filter: RunFilter::default(),
        }
    }

    /// Checks the caller again; `Err` when it may no longer stream. A store that cannot answer
    /// now does not end the stream: the next check will tell.
    async fn recheck(&mut self) -> Result<(), Close> {
        match recheck(&self.state, &self.principal).await {
            Ok(principal) => {
                self.principal = principal;
                Ok(())
            }
            Err(e) if e.status() == axum::http::StatusCode::UNAUTHORIZED => Err(Close(
                close_code::POLICY,
                format!("credentials no longer valid: {}", e.message()),
            )),
            Err(e) => {
                tracing::debug!(
                    error = e.message(),
                    "live stream: cannot re-check the caller now"
                );
                Ok(())
            }
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        let mut events = self.hub.inner.events.subscribe();
        let mut alerts: Option<broadcast::Receiver<Arc<Vec<Pushed>>>> = None;
        let mut runs: Option<broadcast::Receiver<Arc<PushedRun>>> = None;
        let period = Duration::from_secs(self.state.auth.config.live_recheck_secs);
        let mut rechecks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        rechecks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let close = loop {
            tokio::select! {
                _ = rechecks.tick() => {
                    if let Err(close) = self.recheck().await {
                        break close;
                    }
                }
                incoming = socket.recv() => {
                    let text = match incoming {
                        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => {
                            break Close(close_code::UNSUPPORTED, "binary messages are not supported".into());
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    };
                    let message: ClientMessage = match serde_json::from_str(text.as_str()) {
                        Ok(m) => m,
                        Err(e) => break Close(close_code::POLICY, format!("invalid message: {e}")),
                    };
                    if matches!(
                        message,
                        ClientMessage::Subscribe { .. }
                            | ClientMessage::SubscribeAlerts
                            | ClientMessage::SubscribeRuns { .. }
                    )
                        && let Err(close) = self.recheck().await
                    {
                        break close;
                    }
                    let reply = match self.handle(message).await {
                        Ok(reply) => reply,
                        Err(error) => error,
                    };
                    match self.alerts_change.take() {
                        Some(AlertsChange::Start(r)) => alerts = Some(r),
                        Some(AlertsChange::Stop) => alerts = None,
                        None => {}
                    }
                    match self.runs_change.take() {
                        Some(RunsChange::Start(r)) => runs = Some(r),
                        Some(RunsChange::Stop) => runs = None,
                        None => {}
                    }
                    if let Err(close) = send(&mut socket, reply.to_string()).await {
                        break close;
                    }
                }
                pushed = async {
                    match alerts.as_mut() {
                        Some(r) => r.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let batch = match pushed {
                        Ok(batch) => batch,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            break Close(CLOSE_TOO_SLOW, format!("too slow: {n} alert batches missed"));
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    let mut failed = None;
                    // Visibility as in the alert list: the caller's roles now (rechecked).
                    for p in batch.iter().filter(|p| may_see(&self.principal, p.instance_labels.as_ref())) {
                        let text = json!({"type": "alert", "event": p.event}).to_string();
                        if let Err(close) = send(&mut socket, text).await {
                            failed = Some(close);
                            break;
                        }
                    }
                    if let Some(close) = failed {
                        break close;
                    }
                }
                pushed = async {
                    match runs.as_mut() {
                        Some(r) => r.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let run = match pushed {
                        Ok(run) => run,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            break Close(CLOSE_TOO_SLOW, format!("too slow: {n} run changes missed"));
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    if !self.run_filter.matches(&run.event) {
                        continue;
                    }
                    // Visibility as in GET /api/v1/runs/{id}: the caller's roles now (rechecked).
                    let Some(message) = run.message_for(&self.principal) else { continue };
                    if let Err(close) = send(&mut socket, message.to_string()).await {
                        break close;
                    }
                }
                event = events.recv() => {
                    let event = match event {
                        Ok(event) => event,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            break Close(CLOSE_TOO_SLOW, format!("too slow: {n} events missed"));
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    let Some(instances) = self.subscriptions.get(&(event.scope.clone(), event.family)) else {
                        continue;
                    };
                    let mut failed = None;
                    for instance in instances {
                        let message = SamplesMessage {
                            r#type: "samples",
                            instance: *instance,
                            family: event.family,
                            columns: event.columns,
                            rows: &event.rows,
                        };
                        let Ok(text) = serde_json::to_string(&message) else { continue };
                        if let Err(close) = send(&mut socket, text).await {
                            failed = Some(close);
                            break;
                        }
                    }
                    if let Some(close) = failed {
                        break close;
                    }
                }
            }
        };
        let Close(code, reason) = close;
        if code == CLOSE_TOO_SLOW {
            self.hub.inner.dropped_slow.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(code, %reason, "closing live client");
        let frame = CloseFrame {
            code,
            reason: truncate(&reason, 120).into(),
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
    }

    /// Applies a (un)subscription; the reply is `subscribed` or an `error` message.
    async fn handle(&mut self, message: ClientMessage) -> Result<Value, Value> {
        let (subscribe, instances, families) = match message {
            ClientMessage::Subscribe {
                instances,
                families,
            } => (true, instances, families),
            ClientMessage::Unsubscribe {
                instances,
                families,
            } => (false, instances, families),
            ClientMessage::SubscribeAlerts => {
                let receiver = self.hub.inner.alerts.subscribe().await.map_err(|e| {
                    tracing::warn!(error = %e, "live alerts: cannot listen to the store");
                    error(
                        "store_unavailable",
                        "the live stream cannot reach the store, try again later",
                    )
                })?;
                self.alerts_change = Some(AlertsChange::Start(receiver));
                return Ok(json!({"type": "subscribed_alerts", "alerts": true}));
            }
            ClientMessage::UnsubscribeAlerts => {
                self.alerts_change = Some(AlertsChange::Stop);
                return Ok(json!({"type": "subscribed_alerts", "alerts": false}));
            }
            ClientMessage::SubscribeRuns {
                instances,
                runs,
                kinds,
            } => return self.subscribe_runs(instances, runs, kinds).await,
            ClientMessage::UnsubscribeRuns => {
                self.runs_change = Some(RunsChange::Stop);
                self.run_filter = RunFilter::default();
                return Ok(json!({"type": "subscribed_runs", "runs": false}));
            }
        };
        if instances.len() * families.len() > MAX_SUBSCRIPTIONS {
            return Err(error(
                "too_many_subscriptions",
                format!("at most {MAX_SUBSCRIPTIONS} (instance, family) pairs"),
            ));
        }
        let mut specs = Vec::with_capacity(families.len());
        for family in &families {
            match metric_families::find(family) {
                Some(spec) => specs.push(spec),
                None => {
                    return Err(error(
                        "unknown_family",
                        format!(
                            "unknown family {family:?}; known families: {}",
                            metric_families::known_names().join(", ")
                        ),
                    ));
                }
            }
        }
        let mut found = Vec::with_capacity(instances.len());
        for id in instances {
            match instances::find(&self.state, id).await {
                Ok(Some(instance)) => {
                    if subscribe
                        && let Err(e) = self
                            .principal
                            .require_on_instance(&self.state.pool, id, Role::Viewer)
                            .await
                    {
                        return Err(error(e.code(), format!("instance {id}: {}", e.message())));
                    }
                    found.push(instance)
                }
                Ok(None) => return Err(error("not_found", format!("no instance with id {id}"))),
                Err(e) => return Err(error(e.code(), "cannot read the instances now")),
            }
        }
        if subscribe {
            if let Err(e) = self.hub.ensure_started().await {
                tracing::warn!(error = %e, "live stream: cannot listen to the store");
                return Err(error(
                    "store_unavailable",
                    "the live stream cannot reach the store, try again later",
                ));
            }
            for instance in &found {
                for spec in &specs {
                    let key = (scope_of(spec, instance), spec.name);
                    let entry = self.subscriptions.entry(key.clone()).or_default();
                    if entry.is_empty() {
                        if self.subscriptions.len() > MAX_SUBSCRIPTIONS {
                            self.subscriptions.remove(&key);
                            return Err(error(
                                "too_many_subscriptions",
                                format!("at most {MAX_SUBSCRIPTIONS} (instance, family) pairs"),
                            ));
                        }
                        self.hub.add_interest(&key);
                    }
                    if let Some(entry) = self.subscriptions.get_mut(&key) {
                        entry.insert(instance.id);
                    }
                }
            }
        } else {
            for instance in &found {
                for spec in &specs {
                    let key = (scope_of(spec, instance), spec.name);
                    if let Some(entry) = self.subscriptions.get_mut(&key) {
                        entry.remove(&instance.id);
                        if entry.is_empty() {
                            self.subscriptions.remove(&key);
                            self.hub.remove_interest(&key);
                        }
                    }
                }
            }
        }
        let mut list: Vec<Value> = self
            .subscriptions
            .iter()
            .flat_map(|((_, family), ids)| {
                ids.iter()
                    .map(move |id| json!({"instance": id, "family": family}))
            })
            .collect();
        list.sort_by_key(|v| {
            (
                v["instance"].as_i64(),
                v["family"].as_str().map(str::to_owned),
            )
        });
        Ok(json!({"type": "subscribed", "subscriptions": list}))
    }
}

impl Client {
    /// Checks a run filter (known kinds, instances the caller may view) and starts forwarding.
    async fn subscribe_runs(
        &mut self,
        instances: Vec<i64>,
        runs: Vec<i64>,
        kinds: Vec<String>,
    ) -> Result<Value, Value> {
        if instances.len() + runs.len() + kinds.len() > MAX_SUBSCRIPTIONS {
            return Err(error(
                "too_many_subscriptions",
                format!("at most {MAX_SUBSCRIPTIONS} instances, runs and kinds in a run filter"),
            ));
        }
        for kind in &kinds {
            if kind.parse::<lasect_runs::RunKind>().is_err() {
                let known: Vec<&str> = lasect_runs::RunKind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect();
                return Err(error(
                    "unknown_kind",
                    format!(
                        "unknown run kind {kind:?}; known kinds: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        if let Some(id) = runs.iter().find(|id| **id < 1) {
            return Err(error(
                "invalid_message",
                format!("run id {id} is not positive"),
            ));
        }
        for &id in &instances {
            match instances::find(&self.state, id).await {
                Ok(Some(_)) => {
                    if let Err(e) = self
                        .principal
                        .require_on_instance(&self.state.pool, id, Role::Viewer)
                        .await
                    {
                        return Err(error(e.code(), format!("instance {id}: {}", e.message())));
                    }
                }
                Ok(None) => return Err(error("not_found", format!("no instance with id {id}"))),
                Err(e) => return Err(error(e.code(), "cannot read the instances now")),
            }
        }
        let receiver = self.hub.inner.runs.subscribe().await.map_err(|e| {
            tracing::warn!(error = %e, "live runs: cannot listen to the store");
            error(
                "store_unavailable",
                "the live stream cannot reach the store, try again later",
            )
        })?;
        let mut filter = RunFilter {
            instances,
            runs,
            kinds,
        };
        for list in [&mut filter.instances, &mut filter.runs] {
            list.sort_unstable();
            list.dedup();
        }
        filter.kinds.sort_unstable();
        filter.kinds.dedup();
        let reply = json!({"type": "subscribed_runs", "runs": true, "filter": filter});
        self.run_filter = filter;
        self.runs_change = Some(RunsChange::Start(receiver));
        Ok(reply)
    }
}

fn scope_of(spec: &FamilySpec, instance: &instances::Instance) -> Scope {
    match spec.key {
        FamilyKey::Instance => Scope::Instance(instance.id),
        FamilyKey::Agent => Scope::Agent(instance.agent_id.clone()),
    }
}

fn error(code: &str, message: impl Into<String>) -> Value {
    json!({"type": "error", "error": {"code": code, "message": message.into()}})
}

/// Sends one text message, giving up after [`SEND_TIMEOUT`].
async fn send(socket: &mut WebSocket, text: String) -> Result<(), Close> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Close(close_code::ABNORMAL, "send failed".into())),
        Err(_) => Err(Close(CLOSE_TOO_SLOW, "too slow: a send timed out".into())),
    }
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
