//! Operations: the work the API pushes down to the agent over the Control
//! stream (`control`), one *run* at a time per request. The kinds, their
//! JSON parameters and results are specified in `docs/CONTROL.md`.
//!
//! Every kind is an `async fn(&mut OpContext) -> Result<OpOutcome, OpError>`
//! (see [`dispatch`]). The context carries the target's connection settings,
//! the run's limits (already clamped to the agent's maxima), the cancel
//! signal and a [`ResultSink`] that pages results up the stream.
//!
//! Invariants every kind keeps:
//! - it connects with [`OpContext::connect`] (its own session, named
//!   `lasect run <id>`, dropped when the run ends, so a timed-out or
//!   cancelled statement leaves no backend behind);
//! - parameters are bound, never interpolated; identifiers are quoted with
//!   [`quote_ident`];
//! - it stops producing rows at `max_rows` / `max_bytes` and says so
//!   (`OpOutcome::truncated`), it never fails because a result is large.

pub mod backup;
pub mod backup_progress;
pub mod dump_sql;
pub mod explain;
pub mod export_csv;
pub mod extensions;
pub mod import_csv;
pub mod instance_check;
pub mod instance_metadata;
pub mod migration;
mod pgbackrest_version;
pub mod privileges;
pub mod replication;
pub mod restore;
pub mod schema_snapshot;
pub mod script;
pub mod sql;
pub mod table_data;
pub mod values;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lasect_proto::v1::{AgentMessage, RunChunk, RunStarted, agent_message};
use lasect_runs::RunParams;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;

/// A page is sent when it reaches this many rows or bytes, whichever first.
pub const PAGE_ROWS: usize = 1000;
pub const PAGE_BYTES: usize = 1 << 20;

/// What a run may use, after clamping to the agent's `[control]` maxima.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub timeout: Duration,
    pub max_rows: u64,
    pub max_bytes: u64,
}

/// Why a result stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    MaxRows,
    MaxBytes,
}

impl Truncation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxRows => "max_rows",
            Self::MaxBytes => "max_bytes",
        }
    }
}

pub struct OpContext {
    pub run_id: i64,
    /// Name of the target instance.
    pub instance: String,
    /// The run's parameters, parsed once by the executor; the arm is the kind.
    pub params: RunParams,
    /// Connection settings of the target (application_name already set):
    /// the instance's `run_dsn` for the read-only kinds, else its DSN.
    pub pg: lasect_pgtls::PgConfig,
    /// Refuse the session when its login role is privileged
    /// ([`privileges::check_login_role`]): a read-only kind on an instance
    /// without `allow_privileged_runs`.
    pub check_login_role: bool,
    pub limits: Limits,
    /// The run's input (import_csv), empty otherwise.
    pub input: bytes::Bytes,
    /// Turns true when a cancel for this run arrives.
    pub cancel: watch::Receiver<bool>,
    pub out: ResultSink,
    /// Filled by [`OpContext::connect`]: how the executor cancels the
    /// run's statement (cancel asked, or the client-side timeout).
    pub cancel_token: Arc<Mutex<Option<RunCancel>>>,
    /// `[control.pgbackrest]`: the pgBackRest the backup kinds run, and how.
    pub pgbackrest: crate::pgbackrest_config::PgBackRestConfig,
}

/// How a run's statement is cancelled: the cancel request is a new
/// connection, made with the run's TLS settings.
#[derive(Clone)]
pub struct RunCancel {
    pub token: tokio_postgres::CancelToken,
    pub tls: lasect_pgtls::MakeRustlsConnect,
}

impl OpContext {
    /// Opens the run's own session on `database` (or the DSN's database),
    /// reports its backend pid (`RunStarted`) and sets `statement_timeout`
    /// to the run's timeout. The connection ends when the client is dropped.
    pub async fn connect(&mut self, database: Option<&str>) -> Result<Client, OpError> {
        let mut pg = self.pg.clone();
        if let Some(db) = database {
            pg.dbname(db);
        }
        pg.application_name(format!("lasect run {}", self.run_id));
        let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, pg.connect())
            .await
            .map_err(|_| OpError::Connect(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| OpError::Connect(crate::ops::pg_error_line(&e)))?;
        *self
            .cancel_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(RunCancel {
            token: client.cancel_token(),
            tls: pg.connector(),
        });
        let run_id = self.run_id;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(run_id, error = %e, "run connection closed");
            }
        });
        if self.check_login_role {
            privileges::check_login_role(&client, &self.instance).await?;
        }
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(OpError::Postgres)?
            .try_get(0)
            .map_err(OpError::Postgres)?;
        let ms = self.limits.timeout.as_millis();
        client
            .batch_execute(&format!("SET statement_timeout = {ms}"))
            .await
            .map_err(OpError::Postgres)?;
        self.out.started(pid).await?;
        Ok(client)
    }

    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the kind's operation, handing it its own parameters.
pub async fn dispatch(ctx: &mut OpContext) -> Result<OpOutcome, OpError> {
    match ctx.params.clone() {
        RunParams::Sql(p) => sql::run(ctx, &p).await,
        RunParams::Explain(p) => explain::run(ctx, &p).await,
        RunParams::InstanceCheck(_) => instance_check::run(ctx).await,
        RunParams::InstanceMetadata(_) => instance_metadata::run(ctx).await,
        RunParams::Migration(p) => migration::run(ctx, &p).await,
        RunParams::SchemaSnapshot(p) => schema_snapshot::run(ctx, &p).await,
        RunParams::TableData(p) => table_data::run(ctx, &p).await,
        RunParams::ExportCsv(p) => export_csv::run(ctx, &p).await,
        RunParams::ImportCsv(p) => import_csv::run(ctx, &p).await,
        RunParams::DumpSql(p) => dump_sql::run(ctx, &p).await,
        RunParams::ExtensionList(p) => extensions::list(ctx, &p).await,
        RunParams::ExtensionAction(p) => extensions::action(ctx, &p).await,
        RunParams::BackupStanza(p) => backup::stanza(ctx, &p).await,
        RunParams::Backup(p) => backup::backup(ctx, &p).await,
        RunParams::BackupInfo(p) => backup::catalogue(ctx, &p).await,
        RunParams::BackupRestore(p) => restore::restore(ctx, &p).await,
        RunParams::BackupDrill(p) => restore::drill(ctx, &p).await,
        RunParams::ReplicationValidate(p) => replication::validate(ctx, &p).await,
        RunParams::ReplicationPublish(p) => replication::publish(ctx, &p).await,
        RunParams::ReplicationSubscribe(p) => replication::subscribe(ctx, &p).await,
        RunParams::ReplicationDrop(p) => replication::drop_objects(ctx, &p).await,
    }
}

/// Sends a run's pages up the Control stream, counting rows and bytes
/// against the limits.
pub struct ResultSink {
    run_id: i64,
    tx: mpsc::Sender<AgentMessage>,
    limits: Limits,
    page: u32,
    pending_rows: Vec<Value>,
    pending_bytes: usize,
    pending_raw: Vec<u8>,
    rows: u64,
    bytes: u64,
    truncated: Option<Truncation>,
}

/// Sends `RunProgress` of one run: a JSON object ingest keeps in `runs.progress` while the
/// run is running.
#[derive(Clone)]
pub struct ProgressReporter {
    run_id: i64,
    tx: mpsc::Sender<AgentMessage>,
}

impl ProgressReporter {
    pub async fn report(&self, progress: &Value) -> Result<(), StreamClosed> {
        let body = agent_message::Body::Progress(lasect_proto::v1::RunProgress {
            run_id: self.run_id,
            progress_json: progress.to_string(),
        });
        self.tx
            .send(AgentMessage { body: Some(body) })
            .await
            .map_err(|_| StreamClosed)
    }
}

/// The Control stream is gone; the run cannot report anything any more.
#[derive(Debug, thiserror::Error)]
#[error("the control stream closed while the run was sending its result")]
pub struct StreamClosed;

impl ResultSink {
    pub fn new(run_id: i64, tx: mpsc::Sender<AgentMessage>, limits: Limits) -> Self {
        Self {
            run_id,
            tx,
            limits,
            page: 0,
            pending_rows: Vec::new(),
            pending_bytes: 0,
            pending_raw: Vec::new(),
            rows: 0,
            bytes: 0,
            truncated: None,
        }
    }

    pub async fn started(&self, backend_pid: i32) -> Result<(), StreamClosed> {
        self.send(agent_message::Body::Started(RunStarted {
            run_id: self.run_id,
            backend_pid,
        }))
        .await
    }

    /// Where a task beside the run sends its progress reports.
    pub fn progress_reporter(&self) -> ProgressReporter {
        ProgressReporter {
            run_id: self.run_id,
            tx: self.tx.clone(),
        }
    }

    /// Adds one row (a JSON array of values). Returns `false` once a limit
    /// is reached: the row was not added and the caller must stop reading.
    pub async fn row(&mut self, row: Value) -> Result<bool, StreamClosed> {
        if self.truncated.is_some() {
            return Ok(false);
        }
        if self.rows >= self.limits.max_rows {
            self.truncated = Some(Truncation::MaxRows);
            return Ok(false);
        }
        let size = row.to_string().len() + 1;
        if self.bytes + size as u64 > self.limits.max_bytes {
            self.truncated = Some(Truncation::MaxBytes);
            return Ok(false);
        }
        self.rows += 1;
        self.bytes += size as u64;
        self.pending_bytes += size;
        self.pending_rows.push(row);
        if self.pending_rows.len() >= PAGE_ROWS || self.pending_bytes >= PAGE_BYTES {
            self.flush().await?;
        }
        Ok(true)
    }

    /// Adds raw bytes (CSV, SQL, a JSON document); `rows` is what they hold
    /// (for accounting). Returns `false` once `max_bytes` is reached: the
    /// bytes beyond it were not added and the caller must stop.
    pub async fn raw(&mut self, data: &[u8], rows: u64) -> Result<bool, StreamClosed> {
        if self.truncated.is_some() {
            return Ok(false);
        }
        let room = self.limits.max_bytes.saturating_sub(self.bytes);
        let take = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
        self.pending_raw.extend_from_slice(&data[..take]);
        self.bytes += take as u64;
        self.rows += rows;
        while self.pending_raw.len() >= PAGE_BYTES {
            let rest = self.pending_raw.split_off(PAGE_BYTES);
            let page = std::mem::replace(&mut self.pending_raw, rest);
            self.send_page(page, 0).await?;
        }
        if take < data.len() {
            self.truncated = Some(Truncation::MaxBytes);
            return Ok(false);
        }
        Ok(true)
    }

    /// Sends what is pending (call once at the end; `finish` does).
    pub async fn flush(&mut self) -> Result<(), StreamClosed> {
        if !self.pending_rows.is_empty() {
            let rows = std::mem::take(&mut self.pending_rows);
            let n = u32::try_from(rows.len()).unwrap_or(u32::MAX);
            let data = serde_json::to_vec(&rows).unwrap_or_default();
            self.pending_bytes = 0;
            self.send_page(data, n).await?;
        }
        if !self.pending_raw.is_empty() {
            let data = std::mem::take(&mut self.pending_raw);
            self.send_page(data, 0).await?;
        }
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    pub fn pages(&self) -> u32 {
        self.page
    }
    pub fn truncated(&self) -> Option<Truncation> {
        self.truncated
    }

    async fn send_page(&mut self, data: Vec<u8>, rows: u32) -> Result<(), StreamClosed> {
        let page = self.page;
        self.page += 1;
        self.send(agent_message::Body::Chunk(RunChunk {
            run_id: self.run_id,
            page,
            rows,
            data,
        }))
        .await
    }

    async fn send(&self, body: agent_message::Body) -> Result<(), StreamClosed> {
        self.tx
            .send(AgentMessage { body: Some(body) })
            .await
            .map_err(|_| StreamClosed)
    }
}

/// What a kind reports when it ends normally. Rows, bytes, pages and
/// truncation come from the sink; `summary` is the kind's JSON summary.
#[derive(Debug, Default)]
pub struct OpOutcome {
    pub summary: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// Refused by the agent's `[control] allow` list (or a kind it does not know).
    #[error("{0}")]
    Refused(String),
    /// The parameters are missing or malformed.
    #[error("bad parameters: {0}")]
    Params(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The server refused the statement; the executor turns SQLSTATE 57014
    /// into `timed_out` or `cancelled` as appropriate.
    #[error("{}", pg_error_line(.0))]
    Postgres(tokio_postgres::Error),
    /// A kind-specific failure with a JSON detail (e.g. an import's per-row
    /// report, a feature check).
    #[error("{message}")]
    Failed { message: String, detail: Value },
    #[error(transparent)]
    Stream(#[from] StreamClosed),
}

/// The first file named `program` in the agent's `PATH`, as a shell would run it.
pub(crate) fn on_path(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// One line for a PostgreSQL error: "ERROR 42601: syntax error at or near …".
pub fn pg_error_line(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        // With its causes: a TLS error says which certificate or host was wrong.
        None => lasect_pgtls::describe(e),
    }
}

/// The JSON detail of a PostgreSQL error (sqlstate, detail, hint, position, where).
pub fn pg_error_detail(e: &tokio_postgres::Error) -> Value {
    let Some(db) = e.as_db_error() else {
        return serde_json::json!({ "message": e.to_string() });
    };
    let position = match db.position() {
        Some(tokio_postgres::error::ErrorPosition::Original(p)) => Some(*p),
        _ => None,
    };
    serde_json::json!({
        "sqlstate": db.code().code(),
        "message": db.message(),
        "detail": db.detail(),
        "hint": db.hint(),
        "position": position,
        "where": db.where_(),
        "schema": db.schema(),
        "table": db.table(),
        "column": db.column(),
        "constraint": db.constraint(),
    })
}

/// `"name"` with embedded quotes doubled: safe to splice as an identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_rows: u64, max_bytes: u64) -> Limits {
        Limits {
            timeout: Duration::from_secs(1),
            max_rows,
            max_bytes,
        }
    }

    #[tokio::test]
    async fn rows_are_paged_and_cut_at_max_rows() {
        let (tx, mut rx) = mpsc::channel(64);
        let mut sink = ResultSink::new(7, tx, limits(1500, u64::MAX));
        let mut accepted = 0;
        for i in 0..2000 {
            if !sink.row(serde_json::json!([i])).await.expect("send") {
                break;
            }
            accepted += 1;
        }
        sink.flush().await.expect("flush");
        assert_eq!(accepted, 1500);
        assert_eq!(sink.truncated(), Some(Truncation::MaxRows));
        assert_eq!(sink.pages(), 2);
        let mut total = 0;
        while let Ok(m) = rx.try_recv() {
            if let Some(agent_message::Body::Chunk(c)) = m.body {
                let rows: Vec<Value> = serde_json::from_slice(&c.data).expect("json rows");
                assert_eq!(rows.len() as u32, c.rows);
                total += rows.len();
            }
        }
        assert_eq!(total, 1500);
    }

    #[tokio::test]
    async fn raw_bytes_stop_at_max_bytes() {
        let (tx, mut rx) = mpsc::channel(64);
        let mut sink = ResultSink::new(1, tx, limits(u64::MAX, 10));
        assert!(sink.raw(b"a,b\n", 1).await.expect("send"));
        assert!(!sink.raw(b"cccccccc\n", 1).await.expect("send"));
        sink.flush().await.expect("flush");
        assert_eq!(sink.bytes(), 10);
        assert_eq!(sink.truncated(), Some(Truncation::MaxBytes));
        let Some(agent_message::Body::Chunk(c)) = rx.try_recv().expect("page").body else {
            panic!("expected a chunk");
        };
        assert_eq!(&c.data[..], b"a,b\ncccccc");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(
            quote_ident("a\"; DROP TABLE x; --"),
            "\"a\"\"; DROP TABLE x; --\""
        );
    }
}
