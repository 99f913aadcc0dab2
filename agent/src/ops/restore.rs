//! pgBackRest restores (docs/BACKUPS.md, "Restore" and "Restore drills"): `backup_restore`
//! restores a stanza into a directory of this host, `backup_drill` restores the latest backup
//! into a scratch directory, checks it and removes it.
//!
//! Every restore runs recovery to its end here, while the agent still holds the pgBackRest
//! config (a temporary one holds the repository's passphrase and is removed with the run): the
//! restored cluster is started as the database OS user with archiving off, a socket in a
//! private directory and no TCP listener, recovery replays WAL to the target and promotes
//! (`--target-action=promote`), and the cluster is then stopped, or left running for
//! inspection when asked. The monitored server's own data directory, a non-empty directory and
//! a running cluster are refused; `delta` restores over a stopped cluster only.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use lasect_runs::{BackupDrillParams, BackupRestoreParams, RestoreTargetType};
use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde_json::{Value, json};

use super::backup::{self, Config, Server};
use super::backup_progress::Restoring;
use super::{OpContext, OpError, OpOutcome};

/// Rows of a drill's check query kept in its summary.
const CHECK_ROWS: usize = 100;
/// Index failures of amcheck named in a drill's result.
const AMCHECK_FAILURES: usize = 20;

pub async fn restore(ctx: &mut OpContext, p: &BackupRestoreParams) -> Result<OpOutcome, OpError> {
    backup::check_stanza_name(&p.stanza)?;
    let mut target = target_args(p.target_type, p.target.as_deref(), p.target_exclusive)?;
    if let Some(set) = &p.set {
        check_label(set)?;
    }
    let to_dir = PathBuf::from(&p.to_dir);
    let tablespaces = Tablespaces::check(&p.tablespace_map, p.tablespace_map_all.as_deref())?;
    let server = backup::server(ctx).await?;
    tablespaces.covers(&server)?;
    let mut prepared = vec![prepare_dir(&to_dir, p.delta, &server)?];
    for dir in tablespaces.dirs() {
        match prepare_tablespace_dir(dir, &to_dir, p.delta, &server) {
            Ok(done) => prepared.push(done),
            Err(e) => {
                prepared.into_iter().for_each(Prepared::undo);
                return Err(e);
            }
        }
    }
    let undo = |prepared: Vec<Prepared>| prepared.into_iter().for_each(Prepared::undo);
    let config = match Config::write(ctx.run_id, &server, &p.stanza, &p.repo) {
        Ok(c) => c,
        Err(e) => {
            undo(prepared);
            return Err(e);
        }
    };
    let started_at = Instant::now();
    // The size of the backup restored is the progress's whole: the named set, else the newest
    // (pgBackRest may pick an older one for a time target; the percent then stops short of
    // 100 until the files are all there).
    let catalogue = match backup::info(ctx, &server, &config, &p.stanza).await {
        Ok(c) => c,
        Err(e) => {
            undo(prepared);
            return Err(e);
        }
    };
    let total = backup_size(&catalogue, p.set.as_deref());
    let mut watched = vec![to_dir.clone()];
    watched.extend(tablespaces.dirs().map(Path::to_path_buf));
    let mut progress = Restoring::start(ctx, watched, total).await;
    target.extend(tablespaces.args());
    let args = restore_args(&to_dir, &target, p.set.as_deref(), p.delta);
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Err(e) = backup::pgbackrest(ctx, &server, &config, &p.stanza, &arg_refs).await {
        drop(progress);
        undo(prepared);
        return Err(e);
    }
    progress.files_done().await;
    let port = match p.port {
        Some(port) => port,
        None => free_port()?,
    };
    let mut cluster = Restored::start(ctx, &server, &to_dir, port).await?;
    let reached = cluster.wait_promoted(ctx).await?;
    let restore_seconds = started_at.elapsed().as_secs_f64();
    let mut summary = json!({
        "stanza": p.stanza,
        "data_directory": to_dir,
        "target_type": p.target_type.as_str(),
        "target": p.target,
        "target_exclusive": p.target_exclusive,
        "set": p.set,
        "delta": p.delta,
        "tablespaces": tablespaces.summary(),
        "restore_seconds": restore_seconds,
        "recovered_to": reached,
    });
    if p.start {
        summary["started"] = json!({
            "port": port,
            "socket_directory": cluster.socket_dir,
            "pid": cluster.postmaster_pid(),
            "log_file": cluster.log_file(),
            "connect": format!("psql -h {} -p {port}", cluster.socket_dir.display()),
            "stop": format!("pg_ctl stop -D {} -m fast", to_dir.display()),
        });
        cluster.keep_running();
    } else {
        cluster.stop().await?;
        summary["started"] = Value::Null;
    }
    drop(config);
    progress.stage("done").await;
    Ok(OpOutcome { summary })
}

pub async fn drill(ctx: &mut OpContext, p: &BackupDrillParams) -> Result<OpOutcome, OpError> {
    backup::check_stanza_name(&p.stanza)?;
    let server = backup::server(ctx).await?;
    let config = Config::write(ctx.run_id, &server, &p.stanza, &p.repo)?;
    let catalogue = backup::info(ctx, &server, &config, &p.stanza).await?;
    let latest = catalogue["backups"]
        .as_array()
        .and_then(|all| all.last())
        .cloned()
        .ok_or_else(|| OpError::Failed {
            message: format!(
                "drill failed: stanza {:?} has no backup to restore (take one first)",
                p.stanza
            ),
            detail: json!({ "passed": false }),
        })?;
    let scratch = Scratch::create(ctx.run_id, p.scratch_dir.as_deref(), &server)?;
    let started_at = Instant::now();
    let total = latest["database_size"].as_u64();
    let mut progress = Restoring::start(ctx, vec![scratch.path.clone()], total).await;
    let tablespaces = [format!(
        "--tablespace-map-all={}",
        scratch.tablespaces.display()
    )];
    let args = restore_args(&scratch.data, &tablespaces, None, false);
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let fail = |stage: &str, message: String, extra: Value| OpError::Failed {
        message: format!("drill failed: {stage}: {message}"),
        detail: json!({ "passed": false, "stage": stage, "backup": latest["label"], "more": extra }),
    };
    if let Err(e) = backup::pgbackrest(ctx, &server, &config, &p.stanza, &arg_refs).await {
        return Err(match e {
            OpError::Failed { message, detail } => fail("restore", message, detail),
            other => other,
        });
    }
    progress.files_done().await;
    let port = free_port()?;
    let mut cluster = match Restored::start(ctx, &server, &scratch.data, port).await {
        Ok(c) => c,
        Err(OpError::Failed { message, detail }) => return Err(fail("start", message, detail)),
        Err(e) => return Err(e),
    };
    let reached = match cluster.wait_promoted(ctx).await {
        Ok(r) => r,
        Err(OpError::Failed { message, detail }) => {
            return Err(fail("recovery", message, detail));
        }
        Err(e) => return Err(e),
    };
    let rto_seconds = started_at.elapsed().as_secs_f64();
    progress.stage("checks").await;
    let client = cluster.connect(ctx).await?;
    // The data window: from the last transaction the archive could restore to now. A
    // cluster idle since its backup replays none; then the backup's end is the point.
    let rpo_seconds: Option<f64> = client
        .query_one(
            "SELECT extract(epoch FROM now() - coalesce(pg_last_xact_replay_timestamp(), \
             to_timestamp($1::float8)))::float8",
            &[&latest["stop"].as_f64().unwrap_or(0.0)],
        )
        .await
        .ok()
        .and_then(|r| r.try_get(0).ok());
    let check = match &p.check_sql {
        Some(sql) => match check_query(&client, sql).await {
            Ok(rows) => json!({ "ok": true, "rows": rows }),
            Err(message) => {
                return Err(fail(
                    "check query",
                    message,
                    json!({ "rto_seconds": rto_seconds }),
                ));
            }
        },
        None => Value::Null,
    };
    let amcheck = if p.amcheck {
        let result = amcheck(&client).await;
        if result["failures"].as_array().is_some_and(|f| !f.is_empty()) {
            return Err(fail(
                "amcheck",
                format!(
                    "bt_index_check found corrupt indexes: {}",
                    result["failures"]
                ),
                result,
            ));
        }
        result
    } else {
        Value::Null
    };
    drop(client);
    cluster.stop().await?;
    drop(config);
    progress.stage("done").await;
    Ok(OpOutcome {
        summary: json!({
            "stanza": p.stanza,
            "passed": true,
            "reason": null,
            "backup": latest["label"],
            "backup_type": latest["type"],
            "backup_stop": latest["stop"],
            "rto_seconds": rto_seconds,
            "rpo_seconds": rpo_seconds,
            "recovered_to": reached,
            "check": check,
            "amcheck": amcheck,
        }),
    })
}

/// pgBackRest's `--type`, `--target`, `--target-exclusive` and `--target-action` for a
/// target; each value checked so it cannot be read as another option or break the recovery
/// config.
fn target_args(
    kind: RestoreTargetType,
    target: Option<&str>,
    exclusive: bool,
) -> Result<Vec<String>, OpError> {
    if exclusive && matches!(kind, RestoreTargetType::Latest | RestoreTargetType::Name) {
        return Err(OpError::Params(format!(
            "target_exclusive applies to time, lsn and xid targets, not to {}",
            kind.as_str()
        )));
    }
    let value = match (kind, target) {
        (RestoreTargetType::Latest, None) => return Ok(Vec::new()),
        (RestoreTargetType::Latest, Some(_)) => {
            return Err(OpError::Params(
                "a restore to the latest point takes no target".into(),
            ));
        }
        (_, None) => {
            return Err(OpError::Params(format!(
                "a restore to a {} needs its target",
                kind.as_str()
            )));
        }
        (_, Some(v)) => v.trim(),
    };
    let ok = match kind {
        RestoreTargetType::Latest => true,
        RestoreTargetType::Time => {
            !value.is_empty()
                && value.len() <= 64
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b" :+-./".contains(&b))
                && value.as_bytes()[0].is_ascii_digit()
        }
        RestoreTargetType::Lsn => value.split_once('/').is_some_and(|(hi, lo)| {
            [hi, lo]
                .iter()
                .all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_hexdigit()))
        }),
        RestoreTargetType::Xid => value.len() <= 20 && value.parse::<u64>().is_ok(),
        RestoreTargetType::Name => {
            !value.is_empty()
                && value.len() < 64
                && !value.starts_with('-')
                && !value.contains(['\n', '\r', '\0', '\'', '"', '\\'])
        }
    };
    if !ok {
        let expected = match kind {
            RestoreTargetType::Time => "a timestamp such as 2026-12-07 10:15:00+00",
            RestoreTargetType::Lsn => "an LSN such as 0/3000060",
            RestoreTargetType::Xid => "a transaction id (digits)",
            _ => "a restore point name (up to 63 characters, no quotes)",
        };
        return Err(OpError::Params(format!(
            "target {value:?} is not {expected}"
        )));
    }
    let mut args = vec![
        format!("--type={}", kind.as_str()),
        format!("--target={value}"),
        "--target-action=promote".into(),
    ];
    if exclusive {
        args.push("--target-exclusive".into());
    }
    Ok(args)
}

/// The database size of the backup a restore starts from: `set`, else the newest.
fn backup_size(catalogue: &Value, set: Option<&str>) -> Option<u64> {
    let backups = catalogue["backups"].as_array()?;
    let chosen = match set {
        Some(label) => backups.iter().find(|b| b["label"] == label)?,
        None => backups.last()?,
    };
    chosen["database_size"].as_u64()
}

/// A restore's tablespace remapping, checked: plain names, absolute paths, each once.
struct Tablespaces {
    map: Vec<(String, PathBuf)>,
    all: Option<PathBuf>,
}

/// A tablespace name or oid as pgBackRest's `--tablespace-map` reads it (`name=path`).
fn plain_tablespace_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.contains(['=', '/'])
        && !name.chars().any(char::is_control)
}

fn plain_path(path: &str) -> bool {
    let p = Path::new(path);
    p.is_absolute()
        && p.parent().is_some()
        && !path.chars().any(char::is_control)
        && !p
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
}

impl Tablespaces {
    fn check(map: &[lasect_runs::TablespaceMap], all: Option<&str>) -> Result<Self, OpError> {
        let mut out = Tablespaces {
            map: Vec::new(),
            all: None,
        };
        for m in map {
            if !plain_tablespace_name(&m.name) {
                return Err(OpError::Params(format!(
                    "tablespace_map: {:?} is not a tablespace name or oid (1 to 63 characters,                      no `=` or `/`)",
                    m.name
                )));
            }
            if !plain_path(&m.path) {
                return Err(OpError::Params(format!(
                    "tablespace_map {}: {:?} must be an absolute path without `.` or `..`,                      below /",
                    m.name, m.path
                )));
            }
            if out.map.iter().any(|(n, _)| *n == m.name) {
                return Err(OpError::Params(format!(
                    "tablespace_map names {:?} twice",
                    m.name
                )));
            }
            let path = PathBuf::from(&m.path);
            if out.map.iter().any(|(_, p)| *p == path) {
                return Err(OpError::Params(format!(
                    "tablespace_map sends two tablespaces to {}",
                    m.path
                )));
            }
            out.map.push((m.name.clone(), path));
        }
        if let Some(all) = all {
            if !plain_path(all) {
                return Err(OpError::Params(format!(
                    "tablespace_map_all {all:?} must be an absolute path without `.` or `..`, below /"
                )));
            }
            out.all = Some(PathBuf::from(all));
        }
        Ok(out)
    }

    /// Every tablespace of the running server is mapped elsewhere: restored to its original
    /// location, a tablespace of the backup would land in the running server's (pgBackRest
    /// refuses a non-empty one, but a delta restore would overwrite it).
    fn covers(&self, server: &Server) -> Result<(), OpError> {
        if self.all.is_some() {
            return Ok(());
        }
        let unmapped: Vec<String> = server
            .tablespaces
            .iter()
            .filter(|(name, _)| !self.map.iter().any(|(n, _)| n == name))
            .map(|(name, at)| format!("{name} ({})", at.display()))
            .collect();
        if unmapped.is_empty() {
            return Ok(());
        }
        Err(OpError::Params(format!(
            "the server has tablespaces outside its data directory, which a restore would \
             write into at their original location: {}; map them elsewhere \
             (tablespace_map name=path, or tablespace_map_all)",
            unmapped.join(", ")
        )))
    }

    fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.map
            .iter()
            .map(|(_, p)| p.as_path())
            .chain(self.all.as_deref())
    }

    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = self
            .map
            .iter()
            .map(|(n, p)| format!("--tablespace-map={n}={}", p.display()))
            .collect();
        if let Some(all) = &self.all {
            args.push(format!("--tablespace-map-all={}", all.display()));
        }
        args
    }

    fn summary(&self) -> Value {
        json!({
            "map": self.map.iter().map(|(n, p)| json!({"name": n, "path": p})).collect::<Vec<_>>(),
            "map_all": self.all,
        })
    }
}

/// [`lasect_runs::is_backup_label`], as the run's parameter error.
fn check_label(label: &str) -> Result<(), OpError> {
    let ok = lasect_runs::is_backup_label(label);
    if ok {
        Ok(())
    } else {
        Err(OpError::Params(format!(
            "set {label:?} is not a backup label such as 20261207-083000F"
        )))
    }
}

fn restore_args(to_dir: &Path, target: &[String], set: Option<&str>, delta: bool) -> Vec<String> {
    let mut args = vec![
        "restore".to_owned(),
        format!("--pg1-path={}", to_dir.display()),
        // A restored copy must never push its WAL into the stanza's archive.
        "--archive-mode=off".to_owned(),
    ];
    args.extend(target.iter().cloned());
    if let Some(set) = set {
        args.push(format!("--set={set}"));
    }
    if delta {
        args.push("--delta".to_owned());
    }
    args
}

/// What [`prepare_dir`] made, to take back when the restore fails.
struct Prepared {
    created: Option<PathBuf>,
}

impl Prepared {
    fn undo(self) {
        if let Some(dir) = self.created
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a failed restore's directory");
        }
    }
}

/// Checks the directory a restore writes: absolute and plain, never the monitored server's
/// data directory, absent or empty (then created or used as is), or with `delta` a stopped
/// cluster's data directory.
fn prepare_dir(dir: &Path, delta: bool, server: &Server) -> Result<Prepared, OpError> {
    let refuse = |why: String| OpError::Params(format!("to_dir {}: {why}", dir.display()));
    if !dir.is_absolute()
        || dir
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        || dir.parent().is_none()
    {
        return Err(refuse(
            "must be an absolute path without `.` or `..`, below /".into(),
        ));
    }
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if same(dir, &server.data_directory) {
        return Err(refuse(
            "is the data directory of the running server this instance monitors".into(),
        ));
    }
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_for_owner(dir, server, refuse),
        Err(e) => Err(refuse(format!("cannot be read ({e})"))),
        Ok(mut entries) => {
            if entries.next().is_none() {
                return Ok(Prepared { created: None });
            }
            if !delta {
                return Err(refuse(
                    "exists and is not empty: restore into a new or empty directory, or over \
                     a stopped cluster with delta"
                        .into(),
                ));
            }
            if !dir.join("PG_VERSION").is_file() {
                return Err(refuse(
                    "is not empty and holds no PostgreSQL cluster (no PG_VERSION): delta \
                     restores only over a stopped cluster"
                        .into(),
                ));
            }
            if let Some(pid) = running_postmaster(dir) {
                return Err(refuse(format!(
                    "a server is running on it (postmaster pid {pid}): stop it before a delta \
                     restore"
                )));
            }
            Ok(Prepared { created: None })
        }
    }
}

/// Checks a directory a tablespace is restored to: never inside the restored data directory
/// or the monitored server's, absent or empty (created for the database user), or anything
/// with `delta` (pgBackRest's delta then restores over what is there).
fn prepare_tablespace_dir(
    dir: &Path,
    to_dir: &Path,
    delta: bool,
    server: &Server,
) -> Result<Prepared, OpError> {
    let refuse =
        |why: String| OpError::Params(format!("tablespace directory {}: {why}", dir.display()));
    let inside = |outer: &Path| {
        let outer = outer.canonicalize().unwrap_or_else(|_| outer.to_path_buf());
        let parent = dir.parent().and_then(|p| p.canonicalize().ok());
        dir.starts_with(&outer) || parent.is_some_and(|p| p.starts_with(&outer))
    };
    if inside(to_dir) {
        return Err(refuse(format!(
            "is inside the restored data directory {}",
            to_dir.display()
        )));
    }
    if inside(&server.data_directory) {
        return Err(refuse(
            "is inside the data directory of the running server this instance monitors".into(),
        ));
    }
    if let Some((name, _)) = server.tablespaces.iter().find(|(_, at)| inside(at)) {
        return Err(refuse(format!(
            "is inside tablespace {name} of the running server this instance monitors"
        )));
    }
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_for_owner(dir, server, refuse),
        Err(e) => Err(refuse(format!("cannot be read ({e})"))),
        Ok(mut entries) => {
            if entries.next().is_some() && !delta {
                return Err(refuse(
                    "exists and is not empty: map the tablespace to a new or empty directory \
                     (its original one may be the running server's)"
                        .into(),
                ));
            }
            Ok(Prepared { created: None })
        }
    }
}

/// Creates `dir` (its parent must exist) 0700 for the database user.
fn create_for_owner(
    dir: &Path,
    server: &Server,
    refuse: impl Fn(String) -> OpError,
) -> Result<Prepared, OpError> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    if !parent.is_dir() {
        return Err(refuse(format!(
            "its parent {} does not exist",
            parent.display()
        )));
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| refuse(format!("cannot be created ({e})")))?;
    let owner = &server.owner;
    let created = Prepared {
        created: Some(dir.to_path_buf()),
    };
    if let Err(e) =
        std::os::unix::fs::chown(dir, Some(owner.uid.as_raw()), Some(owner.gid.as_raw()))
    {
        created.undo();
        return Err(refuse(format!(
            "cannot be given to the database user ({e})"
        )));
    }
    Ok(created)
}

/// The pid of a live postmaster of `dir` (its postmaster.pid names a running process).
fn running_postmaster(dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(dir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    // Signal 0 only asks whether the process exists (EPERM: it does, as another user).
    match kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => Some(pid),
        Err(_) => None,
    }
}

fn free_port() -> Result<u16, OpError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| OpError::Failed {
            message: format!("cannot find a free port for the restored cluster: {e}"),
            detail: Value::Null,
        })
}

/// A drill's scratch directory, removed on drop (on failure too): the restored data
/// directory in `data`, every tablespace of the backup below `tablespaces` (never at its
/// original location, which may be the running server's).
struct Scratch {
    path: PathBuf,
    data: PathBuf,
    tablespaces: PathBuf,
}

impl Scratch {
    fn create(run_id: i64, base: Option<&str>, server: &Server) -> Result<Self, OpError> {
        let base = base.map_or_else(std::env::temp_dir, PathBuf::from);
        if !base.is_absolute() || !base.is_dir() {
            return Err(OpError::Params(format!(
                "scratch_dir {} must be an existing absolute directory",
                base.display()
            )));
        }
        let path = base.join(format!(
            "lasect-drill-{run_id}-{:08x}",
            rand::random::<u32>()
        ));
        let shown = path.display().to_string();
        let fail = |e: std::io::Error| OpError::Failed {
            message: format!("cannot make the scratch directory {shown}: {e}"),
            detail: Value::Null,
        };
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(fail)?;
        let scratch = Scratch {
            data: path.join("data"),
            tablespaces: path.join("tablespaces"),
            path,
        };
        let owner = &server.owner;
        for dir in [&scratch.path, &scratch.data, &scratch.tablespaces] {
            if dir != &scratch.path {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(dir)
                    .map_err(fail)?;
            }
            std::os::unix::fs::chown(dir, Some(owner.uid.as_raw()), Some(owner.gid.as_raw()))
                .map_err(fail)?;
        }
        Ok(scratch)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(pid) = running_postmaster(&self.data) {
            // A drill that failed half-way may leave its server up: it goes with its files.
            let _ = kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGQUIT);
            for _ in 0..100 {
                if running_postmaster(&self.data).is_none() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(dir = %self.path.display(), error = %e, "cannot remove a drill's scratch directory");
        }
    }
}

/// A restored cluster started by this run: stopped (immediately) on drop unless kept.
struct Restored {
    data_dir: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    /// `[control.pgbackrest] run_as`, resolved: how `pg_ctl` runs as the database user.
    run_as: Vec<String>,
    pg_ctl: PathBuf,
    keep: bool,
}

impl Restored {
    async fn start(
        ctx: &OpContext,
        server: &Server,
        data_dir: &Path,
        port: u16,
    ) -> Result<Self, OpError> {
        let socket_dir = std::env::temp_dir().join(format!(
            "lasect-restore-{}-{:08x}",
            ctx.run_id,
            rand::random::<u32>()
        ));
        let fail = |what: String| OpError::Failed {
            message: what,
            detail: Value::Null,
        };
        // The database user's socket; its group (the agent's, when it is not root) may connect.
        std::fs::DirBuilder::new()
            .mode(0o770)
            .create(&socket_dir)
            .map_err(|e| fail(format!("cannot create {}: {e}", socket_dir.display())))?;
        std::os::unix::fs::chown(
            &socket_dir,
            Some(server.owner.uid.as_raw()),
            Some(server.owner.gid.as_raw()),
        )
        .map_err(|e| {
            fail(format!(
                "cannot give {} to the database user: {e}",
                socket_dir.display()
            ))
        })?;
        let cluster = Restored {
            data_dir: data_dir.to_path_buf(),
            socket_dir,
            port,
            run_as: server.run_as.clone(),
            pg_ctl: bindir(server).join("pg_ctl"),
            keep: false,
        };
        // No JIT: the packaged agent's unit denies writable executable memory
        // (MemoryDenyWriteExecute), and the server started here inherits that.
        let options = format!(
            "-c port={port} -c listen_addresses='' -c unix_socket_directories='{}' \
             -c archive_mode=off -c hot_standby=on -c jit=off",
            cluster.socket_dir.display()
        );
        let wait_secs = ctx.limits.timeout.as_secs().max(60).to_string();
        let mut command = cluster.pg_ctl();
        command
            .args(["start", "-w", "-t", &wait_secs, "-D"])
            .arg(data_dir)
            .arg("-l")
            .arg(cluster.log_file())
            .args(["-o", &options]);
        let out = run(command).await?;
        if !out.status.success() {
            return Err(OpError::Failed {
                message: format!("the restored cluster did not start: {}", cluster.log_tail()),
                detail: json!({ "pg_ctl": backup::truncate(&out.text) }),
            });
        }
        Ok(cluster)
    }

    fn pg_ctl(&self) -> tokio::process::Command {
        let program = &self.pg_ctl;
        let mut c = match self.run_as.split_first() {
            Some((first, rest)) => {
                let mut c = tokio::process::Command::new(first);
                c.args(rest).arg(program);
                c
            }
            None => tokio::process::Command::new(program),
        };
        c.current_dir("/").stdin(Stdio::null());
        c
    }

    fn log_file(&self) -> PathBuf {
        self.data_dir.join("lasect-restore.log")
    }

    /// The server's last lines: why it stopped (e.g. "recovery ended before configured
    /// recovery target was reached").
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let marked: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("FATAL") || l.contains("PANIC") || l.contains("ERROR"))
            .collect();
        let chosen = if marked.is_empty() {
            text.lines().collect()
        } else {
            marked
        };
        backup::truncate(&backup::last_lines(chosen, 5).join(" | "))
    }

    fn postmaster_pid(&self) -> Option<i32> {
        running_postmaster(&self.data_dir)
    }

    async fn connect(&self, ctx: &OpContext) -> Result<tokio_postgres::Client, OpError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(self.port)
            .application_name(format!("lasect run {}", ctx.run_id));
        if let Some(user) = ctx.pg.get_user() {
            config.user(user);
        }
        if let Some(password) = ctx.pg.get_password() {
            config.password(password);
        }
        if let Some(db) = ctx.pg.get_dbname() {
            config.dbname(db);
        }
        let (client, connection) =
            config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| OpError::Failed {
                    message: format!(
                        "cannot connect to the restored cluster on {} port {}: {}",
                        self.socket_dir.display(),
                        self.port,
                        super::pg_error_line(&e)
                    ),
                    detail: Value::Null,
                })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Waits until recovery has reached its target and the cluster is promoted; where it
    /// got to (LSN, last transaction replayed, timeline).
    async fn wait_promoted(&mut self, ctx: &OpContext) -> Result<Value, OpError> {
        let deadline = Instant::now() + ctx.limits.timeout;
        loop {
            if *ctx.cancel.borrow() {
                return Err(OpError::Refused(
                    "cancelled on request; the restored cluster was stopped".into(),
                ));
            }
            if self.postmaster_pid().is_none() {
                return Err(OpError::Failed {
                    message: format!(
                        "the restored cluster stopped during recovery: {}",
                        self.log_tail()
                    ),
                    detail: Value::Null,
                });
            }
            if let Ok(client) = self.connect(ctx).await
                && let Ok(row) = client
                    .query_one(
                        "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, \
                         pg_last_xact_replay_timestamp()::text, \
                         (SELECT timeline_id FROM pg_control_checkpoint())",
                        &[],
                    )
                    .await
                && !row.get::<_, bool>(0)
            {
                return Ok(json!({
                    "lsn": row.get::<_, Option<String>>(1),
                    "last_transaction": row.get::<_, Option<String>>(2),
                    "timeline": row.get::<_, Option<i32>>(3),
                }));
            }
            if Instant::now() > deadline {
                return Err(OpError::Failed {
                    message: format!(
                        "recovery did not end within the run's timeout of {:?}: {}",
                        ctx.limits.timeout,
                        self.log_tail()
                    ),
                    detail: Value::Null,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn stop(&mut self) -> Result<(), OpError> {
        let mut command = self.pg_ctl();
        command
            .args(["stop", "-w", "-m", "fast", "-D"])
            .arg(&self.data_dir);
        let out = run(command).await?;
        self.keep = true;
        if !out.status.success() && self.postmaster_pid().is_some() {
            return Err(OpError::Failed {
                message: format!("cannot stop the restored cluster: {}", out.text.trim()),
                detail: Value::Null,
            });
        }
        let _ = std::fs::remove_dir_all(&self.socket_dir);
        Ok(())
    }

    fn keep_running(&mut self) {
        self.keep = true;
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        // A failed or cancelled restore: the half-recovered server goes down at once.
        if let Some(pid) = self.postmaster_pid() {
            let _ = kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGQUIT);
        }
        let _ = std::fs::remove_dir_all(&self.socket_dir);
    }
}

/// Where `pg_ctl` is: the server's BINDIR when the role could read it, else the directory of
/// the running postmaster's program, else `PATH`.
fn bindir(server: &Server) -> PathBuf {
    if let Some(dir) = &server.bindir
        && dir.join("pg_ctl").is_file()
    {
        return dir.clone();
    }
    if let Some(pid) = running_postmaster(&server.data_directory)
        && let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe"))
        && let Some(dir) = exe.parent()
        && dir.join("pg_ctl").is_file()
    {
        return dir.to_path_buf();
    }
    PathBuf::new()
}

struct Output {
    status: std::process::ExitStatus,
    text: String,
}

async fn run(mut command: tokio::process::Command) -> Result<Output, OpError> {
    let out = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|e| OpError::Failed {
            message: format!("cannot run pg_ctl ({e}): is PostgreSQL installed on this host?"),
            detail: Value::Null,
        })?;
    Ok(Output {
        status: out.status,
        text: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}

/// The drill's check query in a read-only transaction; its first rows as JSON.
async fn check_query(client: &tokio_postgres::Client, sql: &str) -> Result<Value, String> {
    let sql = sql.trim().trim_end_matches(';');
    let wrapped = format!(
        "SELECT coalesce(json_agg(q), '[]')::text FROM (SELECT * FROM ({sql}) AS check_query \
         LIMIT {CHECK_ROWS}) AS q"
    );
    client
        .batch_execute("BEGIN READ ONLY")
        .await
        .map_err(|e| super::pg_error_line(&e))?;
    let result = client.query_one(&wrapped, &[]).await;
    let _ = client.batch_execute("ROLLBACK").await;
    let text: String = result
        .map_err(|e| super::pg_error_line(&e))?
        .try_get(0)
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

/// `bt_index_check` on every valid B-tree index of the database, when amcheck is available
/// (the scratch copy is promoted, so the extension can be created in it).
async fn amcheck(client: &tokio_postgres::Client) -> Value {
    let available = client
        .query_opt(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'amcheck'",
            &[],
        )
        .await
        .ok()
        .flatten()
        .is_some();
    if !available {
        return json!({ "ran": false, "reason": "amcheck is not installed on this host" });
    }
    if let Err(e) = client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        .await
    {
        return json!({ "ran": false, "reason": super::pg_error_line(&e) });
    }
    let indexes = match client
        .query(
            "SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_am am ON am.oid = c.relam \
             WHERE am.amname = 'btree' AND i.indisvalid AND i.indisready \
               AND c.relpersistence <> 't' ORDER BY c.oid",
            &[],
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => return json!({ "ran": false, "reason": super::pg_error_line(&e) }),
    };
    let mut failures = Vec::new();
    for row in &indexes {
        let name: String = row.get(0);
        if let Err(e) = client
            .query_one("SELECT bt_index_check($1::text::regclass)", &[&name])
            .await
            && failures.len() < AMCHECK_FAILURES
        {
            failures.push(json!({ "index": name, "error": super::pg_error_line(&e) }));
        }
    }
    json!({ "ran": true, "indexes": indexes.len(), "failures": failures })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_become_pgbackrest_options_and_bad_ones_are_refused() {
        assert!(
            target_args(RestoreTargetType::Latest, None, false)
                .expect("latest")
                .is_empty()
        );
        assert_eq!(
            target_args(
                RestoreTargetType::Time,
                Some("2026-12-07 10:15:00.123+00"),
                false
            )
            .expect("time"),
            [
                "--type=time",
                "--target=2026-12-07 10:15:00.123+00",
                "--target-action=promote"
            ]
        );
        assert!(target_args(RestoreTargetType::Lsn, Some("0/3000060"), false).is_ok());
        assert!(target_args(RestoreTargetType::Xid, Some("7421"), false).is_ok());
        assert!(target_args(RestoreTargetType::Name, Some("before upgrade"), false).is_ok());
        for (kind, bad) in [
            (RestoreTargetType::Time, Some("--delta")),
            (RestoreTargetType::Time, None),
            (RestoreTargetType::Lsn, Some("0/xyz")),
            (RestoreTargetType::Lsn, Some("3000060")),
            (RestoreTargetType::Xid, Some("-1")),
            (RestoreTargetType::Name, Some("a'b")),
            (RestoreTargetType::Name, Some("line\nbreak")),
            (RestoreTargetType::Latest, Some("0/1")),
        ] {
            assert!(
                matches!(target_args(kind, bad, false), Err(OpError::Params(_))),
                "{kind:?} {bad:?}"
            );
        }
    }

    #[test]
    fn an_exclusive_target_stops_before_it_and_only_time_lsn_and_xid_can_be() {
        assert_eq!(
            target_args(RestoreTargetType::Xid, Some("7421"), true).expect("xid"),
            [
                "--type=xid",
                "--target=7421",
                "--target-action=promote",
                "--target-exclusive"
            ]
        );
        assert!(target_args(RestoreTargetType::Lsn, Some("0/3000060"), true).is_ok());
        for kind in [RestoreTargetType::Latest, RestoreTargetType::Name] {
            let target = (kind == RestoreTargetType::Name).then_some("point");
            assert!(
                matches!(target_args(kind, target, true), Err(OpError::Params(m)) if m.contains("target_exclusive")),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn tablespace_maps_become_pgbackrest_options_and_bad_ones_are_refused() {
        let map = |name: &str, path: &str| lasect_runs::TablespaceMap {
            name: name.into(),
            path: path.into(),
        };
        let t = Tablespaces::check(&[map("archive", "/srv/ts/archive")], Some("/srv/ts/rest"))
            .expect("a map");
        assert_eq!(
            t.args(),
            [
                "--tablespace-map=archive=/srv/ts/archive",
                "--tablespace-map-all=/srv/ts/rest"
            ]
        );
        assert_eq!(t.dirs().count(), 2);
        for (bad, all, needle) in [
            (vec![map("archive", "relative")], None, "absolute"),
            (vec![map("archive", "/srv/../etc")], None, "absolute"),
            (vec![map("a=b", "/srv/x")], None, "tablespace name"),
            (vec![map("-x", "/srv/x")], None, "tablespace name"),
            (vec![map("", "/srv/x")], None, "tablespace name"),
            (vec![map("a", "/srv/x\n")], None, "absolute"),
            (vec![map("a", "/srv/x"), map("a", "/srv/y")], None, "twice"),
            (
                vec![map("a", "/srv/x"), map("b", "/srv/x")],
                None,
                "two tablespaces",
            ),
            (vec![], Some("srv"), "tablespace_map_all"),
            (vec![], Some("/"), "tablespace_map_all"),
        ] {
            match Tablespaces::check(&bad, all) {
                Err(OpError::Params(m)) => assert!(m.contains(needle), "{m}"),
                _ => panic!("{bad:?} {all:?} accepted"),
            }
        }
    }

    #[test]
    fn the_running_servers_tablespaces_must_all_be_mapped() {
        let mut s = server(Path::new("/srv/live"));
        let none = Tablespaces::check(&[], None).expect("no map");
        assert!(none.covers(&s).is_ok(), "no tablespace, nothing to map");
        s.tablespaces = vec![
            ("archive".into(), "/srv/ts-archive".into()),
            ("fast".into(), "/srv/ts-fast".into()),
        ];
        let Err(OpError::Params(m)) = none.covers(&s) else {
            panic!("unmapped tablespaces accepted");
        };
        assert!(
            m.contains("archive (/srv/ts-archive), fast (/srv/ts-fast)"),
            "{m}"
        );
        let one = Tablespaces::check(
            &[lasect_runs::TablespaceMap {
                name: "archive".into(),
                path: "/srv/r-archive".into(),
            }],
            None,
        )
        .expect("map");
        let Err(OpError::Params(m)) = one.covers(&s) else {
            panic!("an unmapped tablespace accepted");
        };
        assert!(m.contains("fast") && !m.contains("archive ("), "{m}");
        let all = Tablespaces::check(&[], Some("/srv/r-ts")).expect("all");
        assert!(all.covers(&s).is_ok());
    }

    #[test]
    fn a_tablespace_directory_must_be_new_or_empty_and_outside_the_data_directories() {
        let root = tempfile::tempdir().expect("tempdir");
        let live = root.path().join("live");
        std::fs::create_dir(&live).expect("live");
        let s = server(&live);
        let to_dir = root.path().join("restored");
        let message = |r: Result<Prepared, OpError>| match r {
            Err(OpError::Params(m)) => m,
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted"),
        };
        assert!(
            message(prepare_tablespace_dir(&live.join("ts"), &to_dir, false, &s))
                .contains("running server")
        );
        assert!(
            message(prepare_tablespace_dir(
                &to_dir.join("ts"),
                &to_dir,
                false,
                &s
            ))
            .contains("restored data directory")
        );
        let mut with_ts = server(&live);
        with_ts.tablespaces = vec![("archive".into(), root.path().join("ts-live"))];
        assert!(
            message(prepare_tablespace_dir(
                &root.path().join("ts-live/sub"),
                &to_dir,
                true,
                &with_ts
            ))
            .contains("tablespace archive")
        );
        let used = root.path().join("used");
        std::fs::create_dir(&used).expect("used");
        std::fs::write(used.join("PG_16_202307071"), "x").expect("file");
        assert!(message(prepare_tablespace_dir(&used, &to_dir, false, &s)).contains("not empty"));
        assert!(
            prepare_tablespace_dir(&used, &to_dir, true, &s).is_ok(),
            "delta restores over it"
        );
        assert!(
            message(prepare_tablespace_dir(
                &root.path().join("no/such"),
                &to_dir,
                false,
                &s
            ))
            .contains("parent")
        );
        let fresh = root.path().join("fresh-ts");
        let made = prepare_tablespace_dir(&fresh, &to_dir, false, &s).expect("a new directory");
        assert!(fresh.is_dir());
        made.undo();
        assert!(!fresh.exists());
    }

    #[test]
    fn the_progress_whole_is_the_named_backup_or_the_newest() {
        let catalogue = json!({"backups": [
            {"label": "20261207-083000F", "database_size": 100},
            {"label": "20261207-083000F_20261207-093000I", "database_size": 120},
        ]});
        assert_eq!(backup_size(&catalogue, None), Some(120));
        assert_eq!(backup_size(&catalogue, Some("20261207-083000F")), Some(100));
        assert_eq!(backup_size(&catalogue, Some("20261208-083000F")), None);
        assert_eq!(backup_size(&json!({"backups": []}), None), None);
    }

    #[test]
    fn backup_labels_are_pgbackrests() {
        assert!(check_label("20261207-083000F").is_ok());
        assert!(check_label("20261207-083000F_20261207-093000I").is_ok());
        for bad in [
            "latest",
            "20261207-083000X",
            "--delta",
            "20261207-083000F_x",
        ] {
            assert!(check_label(bad).is_err(), "{bad}");
        }
    }

    fn server(data: &Path) -> Server {
        Server {
            data_directory: data.to_path_buf(),
            port: 5432,
            socket: None,
            archive_mode: "on".into(),
            archive_command: String::new(),
            owner: nix::unistd::User::from_uid(nix::unistd::Uid::effective())
                .ok()
                .flatten()
                .expect("this user"),
            bindir: None,
            pgbackrest: "pgbackrest".into(),
            run_as: Vec::new(),
            tablespaces: Vec::new(),
        }
    }

    #[test]
    fn a_restore_refuses_the_live_data_directory_a_full_directory_and_a_running_cluster() {
        let root = tempfile::tempdir().expect("tempdir");
        let live = root.path().join("live");
        std::fs::create_dir(&live).expect("live");
        let s = server(&live);
        let message = |r: Result<Prepared, OpError>| match r {
            Err(OpError::Params(m)) => m,
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted"),
        };
        assert!(message(prepare_dir(&live, true, &s)).contains("running server"));
        assert!(message(prepare_dir(Path::new("relative"), false, &s)).contains("absolute"));
        assert!(message(prepare_dir(&root.path().join("a/../b"), false, &s)).contains("absolute"));
        let full = root.path().join("full");
        std::fs::create_dir(&full).expect("full");
        std::fs::write(full.join("file"), "x").expect("file");
        assert!(message(prepare_dir(&full, false, &s)).contains("not empty"));
        assert!(message(prepare_dir(&full, true, &s)).contains("PG_VERSION"));
        std::fs::write(full.join("PG_VERSION"), "15\n").expect("PG_VERSION");
        // This very process stands in for a running postmaster.
        std::fs::write(
            full.join("postmaster.pid"),
            format!("{}\n", std::process::id()),
        )
        .expect("pid");
        assert!(message(prepare_dir(&full, true, &s)).contains("is running"));
        std::fs::remove_file(full.join("postmaster.pid")).expect("rm pid");
        assert!(
            prepare_dir(&full, true, &s).is_ok(),
            "a stopped cluster with delta"
        );
        let fresh = root.path().join("fresh");
        let prepared = prepare_dir(&fresh, false, &s).expect("a new directory");
        assert!(fresh.is_dir());
        prepared.undo();
        assert!(
            !fresh.exists(),
            "a failed restore takes its new directory back"
        );
    }
}
