//! Executes runs: the allow-list, the limits, the concurrency caps, cancel
//! and the mapping of how an operation ended to a run outcome.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use lasect_proto::v1::{AgentMessage, RunFinished, RunOutcome, RunRequest, agent_message};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_postgres::error::SqlState;

use lasect_runs::{RunKind, RunParams};

use crate::config::Dsn;
use crate::control_config::ControlConfig;
use crate::ops::{self, Limits, OpContext, OpError, ResultSink};

/// Beyond its timeout a run gets this long to end on its own (the server's
/// statement_timeout) before the agent gives up on it.
const CLIENT_GRACE: Duration = Duration::from_secs(5);

type TokenSlot = Arc<Mutex<Option<ops::RunCancel>>>;

struct Active {
    cancel: watch::Sender<bool>,
    token: TokenSlot,
}

/// How runs reach one instance.
#[derive(Debug, Clone)]
pub struct RunTarget {
    pub dsn: Dsn,
    /// The connection of the read-only kinds; `None`: `dsn`.
    pub run_dsn: Option<Dsn>,
    /// Read-only runs may log in as a privileged role (`ops::privileges`).
    pub allow_privileged_runs: bool,
}

impl RunTarget {
    pub fn new(dsn: Dsn) -> Self {
        Self {
            dsn,
            run_dsn: None,
            allow_privileged_runs: false,
        }
    }

    pub fn of(instance: &crate::config::InstanceConfig) -> Self {
        Self {
            dsn: instance.dsn.clone(),
            run_dsn: instance.run_dsn.clone(),
            allow_privileged_runs: instance.allow_privileged_runs,
        }
    }

    /// An empty string (a proto default) means none.
    pub fn from_wire(dsn: String, run_dsn: String, allow_privileged_runs: bool) -> Self {
        Self {
            dsn: Dsn::new(dsn),
            run_dsn: (!run_dsn.is_empty()).then(|| Dsn::new(run_dsn)),
            allow_privileged_runs,
        }
    }
}

pub struct Executor {
    config: ControlConfig,
    host: String,
    /// Config-file instances; never replaced.
    configured: HashMap<String, RunTarget>,
    /// Instances assigned through the API (replaced on each assignment).
    assigned: RwLock<HashMap<String, RunTarget>>,
    events: mpsc::Sender<AgentMessage>,
    global: Arc<Semaphore>,
    per_instance: Mutex<HashMap<String, Arc<Semaphore>>>,
    active: Mutex<HashMap<i64, Active>>,
    /// Runs some of whose messages were lost with a broken stream: not
    /// reported as in flight, so ingest fails them instead of storing a
    /// result with a hole.
    tainted: Mutex<HashSet<i64>>,
}

impl Executor {
    pub fn new(
        config: ControlConfig,
        configured: HashMap<String, RunTarget>,
        events: mpsc::Sender<AgentMessage>,
    ) -> Arc<Self> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "this host".to_owned());
        Arc::new(Self {
            global: Arc::new(Semaphore::new(config.max_concurrent_runs)),
            config,
            host,
            configured,
            assigned: RwLock::default(),
            events,
            per_instance: Mutex::default(),
            active: Mutex::default(),
            tainted: Mutex::default(),
        })
    }

    pub fn events(&self) -> mpsc::Sender<AgentMessage> {
        self.events.clone()
    }

    pub fn allowed(&self) -> Vec<String> {
        self.config.allow.clone()
    }

    /// Runs accepted and not finished, minus tainted ones.
    pub fn in_flight(&self) -> Vec<i64> {
        let tainted = self.tainted.lock().unwrap_or_else(PoisonError::into_inner);
        self.active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .filter(|id| !tainted.contains(id))
            .copied()
            .collect()
    }

    pub fn taint(&self, run: i64) {
        self.tainted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(run);
    }

    /// Replaces the API-assigned instances; a name that clashes with a
    /// config-file instance is refused (the file wins).
    pub fn set_assigned(&self, instances: Vec<(String, RunTarget)>) {
        let mut map = HashMap::new();
        for (name, dsn) in instances {
            if self.configured.contains_key(&name) {
                tracing::warn!(instance = %name, "assigned instance ignored: the config file has an instance of that name");
                continue;
            }
            map.insert(name, dsn);
        }
        *self
            .assigned
            .write()
            .unwrap_or_else(PoisonError::into_inner) = map;
    }

    /// The run's final message went out on a stream: it is no longer in flight.
    pub fn delivered(&self, run: i64) {
        self.active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&run);
        self.tainted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&run);
    }

    pub fn cancel(&self, run: i64) {
        let active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(a) = active.get(&run) else {
            tracing::debug!(run, "cancel for a run that is not running here");
            return;
        };
        let _ = a.cancel.send(true);
        cancel_statement(&a.token);
        tracing::info!(run, "run cancel asked");
    }

    /// Accepts a run; it executes in its own task.
    pub fn submit(self: &Arc<Self>, request: RunRequest) {
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let token: TokenSlot = Arc::default();
        {
            let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
            if active.contains_key(&request.run_id) {
                tracing::warn!(
                    run = request.run_id,
                    "run delivered twice; the second copy is ignored"
                );
                return;
            }
            active.insert(
                request.run_id,
                Active {
                    cancel: cancel_tx,
                    token: Arc::clone(&token),
                },
            );
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let run_id = request.run_id;
            let finished = this.execute(request, cancel_rx, token).await;
            tracing::info!(run = run_id, outcome = ?finished.outcome(), rows = finished.rows, "run ended");
            let msg = AgentMessage {
                body: Some(agent_message::Body::Finished(finished)),
            };
            // The run stays "in flight" (named in the next hello) until the
            // stream has taken its result: see `delivered`.
            if this.events.send(msg).await.is_err() {
                tracing::warn!(run = run_id, "the run's result could not be queued");
                this.delivered(run_id);
            }
        });
    }

    fn limits(&self, r: &RunRequest) -> Limits {
        let c = &self.config;
        let timeout_ms = if r.timeout_ms == 0 {
            c.default_timeout_secs * 1000
        } else {
            u64::from(r.timeout_ms)
        };
        let clamp = |asked: u64, max: u64| if asked == 0 { max } else { asked.min(max) };
        Limits {
            timeout: Duration::from_millis(timeout_ms.min(c.max_timeout_secs * 1000)),
            max_rows: clamp(r.max_rows, c.max_rows_limit),
            max_bytes: clamp(r.max_bytes, c.max_bytes_limit),
        }
    }

    /// The connection settings of the run, and whether its login role must
    /// be checked: read-only kinds use the instance's `run_dsn`.
    fn target(
        &self,
        r: &RunRequest,
        params: &RunParams,
    ) -> Result<(lasect_pgtls::PgConfig, bool), String> {
        let target = if !r.dsn.is_empty() {
            RunTarget::from_wire(r.dsn.clone(), r.run_dsn.clone(), r.allow_privileged_runs)
        } else if let Some(d) = self.configured.get(&r.instance) {
            d.clone()
        } else if let Some(d) = self
            .assigned
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&r.instance)
        {
            d.clone()
        } else {
            return Err(format!("this agent has no instance named `{}`", r.instance));
        };
        let read_only = ops::privileges::is_read_only(params);
        let (dsn, which) = match (&target.run_dsn, read_only) {
            (Some(run_dsn), true) => (run_dsn, "run_dsn"),
            _ => (&target.dsn, "DSN"),
        };
        // The parse error of tokio-postgres never repeats the DSN.
        let mut pg = lasect_pgtls::PgConfig::parse(dsn.expose_secret())
            .map_err(|e| format!("the instance's {which} is not valid: {e}"))?;
        crate::collect::session::configure(&mut pg);
        Ok((pg, read_only && !target.allow_privileged_runs))
    }

    fn semaphore_of(&self, instance: &str) -> Arc<Semaphore> {
        let mut map = self
            .per_instance
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(instance.to_owned()).or_insert_with(|| {
            Arc::new(Semaphore::new(self.config.max_concurrent_runs_per_instance))
        }))
    }

    async fn execute(
        &self,
        r: RunRequest,
        mut cancel: watch::Receiver<bool>,
        token: TokenSlot,
    ) -> RunFinished {
        let run_id = r.run_id;
        let failed = |error: String, detail: Value| RunFinished {
            run_id,
            outcome: RunOutcome::Failed.into(),
            error,
            error_detail_json: detail.to_string(),
            ..RunFinished::default()
        };
        let params = match parse_run(&r.kind, &r.params_json) {
            Ok(p) => p,
            Err(e) => {
                let mut finished = failed(e.to_string(), Value::Null);
                if matches!(e, OpError::Params(_)) {
                    // As when an operation found its parameters bad: no detail.
                    finished.error_detail_json = String::new();
                }
                return finished;
            }
        };
        if let Some(class) = params.class()
            && !self.config.allows(class)
        {
            return failed(
                format!(
                    "refused by this agent's [control] allow list: `{class}` is not allowed on {}",
                    self.host
                ),
                json!({ "refused": class.as_str(), "allowed": self.config.allow }),
            );
        }
        let (pg, check_login_role) = match self.target(&r, &params) {
            Ok(t) => t,
            Err(e) => return failed(e, Value::Null),
        };
        let limits = self.limits(&r);

        // Wait for a slot (in arrival order), unless cancelled meanwhile.
        let global = Arc::clone(&self.global);
        let local = self.semaphore_of(&r.instance);
        let permits = async {
            let a = global.acquire_owned().await;
            let b = local.acquire_owned().await;
            (a, b)
        };
        let _permits = tokio::select! {
            p = permits => p,
            () = async { let _ = cancel.wait_for(|c| *c).await; } => {
                return RunFinished {
                    run_id,
                    outcome: RunOutcome::Cancelled.into(),
                    error: "cancelled before it started".to_owned(),
                    ..RunFinished::default()
                };
            }
        };

        let mut ctx = OpContext {
            run_id,
            instance: r.instance.clone(),
            params,
            pg,
            check_login_role,
            limits,
            input: r.input.into(),
            cancel: cancel.clone(),
            out: ResultSink::new(run_id, self.events.clone(), limits),
            cancel_token: Arc::clone(&token),
            pgbackrest: self.config.pgbackrest.clone(),
        };
        let result =
            tokio::time::timeout(limits.timeout + CLIENT_GRACE, ops::dispatch(&mut ctx)).await;
        let cancelled = *cancel.borrow();
        let mut finished = RunFinished {
            run_id,
            rows: ctx.out.rows(),
            bytes: ctx.out.bytes(),
            pages: ctx.out.pages(),
            truncated: ctx.out.truncated().is_some(),
            ..RunFinished::default()
        };
        match result {
            Err(_) => {
                cancel_statement(&token);
                finished.outcome = RunOutcome::TimedOut.into();
                finished.error = format!("the run exceeded its timeout of {:?}", limits.timeout);
            }
            Ok(Ok(outcome)) => {
                let mut summary = outcome.summary;
                if let (Some(t), Value::Object(map)) = (ctx.out.truncated(), &mut summary) {
                    map.insert("truncated_by".to_owned(), Value::from(t.as_str()));
                }
                finished.outcome = RunOutcome::Succeeded.into();
                finished.summary_json = summary.to_string();
            }
            Ok(Err(e)) => {
                let (outcome, error, detail) = classify(&e, cancelled, limits.timeout);
                finished.outcome = outcome.into();
                finished.error = error;
                finished.error_detail_json = detail.map(|d| d.to_string()).unwrap_or_default();
            }
        }
        finished
    }
}

/// The run's kind and parameters, parsed once: a kind this agent does not
/// know is refused, parameters that do not fit it are a params error.
fn parse_run(kind: &str, params_json: &str) -> Result<RunParams, OpError> {
    let kind: RunKind = kind.parse().map_err(|_| {
        OpError::Refused(format!("this agent does not support the run kind `{kind}`"))
    })?;
    let params: Value = match serde_json::from_str(params_json) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return Err(OpError::Refused(
                "the run's params are not a JSON object".to_owned(),
            ));
        }
    };
    RunParams::from_json(kind, &params).map_err(|e| OpError::Params(e.to_string()))
}

/// How an operation error ends the run.
fn classify(
    e: &OpError,
    cancelled: bool,
    timeout: Duration,
) -> (RunOutcome, String, Option<Value>) {
    match e {
        OpError::Postgres(pg) if pg.code() == Some(&SqlState::QUERY_CANCELED) => {
            let by_timeout = pg
                .as_db_error()
                .is_some_and(|db| db.message().contains("statement timeout"));
            if by_timeout || !cancelled {
                (
                    RunOutcome::TimedOut,
                    format!("the statement exceeded the run's timeout of {timeout:?}"),
                    Some(ops::pg_error_detail(pg)),
                )
            } else {
                (
                    RunOutcome::Cancelled,
                    "cancelled on request".to_owned(),
                    None,
                )
            }
        }
        OpError::Postgres(pg) => (
            RunOutcome::Failed,
            e.to_string(),
            Some(ops::pg_error_detail(pg)),
        ),
        OpError::Failed { message, detail } => {
            (RunOutcome::Failed, message.clone(), Some(detail.clone()))
        }
        _ if cancelled => (
            RunOutcome::Cancelled,
            "cancelled on request".to_owned(),
            None,
        ),
        other => (RunOutcome::Failed, other.to_string(), None),
    }
}

fn cancel_statement(token: &TokenSlot) {
    let token = token.lock().unwrap_or_else(PoisonError::into_inner).clone();
    if let Some(ops::RunCancel { token, tls }) = token {
        tokio::spawn(async move {
            if let Err(e) = token.cancel_query(tls).await {
                tracing::debug!(error = %e, "cancel request not delivered");
            }
        });
    }
}
