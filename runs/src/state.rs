//! The run state machine (docs/CONTROL.md, "Lifecycle"): every status a run can be in
//! ([`RunStatus`], the `CHECK` of `runs.status`), every change the processes make
//! ([`Transition`]), which status each change may start from and end in
//! ([`Transition::outcome`], the one table), and the one SQL statement that makes it
//! ([`Transition::sql`]).
//!
//! The API (sqlx) and ingest (tokio-postgres) use different PostgreSQL clients, so this crate
//! holds the statements as text with numbered parameters ([`Transition::params`] says what
//! each is) and each side executes them with its own client. The statuses a statement may
//! start from are not written in its text: its `status IN (…)` is rendered from
//! [`Transition::from`], itself derived from [`Transition::outcome`]. Changing which runs a
//! transition may touch is therefore one edit here; the statuses it writes are in its text and
//! `runs/tests/store.rs` executes every statement from every status on a migrated store,
//! checking that it ends where the table says and that from any other status it changes
//! nothing.
//!
//! Runs are born `queued` (the column's default: the API's inserts and the fleet migration's
//! `lasect_migration_queue_next()`, V16); no transition leads back there. A terminal status is
//! final: no statement touches a run in one, so a late message (a result after an expiry, a
//! start after a lost-run sweep) changes nothing. Writes on behalf of an agent also name the
//! agent ([`Transition::scoped_to_agent`]): an agent can only touch its own runs.
//!
//! Queued runs expire through a store function (`lasect_expire_queued_runs()`, V18) rather than
//! a statement here, because the API and every ingest call it and a migration cannot import
//! Rust; the store test pins it to this table like the others.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

/// `runs.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunStatus {
    /// Inserted, waiting for an ingest that holds its agent's Control stream.
    Queued,
    /// Claimed by an ingest and sent to the agent (which may be waiting for a slot).
    Dispatched,
    /// The agent started it (`RunStarted`).
    Running,
    Succeeded,
    Failed,
    /// The agent's statement timeout (or its client-side bound) ended it.
    TimedOut,
    Cancelled,
    /// No agent took it before `expires_at`.
    Expired,
}

/// A status name no part of this version knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown run status `{0}`")]
pub struct UnknownStatus(pub String);

impl RunStatus {
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Queued,
        RunStatus::Dispatched,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::TimedOut,
        RunStatus::Cancelled,
        RunStatus::Expired,
    ];

    /// The statuses an agent may report at the end of a run (`RunFinished.outcome`).
    pub const REPORTED: [RunStatus; 4] = [
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::TimedOut,
        RunStatus::Cancelled,
    ];

    /// The name stored in `runs.status`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Dispatched => "dispatched",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Expired => "expired",
        }
    }

    /// No transition leaves a terminal status.
    pub const fn is_terminal(self) -> bool {
        match self {
            RunStatus::Queued | RunStatus::Dispatched | RunStatus::Running => false,
            RunStatus::Succeeded
            | RunStatus::Failed
            | RunStatus::TimedOut
            | RunStatus::Cancelled
            | RunStatus::Expired => true,
        }
    }

    /// `'a', 'b'`: statuses as SQL literals, for a `status IN (…)` rendered from this type
    /// rather than spelled out again.
    pub fn sql_list(statuses: &[RunStatus]) -> String {
        statuses
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether some transition moves a run from this status to `to` (a different one).
    pub fn can_become(self, to: RunStatus) -> bool {
        self != to
            && Transition::ALL
                .iter()
                .any(|t| t.outcome(self).contains(&to))
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        RunStatus::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Every statement that changes a run (or, for [`Transition::StorePage`], adds to it) once it
/// exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// Ingest claims up to 100 queued, unexpired runs of the agents it holds, oldest first
    /// (`FOR UPDATE SKIP LOCKED`: concurrent ingests skip each other's), and reads what it
    /// sends. The statement commits before the runs are sent, so no run goes out twice.
    Claim,
    /// A claimed run ingest could not send.
    Undeliverable,
    /// The agent started the run (`RunStarted`).
    Start,
    /// A result page (`RunChunk`), zstd-compressed; a page already there is kept.
    StorePage,
    /// The agent's `RunFinished`: the reported status, counts, error, summary and the result's
    /// expiry, in the transaction that also does the kind's post-processing.
    Finish,
    /// A protocol error on the agent's stream about one of its runs.
    FailOpen,
    /// After the agent (re)connects: its runs it no longer executes
    /// (`ControlHello.in_flight_run_ids`) are lost; runs are never executed twice.
    FailLost,
    /// Dispatched or running for longer than its timeout plus a grace without a result.
    ResultOverdue,
    /// Queued past `expires_at` (its agent never took it).
    Expire,
    /// A cancel asked through the API: a queued run is cancelled at once; a dispatched or
    /// running one keeps its status and gets `cancel_requested_at`, whose trigger
    /// (`runs_notify_cancel`) wakes the ingest holding the agent, which forwards it; the agent
    /// then reports `cancelled` (or whatever ended the run first) through [`Transition::Finish`].
    Cancel,
}

impl Transition {
    pub const ALL: [Transition; 10] = [
        Transition::Claim,
        Transition::Undeliverable,
        Transition::Start,
        Transition::StorePage,
        Transition::Finish,
        Transition::FailOpen,
        Transition::FailLost,
        Transition::ResultOverdue,
        Transition::Expire,
        Transition::Cancel,
    ];

    /// The statuses a run in `from` may have after this statement; empty: the statement must
    /// not touch a run in `from` at all. The same status: the run changes but keeps its status.
    /// This is the state machine.
    pub const fn outcome(self, from: RunStatus) -> &'static [RunStatus] {
        use RunStatus::*;
        match self {
            Transition::Claim => match from {
                Queued => &[Dispatched],
                _ => &[],
            },
            Transition::Undeliverable => match from {
                Dispatched => &[Failed],
                _ => &[],
            },
            Transition::Start => match from {
                Dispatched => &[Running],
                _ => &[],
            },
            Transition::StorePage => match from {
                Dispatched => &[Dispatched],
                Running => &[Running],
                _ => &[],
            },
            Transition::Finish => match from {
                Dispatched | Running => &RunStatus::REPORTED,
                _ => &[],
            },
            Transition::FailOpen | Transition::FailLost | Transition::ResultOverdue => match from {
                Dispatched | Running => &[Failed],
                _ => &[],
            },
            Transition::Expire => match from {
                Queued => &[Expired],
                _ => &[],
            },
            Transition::Cancel => match from {
                Queued => &[Cancelled],
                Dispatched => &[Dispatched],
                Running => &[Running],
                _ => &[],
            },
        }
    }

    /// The statuses this statement may touch, in [`RunStatus::ALL`] order.
    pub fn from(self) -> Vec<RunStatus> {
        RunStatus::ALL
            .into_iter()
            .filter(|s| !self.outcome(*s).is_empty())
            .collect()
    }

    /// True when the statement names the agent the run belongs to, so that an agent's message
    /// can only change its own runs.
    pub const fn scoped_to_agent(self) -> bool {
        match self {
            Transition::Claim
            | Transition::Start
            | Transition::StorePage
            | Transition::Finish
            | Transition::FailOpen
            | Transition::FailLost => true,
            // Ingest's own decisions (a run it claimed and could not send, overdue results,
            // expiry) and the API's cancel, which checked who may cancel before.
            Transition::Undeliverable
            | Transition::ResultOverdue
            | Transition::Expire
            | Transition::Cancel => false,
        }
    }

    /// What `$1`, `$2`, … of [`Transition::sql`] are, in order, with their SQL types.
    pub const fn params(self) -> &'static [&'static str] {
        match self {
            Transition::Claim => &["agent ids (text[])", "ingest node name (text)"],
            Transition::Undeliverable => &["run id (bigint)", "error (text)"],
            Transition::Start => &[
                "run id (bigint)",
                "agent id (text)",
                "backend pid (integer, NULL when unknown)",
            ],
            Transition::StorePage => &[
                "run id (bigint)",
                "agent id (text)",
                "page number (integer)",
                "rows (integer)",
                "uncompressed bytes (integer)",
                "zstd-compressed page (bytea)",
            ],
            Transition::Finish => &[
                "run id (bigint)",
                "agent id (text)",
                "reported status (text, one of RunStatus::REPORTED)",
                "rows (bigint)",
                "bytes (bigint)",
                "truncated (boolean)",
                "pages (integer)",
                "error (text, NULL for none)",
                "error detail (jsonb, NULL for none)",
                "summary (jsonb, NULL for none)",
                "result TTL in seconds (bigint)",
            ],
            Transition::FailOpen => &["run id (bigint)", "agent id (text)", "error (text)"],
            Transition::FailLost => &["agent id (text)", "run ids still executing (bigint[])"],
            Transition::ResultOverdue => &["grace after the run's timeout, ms (bigint)"],
            Transition::Expire => &[],
            Transition::Cancel => &["run id (bigint)"],
        }
    }

    /// The statement. Rows it returns: [`Transition::Claim`] one per claimed run (id, agent id,
    /// kind, instance name, params, timeout_ms, max_rows, max_bytes, DSN ciphertext of an
    /// API-added instance, compressed input, run DSN ciphertext, allow_privileged_runs,
    /// instance id); [`Transition::Finish`] one when the run was open (kind, instance id, the
    /// `database` parameter or ''); [`Transition::Expire`] one, the number expired (bigint);
    /// the others none (their affected row count says whether they applied).
    pub fn sql(self) -> &'static str {
        STATEMENTS[self as usize].as_str()
    }
}

/// Where a run's status change is announced: the V15 trigger `runs_notify_status` calls
/// `pg_notify` with `<run id> <new status>` on every change, whichever statement made it.
pub const STATUS_CHANNEL: &str = "lasect_run_status";
/// Where ingest announces an agent's progress report, in the statement that stores it
/// ([`progress_sql`]): payload `<run id>`.
pub const PROGRESS_CHANNEL: &str = "lasect_run_progress";

/// Ingest keeps a running run's latest progress report (`$1` run id, `$2` agent id, `$3` the
/// report, a jsonb object) and announces it on [`PROGRESS_CHANNEL`] in the same statement (so
/// after its commit); its row count says whether it applied. Not a [`Transition`]: the status
/// does not change.
pub fn progress_sql() -> &'static str {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH changed AS (UPDATE runs SET progress = $3, progress_at = now() \
             WHERE id = $1 AND agent_id = $2 AND status = 'running' RETURNING id) \
             SELECT pg_notify('{PROGRESS_CHANNEL}', id::text) FROM changed"
        )
    });
    SQL.as_str()
}

/// Rendered once, in [`Transition::ALL`] order (the discriminants).
static STATEMENTS: LazyLock<[String; Transition::ALL.len()]> =
    LazyLock::new(|| Transition::ALL.map(render));

fn render(t: Transition) -> String {
    let from = RunStatus::sql_list(&t.from());
    match t {
        Transition::Claim => format!(
            "WITH claimed AS (
                 UPDATE runs SET status = 'dispatched', dispatched_at = now(), dispatched_by = $2
                 WHERE id IN (SELECT id FROM runs
                              WHERE status IN ({from}) AND agent_id = ANY($1)
                                AND expires_at > now()
                              ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED)
                 RETURNING id, agent_id, kind, instance_id, params, timeout_ms, max_rows, max_bytes)
             SELECT c.id, c.agent_id, c.kind, i.name, c.params, c.timeout_ms, c.max_rows,
                    c.max_bytes, CASE WHEN i.source = 'api' THEN i.dsn_ciphertext END, ri.data,
                    CASE WHEN i.source = 'api' THEN i.run_dsn_ciphertext END,
                    i.source = 'api' AND i.allow_privileged_runs, c.instance_id
             FROM claimed c
             JOIN instances i ON i.id = c.instance_id
             LEFT JOIN run_inputs ri ON ri.run_id = c.id
             ORDER BY c.id"
        ),
        Transition::Undeliverable => format!(
            "UPDATE runs SET status = 'failed', finished_at = now(), error = $2
             WHERE id = $1 AND status IN ({from})"
        ),
        Transition::Start => format!(
            "UPDATE runs SET status = 'running', started_at = now(), backend_pid = $3
             WHERE id = $1 AND agent_id = $2 AND status IN ({from})"
        ),
        Transition::StorePage => format!(
            "INSERT INTO run_results (run_id, page, rows, bytes, data)
             SELECT $1, $3, $4, $5, $6
             WHERE EXISTS (SELECT 1 FROM runs WHERE id = $1 AND agent_id = $2
                           AND status IN ({from}))
             ON CONFLICT (run_id, page) DO NOTHING"
        ),
        Transition::Finish => format!(
            "UPDATE runs SET status = $3, finished_at = now(),
                 started_at = coalesce(started_at, now()), rows = $4, bytes = $5,
                 truncated = $6, pages = $7, error = $8, error_detail = $9, summary = $10,
                 result_expires_at = now() + make_interval(secs => $11::bigint)
             WHERE id = $1 AND agent_id = $2 AND status IN ({from})
               AND $3 IN ({reported})
             RETURNING kind, instance_id, coalesce(params->>'database', '')",
            reported = RunStatus::sql_list(&RunStatus::REPORTED)
        ),
        Transition::FailOpen => format!(
            "UPDATE runs SET status = 'failed', finished_at = now(), error = $3
             WHERE id = $1 AND agent_id = $2 AND status IN ({from})"
        ),
        Transition::FailLost => format!(
            "UPDATE runs SET status = 'failed', finished_at = now(),
                 error = 'the agent lost the run: it restarted or its Control stream broke \
                          before the result was delivered'
             WHERE agent_id = $1 AND status IN ({from}) AND NOT (id = ANY($2))"
        ),
        Transition::ResultOverdue => format!(
            "UPDATE runs SET status = 'failed', finished_at = now(),
                 error = format('no result from the agent within the run''s timeout (%s ms) \
                                 plus %s s', timeout_ms, $1::bigint / 1000)
             WHERE status IN ({from})
               AND coalesce(started_at, dispatched_at)
                   + make_interval(secs => (timeout_ms + $1::bigint) / 1000.0) < now()"
        ),
        // The status set is the function's (V18); the store test holds it to `outcome`.
        Transition::Expire => "SELECT lasect_expire_queued_runs()".to_owned(),
        Transition::Cancel => format!(
            "UPDATE runs SET
                 status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
                 finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,
                 error = CASE WHEN status = 'queued'
                              THEN 'cancelled before an agent picked it up' ELSE error END,
                 cancel_requested_at = coalesce(cancel_requested_at, now())
             WHERE id = $1 AND status IN ({from})"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunStatus::*;

    #[test]
    fn every_status_name_parses_back_and_nothing_else_does() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(s));
        }
        assert_eq!(
            "done".parse::<RunStatus>(),
            Err(UnknownStatus("done".to_owned()))
        );
        assert!("Queued".parse::<RunStatus>().is_err(), "names are exact");
    }

    #[test]
    fn transitions_are_listed_in_discriminant_order() {
        for (i, t) in Transition::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i, "{t:?}");
        }
    }

    /// The whole machine, written out: changing the table is a deliberate edit of this list.
    #[test]
    fn the_status_changes_are_exactly_the_lifecycle() {
        let mut edges: Vec<(RunStatus, RunStatus)> = RunStatus::ALL
            .into_iter()
            .flat_map(|a| {
                RunStatus::ALL
                    .into_iter()
                    .filter(move |b| a.can_become(*b))
                    .map(move |b| (a, b))
            })
            .collect();
        edges.sort();
        assert_eq!(
            edges,
            vec![
                (Queued, Dispatched),
                (Queued, Cancelled),
                (Queued, Expired),
                (Dispatched, Running),
                (Dispatched, Succeeded),
                (Dispatched, Failed),
                (Dispatched, TimedOut),
                (Dispatched, Cancelled),
                (Running, Succeeded),
                (Running, Failed),
                (Running, TimedOut),
                (Running, Cancelled),
            ]
        );
    }

    #[test]
    fn terminal_statuses_are_never_touched_and_nothing_returns_to_queued() {
        for t in Transition::ALL {
            for s in RunStatus::ALL {
                if s.is_terminal() {
                    assert!(t.outcome(s).is_empty(), "{t:?} touches a {s} run");
                }
                assert!(
                    !t.outcome(s).contains(&Queued),
                    "{t:?} makes a {s} run queued again"
                );
            }
        }
    }

    #[test]
    fn every_open_status_can_end() {
        for s in RunStatus::ALL.into_iter().filter(|s| !s.is_terminal()) {
            // Queued ends by expiry or cancel; dispatched and running by any reported end.
            assert!(
                RunStatus::ALL
                    .into_iter()
                    .any(|t| t.is_terminal() && s.can_become(t)),
                "{s} cannot end"
            );
        }
    }

    #[test]
    fn an_agent_reports_only_terminal_statuses_and_cannot_expire_a_run() {
        for s in RunStatus::REPORTED {
            assert!(s.is_terminal());
        }
        assert!(!RunStatus::REPORTED.contains(&Expired));
    }

    #[test]
    fn every_statement_touches_some_status_and_names_it() {
        for t in Transition::ALL {
            assert!(!t.from().is_empty(), "{t:?} can never apply");
            if t != Transition::Expire {
                let list = RunStatus::sql_list(&t.from());
                assert!(
                    t.sql().contains(&format!("status IN ({list})")),
                    "{t:?}: {}",
                    t.sql()
                );
            }
        }
        assert_eq!(Transition::Claim.from(), vec![Queued]);
        assert_eq!(Transition::Start.from(), vec![Dispatched]);
        assert_eq!(Transition::Finish.from(), vec![Dispatched, Running]);
        assert_eq!(Transition::Cancel.from(), vec![Queued, Dispatched, Running]);
    }

    /// Both clients bind by position: a statement must use exactly `$1..=$n` for its `n`
    /// documented parameters, or one side binds the wrong value (or too few).
    #[test]
    fn every_statement_uses_exactly_its_documented_parameters() {
        for t in Transition::ALL {
            let sql = t.sql();
            let mut used: Vec<usize> = Vec::new();
            let bytes = sql.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'$' {
                    let digits: String = sql[i + 1..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    if let Ok(n) = digits.parse::<usize>() {
                        used.push(n);
                    }
                    i += 1 + digits.len();
                } else {
                    i += 1;
                }
            }
            used.sort_unstable();
            used.dedup();
            let expected: Vec<usize> = (1..=t.params().len()).collect();
            assert_eq!(used, expected, "{t:?}");
        }
    }
}
