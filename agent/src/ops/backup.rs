//! pgBackRest runs (docs/BACKUPS.md): `backup_stanza` (stanza-create, stanza-upgrade, check),
//! `backup` (full, diff, incr) and `backup_info` (the catalogue).
//!
//! pgBackRest must run as the database's OS user: it reads the data directory and writes the
//! repository with that user's permissions. The agent finds that user as the owner of the
//! server's `data_directory`. Running as root (tests, containers), it starts pgBackRest through
//! `runuser -u <owner>`; running as its own service user it starts pgBackRest directly, which
//! works when that user is the database's (or is allowed to be: packaging/README.md,
//! "pgBackRest").
//!
//! The pgBackRest config is written by the agent from the run's parameters, 0600 and owned by
//! the database OS user, in a private directory removed when the command ends; a repository
//! with a `config_path` gets that file written and kept instead, since the server's
//! `archive_command` must find it between runs. Secrets (the cipher passphrase, an object
//! store's key) are not written into a temporary config: pgBackRest gets them in its
//! environment (`PGBACKREST_REPO1_CIPHER_PASS`, `…_S3_KEY_SECRET`, `…_AZURE_KEY`, `…_GCS_KEY`),
//! and a GCS service key in a file of the private directory; a persistent config holds them,
//! since archive-push needs them too.

use std::fmt::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use lasect_runs::{BackupInfoParams, BackupParams, BackupRepo, BackupStanzaParams, StanzaAction};
use nix::sys::signal::{Signal, kill};
use nix::sys::statvfs::statvfs;
use nix::unistd::{Pid, Uid, User};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use super::{OpContext, OpError, OpOutcome};

/// util-linux's setpriv (Debian: always installed), for `--pdeathsig`.
const SETPRIV: &str = "/usr/bin/setpriv";
/// Most of pgBackRest's output kept for an error message.
const MAX_OUTPUT: usize = 64 * 1024;

/// What pgBackRest needs from the server: read once per run through the run's session.
pub(super) struct Server {
    pub(super) data_directory: PathBuf,
    pub(super) port: i32,
    pub(super) socket: Option<String>,
    pub(super) archive_mode: String,
    pub(super) archive_command: String,
    pub(super) owner: User,
    /// The server's programs (`pg_config`'s BINDIR) when the role may read them; restores
    /// start `pg_ctl` from there.
    pub(super) bindir: Option<PathBuf>,
    /// `[control.pgbackrest]` command: the pgBackRest executable.
    pub(super) pgbackrest: String,
    /// How a program runs as `owner` (`[control.pgbackrest] run_as`, resolved).
    pub(super) run_as: Vec<String>,
    /// The server's tablespaces outside its data directory (name, location): a restore must
    /// not write into them.
    pub(super) tablespaces: Vec<(String, PathBuf)>,
}

pub async fn stanza(ctx: &mut OpContext, p: &BackupStanzaParams) -> Result<OpOutcome, OpError> {
    check_stanza_name(&p.stanza)?;
    let server = server(ctx).await?;
    if p.action == StanzaAction::Check {
        archive_problems(&server, &p.stanza)?;
    }
    let config = Config::write(ctx.run_id, &server, &p.stanza, &p.repo)?;
    let command = match p.action {
        StanzaAction::Create => "stanza-create",
        StanzaAction::Upgrade => "stanza-upgrade",
        StanzaAction::Check => "check",
    };
    let output = pgbackrest(ctx, &server, &config, &p.stanza, &[command])
        .await
        .map_err(|e| full_repository(e, &p.repo))?;
    Ok(OpOutcome {
        summary: json!({
            "stanza": p.stanza,
            "action": p.action.as_str(),
            "output": output,
        }),
    })
}

pub async fn backup(ctx: &mut OpContext, p: &BackupParams) -> Result<OpOutcome, OpError> {
    check_stanza_name(&p.stanza)?;
    let server = server(ctx).await?;
    let config = Config::write(ctx.run_id, &server, &p.stanza, &p.repo)?;
    let kind = format!("--type={}", p.backup_type.as_str());
    let watching = super::backup_progress::watch(ctx, &server, &config, &p.stanza);
    let done = pgbackrest(ctx, &server, &config, &p.stanza, &["backup", &kind]).await;
    drop(watching);
    done.map_err(|e| full_repository(e, &p.repo))?;
    let info = info(ctx, &server, &config, &p.stanza).await?;
    // The backup just taken is the catalogue's newest of its type.
    let latest = info["backups"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .rev()
                .find(|b| b["type"] == p.backup_type.as_str())
        })
        .cloned()
        .unwrap_or(Value::Null);
    Ok(OpOutcome {
        summary: json!({
            "stanza": p.stanza,
            "type": p.backup_type.as_str(),
            "backup": latest,
            // The API refreshes its stored catalogue from it (retention may have expired some).
            "catalogue": info,
        }),
    })
}

pub async fn catalogue(ctx: &mut OpContext, p: &BackupInfoParams) -> Result<OpOutcome, OpError> {
    check_stanza_name(&p.stanza)?;
    let server = server(ctx).await?;
    let config = Config::write(ctx.run_id, &server, &p.stanza, &p.repo)?;
    let summary = info(ctx, &server, &config, &p.stanza).await?;
    Ok(OpOutcome { summary })
}

/// `pgbackrest info --output=json` of one stanza, reduced to what the catalogue shows.
pub(super) async fn info(
    ctx: &mut OpContext,
    server: &Server,
    config: &Config,
    stanza: &str,
) -> Result<Value, OpError> {
    let out = pgbackrest(ctx, server, config, stanza, &["info", "--output=json"]).await?;
    let parsed: Value = serde_json::from_str(&out).map_err(|e| OpError::Failed {
        message: format!("pgBackRest's info is not the JSON it should be: {e}"),
        detail: json!({ "output": truncate(&out) }),
    })?;
    let mut reduced = reduce_info(&parsed, stanza);
    // The document itself too: the API stores the catalogue from it (typed, checked there).
    reduced["pgbackrest"] = parsed;
    Ok(reduced)
}

/// The catalogue of `stanza` from pgBackRest's info document.
fn reduce_info(info: &Value, stanza: &str) -> Value {
    let Some(entry) = info
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == stanza))
    else {
        return json!({ "stanza": stanza, "status": null, "backups": [], "archive": [] });
    };
    let backups: Vec<Value> = entry["backup"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|b| {
                    json!({
                        "label": b["label"],
                        "type": b["type"],
                        "prior": b["prior"],
                        "start": b["timestamp"]["start"],
                        "stop": b["timestamp"]["stop"],
                        "database_size": b["info"]["size"],
                        "delta_size": b["info"]["delta"],
                        "repo_size": b["info"]["repository"]["size"],
                        "repo_delta_size": b["info"]["repository"]["delta"],
                        "wal_start": b["archive"]["start"],
                        "wal_stop": b["archive"]["stop"],
                        "lsn_start": b["lsn"]["start"],
                        "lsn_stop": b["lsn"]["stop"],
                        "error": b["error"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let archive: Vec<Value> = entry["archive"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|a| json!({ "id": a["id"], "min": a["min"], "max": a["max"] }))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "stanza": stanza,
        "status": entry["status"],
        "backups": backups,
        "archive": archive,
    })
}

/// A stanza name is a config section header and a command-line value: plain characters only.
pub(super) fn check_stanza_name(stanza: &str) -> Result<(), OpError> {
    let plain = !stanza.is_empty()
        && stanza.len() <= 64
        && stanza
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && !stanza.starts_with(['.', '-', '_']);
    if plain {
        Ok(())
    } else {
        Err(OpError::Params(format!(
            "stanza {stanza:?} must be 1 to 64 letters, digits, `_`, `.` or `-`, starting with a letter or digit"
        )))
    }
}

pub(super) async fn server(ctx: &mut OpContext) -> Result<Server, OpError> {
    let client = ctx.connect(None).await?;
    let row = client
        .query_one(
            "SELECT current_setting('data_directory'), current_setting('port')::int,
                    current_setting('unix_socket_directories'),
                    current_setting('archive_mode'), current_setting('archive_command')",
            &[],
        )
        .await
        .map_err(|e| OpError::Failed {
            message: format!(
                "cannot read the server's data directory and archive settings ({}): the \
                 instance's role needs pg_read_all_settings (or superuser) for backups",
                super::pg_error_line(&e)
            ),
            detail: super::pg_error_detail(&e),
        })?;
    // pg_config is for superusers and pg_read_all_settings (PG 15+): a role without it
    // leaves the restore to find the programs elsewhere.
    let bindir = client
        .query_opt("SELECT setting FROM pg_config WHERE name = 'BINDIR'", &[])
        .await
        .ok()
        .flatten()
        .and_then(|r| r.try_get::<_, String>(0).ok())
        .map(PathBuf::from);
    let tablespaces = client
        .query(
            "SELECT spcname::text, pg_tablespace_location(oid) FROM pg_tablespace \
             WHERE pg_tablespace_location(oid) <> '' ORDER BY spcname",
            &[],
        )
        .await
        .map_err(|e| OpError::Failed {
            message: format!(
                "cannot read the server's tablespaces: {}",
                super::pg_error_line(&e)
            ),
            detail: super::pg_error_detail(&e),
        })?
        .iter()
        .map(|r| (r.get::<_, String>(0), PathBuf::from(r.get::<_, String>(1))))
        .collect();
    let data_directory = PathBuf::from(row.get::<_, String>(0));
    let sockets: String = row.get(2);
    let agent = Uid::effective();
    let meta = std::fs::metadata(&data_directory).map_err(|e| OpError::Failed {
        message: if e.kind() == std::io::ErrorKind::PermissionDenied && !agent.is_root() {
            format!(
                "the agent runs as {}, which may not look into {} ({e}): pgBackRest must run \
                 as the owner of the data directory. {AS_DATABASE_USER}",
                user_name(agent),
                data_directory.display()
            )
        } else {
            format!(
                "the data directory {} is not on this agent's host or not readable here ({e}): \
                 pgBackRest runs on the database host, next to the server",
                data_directory.display()
            )
        },
        detail: Value::Null,
    })?;
    let owner = User::from_uid(Uid::from_raw(meta.uid()))
        .ok()
        .flatten()
        .ok_or_else(|| OpError::Failed {
            message: format!(
                "the owner (uid {}) of {} has no user name on this host",
                meta.uid(),
                data_directory.display()
            ),
            detail: Value::Null,
        })?;
    if !agent.is_root() && agent != owner.uid {
        // Neither its config (0600, the owner's) nor the owner's rights are within reach of
        // an unprivileged agent: say so before anything is written.
        return Err(OpError::Failed {
            message: format!(
                "the agent runs as {}, and pgBackRest must run as {} (uid {}), the owner of {}; \
                 an unprivileged agent runs it as itself. {AS_DATABASE_USER}",
                user_name(agent),
                owner.name,
                owner.uid,
                data_directory.display()
            ),
            detail: Value::Null,
        });
    }
    Ok(Server {
        data_directory,
        port: row.get(1),
        socket: sockets
            .split(',')
            .map(str::trim)
            .find(|s| s.starts_with('/'))
            .map(str::to_owned),
        archive_mode: row.get(3),
        archive_command: row.get(4),
        run_as: ctx
            .pgbackrest
            .prefix(&owner.name, Uid::effective().is_root(), owner.uid.is_root()),
        pgbackrest: ctx.pgbackrest.command.clone(),
        tablespaces,
        owner,
        bindir,
    })
}

/// The way out for an agent that is neither root nor the database user.
const AS_DATABASE_USER: &str = "Run the agent as the database OS user (packages: install \
     /usr/share/lasect/database-user.conf as a drop-in of lasect-agent.service; \
     packaging/README.md, \"pgBackRest\") or as root";

/// `name (uid N)`, or `uid N` for a uid without a name.
fn user_name(uid: Uid) -> String {
    match User::from_uid(uid) {
        Ok(Some(user)) => format!("{} (uid {uid})", user.name),
        _ => format!("uid {uid}"),
    }
}

/// What stops WAL from reaching the repository, with the fix: `check` would fail on it with a
/// timeout or a less direct message.
fn archive_problems(server: &Server, stanza: &str) -> Result<(), OpError> {
    let wanted = format!("pgbackrest --stanza={stanza} archive-push %p");
    let problem = if server.archive_mode == "off" {
        Some(format!(
            "archive_mode is off: WAL is not archived, so no backup can be restored consistently. \
             Fix: ALTER SYSTEM SET archive_mode = on; ALTER SYSTEM SET archive_command = \
             '{wanted}'; then restart the server"
        ))
    } else if !server.archive_command.contains("pgbackrest")
        || !server.archive_command.contains("archive-push")
    {
        Some(format!(
            "archive_command is {:?}, not pgBackRest's archive-push. Fix: ALTER SYSTEM SET \
             archive_command = '{wanted}' (with --config=<file> when the repository has a \
             config_path); SELECT pg_reload_conf()",
            server.archive_command
        ))
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(message) => Err(OpError::Failed {
            message,
            detail: json!({
                "archive_mode": server.archive_mode,
                "archive_command": server.archive_command,
            }),
        }),
    }
}

/// The config file of one command; the private directory is removed on drop. The secrets of a
/// temporary config are not in the file but in `env`, pgBackRest's environment
/// (`PGBACKREST_REPO1_*`), which only the database user and root can read while it runs.
pub(super) struct Config {
    pub(super) path: PathBuf,
    temp_dir: Option<PathBuf>,
    env: Vec<(&'static str, String)>,
    /// The secrets handed to pgBackRest, blanked from what it prints before a run reports it:
    /// pgBackRest redacts its options, but an object store's answer it quotes is not its own.
    hidden: Vec<String>,
}

impl Drop for Config {
    fn drop(&mut self) {
        if let Some(dir) = &self.temp_dir
            && let Err(e) = std::fs::remove_dir_all(dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the pgBackRest config");
        }
    }
}

impl Config {
    pub(super) fn write(
        run_id: i64,
        server: &Server,
        stanza: &str,
        repo: &BackupRepo,
    ) -> Result<Self, OpError> {
        let fail = |what: &str, path: &Path, e: std::io::Error| OpError::Failed {
            message: format!("cannot {what} {}: {e}", path.display()),
            detail: Value::Null,
        };
        let uid = server.owner.uid;
        let gid = server.owner.gid;
        let give = |p: &Path| {
            std::os::unix::fs::chown(p, Some(uid.as_raw()), Some(gid.as_raw()))
                .map_err(|e| fail("give the database user", p, e))
        };
        let secrets = secrets(repo)?;
        // A value this short would blank ordinary words; the API takes no such secret.
        let hidden: Vec<String> = secrets
            .iter()
            .map(|(_, value)| value.clone())
            .filter(|value| value.len() >= 8)
            .collect();
        match &repo.config_path {
            Some(path) => {
                // The server's archive-push reads this file between runs: the operator who
                // asked for it keeps the secrets in it (0600, the database user's).
                let path = PathBuf::from(path);
                let parent = persistent_parent(&path, uid)?;
                let gcs_key = path.with_extension("gcs-key.json");
                let mut text = config_text(server, stanza, repo, Some(&gcs_key))?;
                for (name, value) in &secrets {
                    match name {
                        Secret::Env(var) => text = with_global(&text, &option_of(var), value)?,
                        Secret::GcsKeyFile => {
                            let tmp = parent.join(format!(".lasect-{run_id}.gcs-key.tmp"));
                            write_private(&tmp, value).map_err(|e| fail("write", &tmp, e))?;
                            give(&tmp)?;
                            std::fs::rename(&tmp, &gcs_key)
                                .map_err(|e| fail("replace", &gcs_key, e))?;
                        }
                    }
                }
                // Written beside, then renamed: the server's archive-push never reads half a file.
                let tmp = parent.join(format!(".lasect-{run_id}.conf.tmp"));
                write_private(&tmp, &text).map_err(|e| fail("write", &tmp, e))?;
                give(&tmp)?;
                std::fs::rename(&tmp, &path).map_err(|e| fail("replace", &path, e))?;
                Ok(Config {
                    path,
                    temp_dir: None,
                    env: Vec::new(),
                    hidden,
                })
            }
            None => {
                let dir = std::env::temp_dir().join(format!(
                    "lasect-pgbackrest-{run_id}-{:016x}",
                    rand::random::<u64>()
                ));
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| fail("create", &dir, e))?;
                let gcs_key = dir.join("gcs-key.json");
                let mut config = Config {
                    path: dir.join("pgbackrest.conf"),
                    temp_dir: Some(dir.clone()),
                    env: Vec::new(),
                    hidden,
                };
                give(&dir)?;
                let text = config_text(server, stanza, repo, Some(&gcs_key))?;
                write_private(&config.path, &text).map_err(|e| fail("write", &config.path, e))?;
                give(&config.path)?;
                for (name, value) in secrets {
                    match name {
                        Secret::Env(var) => config.env.push((var, value)),
                        // pgBackRest reads a service key from a file only: it lives in the
                        // private directory, removed with it.
                        Secret::GcsKeyFile => {
                            write_private(&gcs_key, &value)
                                .map_err(|e| fail("write", &gcs_key, e))?;
                            give(&gcs_key)?;
                        }
                    }
                }
                Ok(config)
            }
        }
    }
}

impl Config {
    /// `text` (pgBackRest's output) with every secret of the command blanked.
    pub(super) fn hide(&self, text: String) -> String {
        self.hidden.iter().fold(text, |text, secret| {
            if text.contains(secret.as_str()) {
                text.replace(secret.as_str(), "<redacted>")
            } else {
                text
            }
        })
    }
}

/// Where a repository secret goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Secret {
    /// pgBackRest's environment variable for the option.
    Env(&'static str),
    /// The GCS service key: a file `repo1-gcs-key` names.
    GcsKeyFile,
}

/// The repository's secrets and where each goes.
fn secrets(repo: &BackupRepo) -> Result<Vec<(Secret, String)>, OpError> {
    let mut out = Vec::new();
    if let (Some(_), Some(pass)) = (&repo.cipher_type, &repo.cipher_pass) {
        out.push((Secret::Env("PGBACKREST_REPO1_CIPHER_PASS"), pass.0.clone()));
    }
    let kind = repo.repo_type.as_deref().unwrap_or("posix");
    let key_type = repo.key_type.as_deref();
    let wanted = match (kind, key_type) {
        ("s3", None | Some("shared")) => Some(Secret::Env("PGBACKREST_REPO1_S3_KEY_SECRET")),
        ("azure", _) => Some(Secret::Env("PGBACKREST_REPO1_AZURE_KEY")),
        ("gcs", Some("token")) => Some(Secret::Env("PGBACKREST_REPO1_GCS_KEY")),
        ("gcs", None | Some("service")) => Some(Secret::GcsKeyFile),
        _ => None,
    };
    match (wanted, &repo.secret_key) {
        (Some(to), Some(secret)) => {
            if matches!(to, Secret::Env(_)) && secret.0.contains(['\n', '\r', '\0']) {
                return Err(OpError::Params(
                    "the repository's secret key must be one line".into(),
                ));
            }
            out.push((to, secret.0.clone()));
        }
        (Some(_), None) => {
            return Err(OpError::Failed {
                message: format!(
                    "the {kind} repository needs its secret key, but none came with the run: \
                     the ingest serving this agent must be able to decrypt it ([secrets] key_file)"
                ),
                detail: Value::Null,
            });
        }
        (None, _) => {}
    }
    Ok(out)
}

/// `PGBACKREST_REPO1_S3_KEY_SECRET` → `repo1-s3-key-secret`.
fn option_of(var: &str) -> String {
    var.trim_start_matches("PGBACKREST_")
        .to_ascii_lowercase()
        .replace('_', "-")
}

/// `text` with `name=value` added at the end of its `[global]` section.
fn with_global(text: &str, name: &str, value: &str) -> Result<String, OpError> {
    if value.is_empty() || value.contains(['\n', '\r', '\0']) {
        return Err(OpError::Params(format!(
            "{name} must be one non-empty line"
        )));
    }
    // Before the blank line that ends `[global]`, or the next section's header.
    let at = text
        .find("\n\n[")
        .or_else(|| text.find("\n["))
        .map_or(text.len(), |i| i + 1);
    Ok(format!("{}{name}={value}\n{}", &text[..at], &text[at..]))
}

/// The directory of a persistent config: it must exist and belong to the database user (or
/// root), so a run cannot plant a file where that user could not.
fn persistent_parent(path: &Path, uid: Uid) -> Result<PathBuf, OpError> {
    let bad = |why: String| OpError::Params(format!("config_path {}: {why}", path.display()));
    if !path.is_absolute() || path.extension().is_none_or(|e| e != "conf") {
        return Err(bad("must be an absolute path ending in .conf".into()));
    }
    let parent = path
        .parent()
        .ok_or_else(|| bad("has no directory".into()))?
        .to_path_buf();
    let meta = std::fs::metadata(&parent)
        .map_err(|e| bad(format!("its directory cannot be read ({e})")))?;
    if meta.uid() != uid.as_raw() && meta.uid() != 0 {
        return Err(bad(format!(
            "its directory belongs to uid {}, neither the database user nor root",
            meta.uid()
        )));
    }
    Ok(parent)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// The pgBackRest config of one stanza. Values come from the API (validated there) and the
/// server: each is refused if it could break out of its line.
fn config_text(
    server: &Server,
    stanza: &str,
    repo: &BackupRepo,
    gcs_key_file: Option<&Path>,
) -> Result<String, OpError> {
    let line = |name: &str, value: &str| -> Result<String, OpError> {
        if value.is_empty() || value.contains(['\n', '\r', '\0']) {
            return Err(OpError::Params(format!(
                "{name} must be one non-empty line, not {value:?}"
            )));
        }
        Ok(format!("{name}={value}\n"))
    };
    if !repo.path.starts_with('/') {
        return Err(OpError::Params(format!(
            "the repository path must be absolute, not {:?}",
            repo.path
        )));
    }
    let mut text = String::from("[global]\n");
    text += &line("repo1-path", &repo.path)?;
    text += &object_store(repo, gcs_key_file, &line)?;
    if let Some(n) = repo.retention_full {
        let _ = writeln!(text, "repo1-retention-full={n}");
    }
    if let Some(n) = repo.retention_diff {
        let _ = writeln!(text, "repo1-retention-diff={n}");
    }
    if let Some(kind) = &repo.retention_full_type {
        text += &line("repo1-retention-full-type", kind)?;
    }
    if let Some(cipher) = &repo.cipher_type {
        let Some(pass) = &repo.cipher_pass else {
            return Err(OpError::Failed {
                message: format!(
                    "the repository is encrypted ({cipher}) but no passphrase came with the run: \
                     the ingest serving this agent must be able to decrypt it ([secrets] key_file)"
                ),
                detail: Value::Null,
            });
        };
        // The passphrase itself goes where [`secrets`] says.
        line("repo1-cipher-pass", &pass.0)?;
        text += &line("repo1-cipher-type", cipher)?;
    }
    // No log files: the run's result carries pgBackRest's messages.
    text += "log-level-file=off\nlog-level-console=warn\nlog-level-stderr=off\n";
    text += "start-fast=y\n";
    let _ = writeln!(text, "\n[{stanza}]");
    text += &line("pg1-path", &server.data_directory.to_string_lossy())?;
    let _ = writeln!(text, "pg1-port={}", server.port);
    if let Some(socket) = &server.socket {
        text += &line("pg1-socket-path", socket)?;
    }
    Ok(text)
}

/// The `repo1-*` options of an object store (none for posix), secrets aside.
fn object_store(
    repo: &BackupRepo,
    gcs_key_file: Option<&Path>,
    line: &dyn Fn(&str, &str) -> Result<String, OpError>,
) -> Result<String, OpError> {
    let kind = repo.repo_type.as_deref().unwrap_or("posix");
    let prefix = match kind {
        "posix" => return Ok(String::new()),
        "s3" => "repo1-s3",
        "azure" => "repo1-azure",
        "gcs" => "repo1-gcs",
        other => {
            return Err(OpError::Params(format!(
                "repository type {other:?} is not posix, s3, gcs or azure"
            )));
        }
    };
    let mut text = line("repo1-type", kind)?;
    let Some(bucket) = &repo.bucket else {
        return Err(OpError::Params(format!(
            "a {kind} repository needs its bucket"
        )));
    };
    let bucket_option = if kind == "azure" {
        "container"
    } else {
        "bucket"
    };
    text += &line(&format!("{prefix}-{bucket_option}"), bucket)?;
    // pgBackRest 2.45 takes GCS's port in its endpoint (`host:port`), not repo1-storage-port.
    let gcs_port = if kind == "gcs" {
        repo.storage_port
    } else {
        None
    };
    match (&repo.endpoint, gcs_port) {
        (Some(v), Some(port)) => text += &line("repo1-gcs-endpoint", &format!("{v}:{port}"))?,
        (None, Some(port)) => {
            let _ = writeln!(text, "repo1-gcs-endpoint=storage.googleapis.com:{port}");
        }
        (Some(v), None) => text += &line(&format!("{prefix}-endpoint"), v)?,
        (None, None) => {}
    }
    if let Some(v) = &repo.region {
        text += &line(&format!("{prefix}-region"), v)?;
    }
    if let Some(v) = &repo.key_id {
        let option = if kind == "azure" { "account" } else { "key" };
        text += &line(&format!("{prefix}-{option}"), v)?;
    }
    if let Some(v) = &repo.key_type {
        text += &line(&format!("{prefix}-key-type"), v)?;
    }
    if kind == "gcs" && matches!(repo.key_type.as_deref(), None | Some("service")) {
        let file = gcs_key_file.ok_or_else(|| {
            OpError::Params("a GCS service key needs a file to be written to".into())
        })?;
        text += &line("repo1-gcs-key", &file.to_string_lossy())?;
    }
    if let Some(v) = &repo.uri_style {
        text += &line(&format!("{prefix}-uri-style"), v)?;
    }
    if let (Some(port), None) = (repo.storage_port, gcs_port) {
        let _ = writeln!(text, "repo1-storage-port={port}");
    }
    if let Some(verify) = repo.verify_tls {
        let _ = writeln!(
            text,
            "repo1-storage-verify-tls={}",
            if verify { "y" } else { "n" }
        );
    }
    if let Some(v) = &repo.ca_file {
        text += &line("repo1-storage-ca-file", v)?;
    }
    Ok(text)
}

/// A failed write into a posix repository on a full filesystem, said so. pgBackRest 2.45
/// reports a short write as `unable to write '<file>'` without the system's reason (it has one
/// only when nothing at all could be written), which does not tell the operator what to do.
fn full_repository(error: OpError, repo: &BackupRepo) -> OpError {
    let OpError::Failed { message, detail } = error else {
        return error;
    };
    let posix = repo.repo_type.as_deref().unwrap_or("posix") == "posix";
    let space = posix
        .then(|| statvfs(Path::new(&repo.path)).ok())
        .flatten()
        .map(|st| {
            // statvfs counts are 32-bit on some targets.
            #[allow(clippy::useless_conversion)]
            let size = u64::from(st.fragment_size());
            #[allow(clippy::useless_conversion)]
            let (free, total) = (u64::from(st.blocks_available()), u64::from(st.blocks()));
            (free.saturating_mul(size), total.saturating_mul(size))
        });
    let message =
        match space.and_then(|(free, total)| disk_full_note(&message, &repo.path, free, total)) {
            Some(note) => format!("{message}; {note}"),
            None => message,
        };
    OpError::Failed { message, detail }
}

/// What to add to a failed command's `message` when the repository at `path` has `free` of
/// `total` bytes left: something only when a write failed and the filesystem is full (less
/// than 64 MiB, or a tenth of a small one, left).
fn disk_full_note(message: &str, path: &str, free: u64, total: u64) -> Option<String> {
    let write_failed = [
        "unable to write",
        "FileWriteError",
        "No space left on device",
    ]
    .iter()
    .any(|m| message.contains(m));
    let full = free < (64u64 << 20).min(total / 10);
    (write_failed && full).then(|| {
        format!(
            "the repository's filesystem ({path}) is full, {free} bytes free of {total}: No \
             space left on device. Free space there or grow it, then back up again (pgBackRest \
             resumes or removes the partial backup)"
        )
    })
}

/// Runs pgBackRest as the database user; its stdout when it succeeds. Cancelling (or the run's
/// timeout) sends SIGTERM, which pgBackRest handles by stopping its processes and releasing
/// its lock, and then waits for it to exit.
pub(super) async fn pgbackrest(
    ctx: &mut OpContext,
    server: &Server,
    config: &Config,
    stanza: &str,
    args: &[&str],
) -> Result<String, OpError> {
    if let Err(problem) = ctx.pgbackrest.check_command() {
        return Err(OpError::Failed {
            message: problem.to_string(),
            detail: Value::Null,
        });
    }
    super::pgbackrest_version::ensure(server).await?;
    let mut command = command(server, config, stanza, args);
    // Its own process group: cancel signals pgBackRest and whatever it started.
    command.process_group(0).kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| OpError::Failed {
        message: format!(
            "pgBackRest is not installed on this host or not on the agent's PATH ({e}): \
             apt-get install pgbackrest"
        ),
        detail: Value::Null,
    })?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let read_out = async {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf).await;
        }
        buf
    };
    let read_err = async {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf).await;
        }
        buf
    };
    let pid = child.id();
    let mut cancel = ctx.cancel.clone();
    let timeout = ctx.limits.timeout;
    let waited = async {
        tokio::select! {
            status = child.wait() => (status, None),
            () = async { let _ = cancel.wait_for(|c| *c).await; } => {
                (terminate(&mut child, pid).await, Some("cancelled"))
            }
            () = tokio::time::sleep(timeout) => {
                (terminate(&mut child, pid).await, Some("timed out"))
            }
        }
    };
    let ((status, stopped), out, err) = tokio::join!(waited, read_out, read_err);
    let out = config.hide(String::from_utf8_lossy(&out).into_owned());
    let err = config.hide(String::from_utf8_lossy(&err).into_owned());
    let status = status.map_err(|e| OpError::Failed {
        message: format!("pgBackRest could not be waited for: {e}"),
        detail: Value::Null,
    })?;
    match stopped {
        Some("cancelled") => {
            return Err(OpError::Refused(
                "cancelled on request; pgBackRest was stopped".into(),
            ));
        }
        Some(_) => {
            return Err(OpError::Failed {
                message: format!(
                    "pgBackRest {} exceeded the run's timeout of {timeout:?} and was stopped",
                    args.first().copied().unwrap_or_default()
                ),
                detail: json!({ "output": truncate(&out), "stderr": truncate(&err) }),
            });
        }
        None => {}
    }
    if status.success() {
        return Ok(out);
    }
    let text = error_lines(&out, &err);
    // runuser and setpriv say so and exit 1 (a shell would exit 127).
    if status.code() == Some(127)
        || err.contains(&format!("failed to execute {}", server.pgbackrest))
    {
        return Err(OpError::Failed {
            message: format!(
                "pgBackRest is not installed on this host or not on the agent's PATH \
                 (apt-get install pgbackrest): {text}"
            ),
            detail: json!({ "exit_code": 127, "stderr": truncate(&err) }),
        });
    }
    Err(OpError::Failed {
        message: format!(
            "pgBackRest {} failed ({status}): {text}",
            args.first().copied().unwrap_or_default()
        ),
        detail: json!({
            "exit_code": status.code(),
            "output": truncate(&out),
            "stderr": truncate(&err),
        }),
    })
}

/// The command line of one pgBackRest command as the database user, output piped.
pub(super) fn command(
    server: &Server,
    config: &Config,
    stanza: &str,
    args: &[&str],
) -> tokio::process::Command {
    let launch = launch(server);
    let mut command = tokio::process::Command::new(launch[0]);
    command
        .args(&launch[1..])
        .arg(format!("--config={}", config.path.display()))
        .arg(format!("--stanza={stanza}"))
        .args(args)
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// The program and arguments that start pgBackRest as the database user, before its own
/// arguments.
pub(super) fn launch(server: &Server) -> Vec<&str> {
    let mut launch: Vec<&str> = Vec::new();
    // An agent killed outright (SIGKILL, OOM) must not leave pgBackRest running and holding
    // the stanza's lock: setpriv has the kernel send SIGTERM to it (runuser, which passes it
    // on) when the agent dies.
    if Path::new(SETPRIV).is_file() {
        launch.extend([SETPRIV, "--pdeathsig", "TERM", "--"]);
    }
    launch.extend(server.run_as.iter().map(String::as_str));
    launch.push(&server.pgbackrest);
    launch
}

/// SIGTERM, then wait: pgBackRest cleans up on it. runuser passes the signal on to it.
async fn terminate(
    child: &mut tokio::process::Child,
    pid: Option<u32>,
) -> std::io::Result<std::process::ExitStatus> {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        // The group too (the leader is `pid`): what pgBackRest started stops with it.
        let _ = kill(Pid::from_raw(-pid), Signal::SIGTERM);
    }
    match tokio::time::timeout(TERM_GRACE, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            // It did not stop: a backup left behind would hold the stanza's lock.
            child.kill().await?;
            child.wait().await
        }
    }
}

const TERM_GRACE: Duration = Duration::from_secs(60);

/// pgBackRest's `ERROR:`/`WARN:` lines (its own text) with what it indents under an ERROR
/// (HINTs, a message's further lines, a failed request's line and the store's answer), else
/// the last lines it printed.
fn error_lines(out: &str, err: &str) -> String {
    let all = format!("{out}\n{err}");
    let mut marked: Vec<&str> = Vec::new();
    // Inside the indented lines under an ERROR: whether the current `*** … ***:` section of
    // a failed HTTP request is one to keep.
    let mut under_error: Option<bool> = None;
    for line in all.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("ERROR") || trimmed.contains("ERROR: [") {
            marked.push(trimmed);
            under_error = Some(true);
        } else if trimmed.starts_with("WARN") {
            // A WARN's HINTs (e.g. retention not set) would bury the error that follows.
            marked.push(trimmed);
            under_error = None;
        } else if let Some(keep) = under_error.as_mut()
            && line.starts_with(char::is_whitespace)
            && !trimmed.is_empty()
        {
            // The request line and the store's answer say which bucket and why (NoSuchBucket,
            // SignatureDoesNotMatch); the headers are noise and stay in the run's detail.
            if let Some(section) = trimmed.strip_prefix("*** ") {
                *keep = matches!(section, "Path/Query ***:" | "Response Content ***:");
            } else if *keep {
                marked.push(trimmed);
            }
        } else {
            under_error = None;
        }
    }
    let lines = if marked.is_empty() {
        let printed = all.lines().map(str::trim).filter(|l| !l.is_empty());
        last_lines(printed.collect(), 5)
    } else {
        marked
    };
    truncate(&lines.join(" | "))
}

/// The last `n` of `lines`, in their order.
pub(super) fn last_lines(lines: Vec<&str>, n: usize) -> Vec<&str> {
    let skip = lines.len().saturating_sub(n);
    lines.into_iter().skip(skip).collect()
}

pub(super) fn truncate(s: &str) -> String {
    if s.len() <= MAX_OUTPUT {
        return s.to_owned();
    }
    let mut end = MAX_OUTPUT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use lasect_runs::BackupType;

    fn server() -> Server {
        Server {
            data_directory: "/var/lib/postgresql/16/main".into(),
            port: 5433,
            socket: Some("/run/postgresql".into()),
            archive_mode: "on".into(),
            archive_command: "pgbackrest --stanza=main archive-push %p".into(),
            owner: User::from_uid(Uid::from_raw(0))
                .ok()
                .flatten()
                .expect("root exists"),
            bindir: None,
            pgbackrest: "pgbackrest".into(),
            run_as: Vec::new(),
            tablespaces: Vec::new(),
        }
    }

    #[test]
    fn the_config_names_the_repository_and_the_server() {
        let repo = BackupRepo {
            path: "/backups/main".into(),
            retention_full: Some(2),
            retention_full_type: Some("time".into()),
            ..BackupRepo::default()
        };
        let text = config_text(&server(), "main", &repo, None).expect("config");
        for needle in [
            "repo1-path=/backups/main\n",
            "repo1-retention-full=2\n",
            "repo1-retention-full-type=time\n",
            "[main]\n",
            "pg1-path=/var/lib/postgresql/16/main\n",
            "pg1-port=5433\n",
            "pg1-socket-path=/run/postgresql\n",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from {text}");
        }
        let injected = BackupRepo {
            path: "/r\n[global]\nrepo1-path=/elsewhere".into(),
            ..BackupRepo::default()
        };
        assert!(matches!(
            config_text(&server(), "main", &injected, None),
            Err(OpError::Params(_))
        ));
    }

    #[test]
    fn an_encrypted_repository_needs_its_passphrase() {
        let mut repo = BackupRepo {
            path: "/r".into(),
            cipher_type: Some("aes-256-cbc".into()),
            ..BackupRepo::default()
        };
        let Err(OpError::Failed { message, .. }) = config_text(&server(), "main", &repo, None)
        else {
            panic!("an encrypted repository without passphrase was configured");
        };
        assert!(message.contains("no passphrase"), "{message}");
        repo.cipher_pass = Some(lasect_runs::RepoSecret("s3cr3t-passphrase".into()));
        let text = config_text(&server(), "main", &repo, None).expect("config");
        assert!(text.contains("repo1-cipher-type=aes-256-cbc\n"), "{text}");
        assert!(
            !text.contains("s3cr3t"),
            "the passphrase is not in the file: {text}"
        );
        assert_eq!(
            secrets(&repo).expect("secrets"),
            [(
                Secret::Env("PGBACKREST_REPO1_CIPHER_PASS"),
                "s3cr3t-passphrase".to_owned()
            )]
        );
        assert!(
            !format!("{repo:?}").contains("s3cr3t"),
            "Debug shows no secret"
        );
    }

    fn object_store(kind: &str) -> BackupRepo {
        BackupRepo {
            path: "/lasect".into(),
            repo_type: Some(kind.into()),
            bucket: Some("backups".into()),
            endpoint: Some("store.internal".into()),
            key_id: Some("AKIA2LASECTAGENTKEY1".into()),
            uri_style: Some("path".into()),
            storage_port: Some(9443),
            verify_tls: Some(false),
            ca_file: Some("/etc/ssl/store-ca.pem".into()),
            secret_key: Some(lasect_runs::RepoSecret("object-store-secret-9f2".into())),
            ..BackupRepo::default()
        }
    }

    #[test]
    fn object_stores_get_their_options_and_their_secrets_apart() {
        let mut s3 = object_store("s3");
        s3.region = Some("eu-west-1".into());
        let text = config_text(&server(), "main", &s3, None).expect("s3 config");
        for needle in [
            "repo1-type=s3\n",
            "repo1-s3-bucket=backups\n",
            "repo1-s3-endpoint=store.internal\n",
            "repo1-s3-region=eu-west-1\n",
            "repo1-s3-key=AKIA2LASECTAGENTKEY1\n",
            "repo1-s3-uri-style=path\n",
            "repo1-storage-port=9443\n",
            "repo1-storage-verify-tls=n\n",
            "repo1-storage-ca-file=/etc/ssl/store-ca.pem\n",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from {text}");
        }
        assert!(!text.contains("object-store-secret"), "{text}");
        assert_eq!(
            secrets(&s3).expect("secrets"),
            [(
                Secret::Env("PGBACKREST_REPO1_S3_KEY_SECRET"),
                "object-store-secret-9f2".to_owned()
            )]
        );

        let azure = object_store("azure");
        let text = config_text(&server(), "main", &azure, None).expect("azure config");
        for needle in [
            "repo1-type=azure\n",
            "repo1-azure-container=backups\n",
            "repo1-azure-account=AKIA2LASECTAGENTKEY1\n",
            "repo1-azure-endpoint=store.internal\n",
            "repo1-azure-uri-style=path\n",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from {text}");
        }
        assert_eq!(
            secrets(&azure).expect("secrets")[0].0,
            Secret::Env("PGBACKREST_REPO1_AZURE_KEY")
        );

        let mut gcs = object_store("gcs");
        gcs.key_id = None;
        gcs.uri_style = None;
        let key = Path::new("/tmp/private/gcs-key.json");
        let text = config_text(&server(), "main", &gcs, Some(key)).expect("gcs config");
        for needle in [
            "repo1-type=gcs\n",
            "repo1-gcs-bucket=backups\n",
            "repo1-gcs-endpoint=store.internal:9443\n",
            "repo1-gcs-key=/tmp/private/gcs-key.json\n",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from {text}");
        }
        assert!(
            !text.contains("repo1-storage-port"),
            "GCS's port is in its endpoint"
        );
        assert_eq!(secrets(&gcs).expect("secrets")[0].0, Secret::GcsKeyFile);
        gcs.key_type = Some("token".into());
        let text = config_text(&server(), "main", &gcs, Some(key)).expect("gcs config");
        assert!(
            text.contains("repo1-gcs-key-type=token\n") && !text.contains("repo1-gcs-key="),
            "{text}"
        );
        assert_eq!(
            secrets(&gcs).expect("secrets")[0].0,
            Secret::Env("PGBACKREST_REPO1_GCS_KEY")
        );

        // A key pgBackRest finds on its own (an instance role) needs no secret.
        let mut auto = object_store("s3");
        auto.key_type = Some("auto".into());
        auto.secret_key = None;
        assert!(secrets(&auto).expect("secrets").is_empty());
        let mut missing = object_store("azure");
        missing.secret_key = None;
        let Err(OpError::Failed { message, .. }) = secrets(&missing) else {
            panic!("an azure repository without its key was accepted");
        };
        assert!(message.contains("secret key"), "{message}");
        let mut injected = object_store("s3");
        injected.bucket = Some("b\nrepo1-path=/elsewhere".into());
        assert!(matches!(
            config_text(&server(), "main", &injected, None),
            Err(OpError::Params(_))
        ));
    }

    #[test]
    fn secrets_stay_out_of_a_temporary_config_and_in_a_persistent_one() {
        let mut s = server();
        s.owner = User::from_uid(Uid::effective())
            .ok()
            .flatten()
            .expect("the test's user");
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").mode() & 0o777;
        let read = |p: &Path| std::fs::read_to_string(p).expect("read");
        let mut repo = object_store("s3");
        repo.region = Some("eu-west-1".into());
        repo.cipher_type = Some("aes-256-cbc".into());
        repo.cipher_pass = Some(lasect_runs::RepoSecret(
            "cipher-pass-of-the-unit-test".into(),
        ));

        let config = Config::write(41, &s, "main", &repo).expect("temporary config");
        let text = read(&config.path);
        assert!(
            !text.contains("object-store-secret") && !text.contains("cipher-pass-of"),
            "{text}"
        );
        assert_eq!(mode(&config.path), 0o600);
        let vars: Vec<&str> = config.env.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            vars,
            [
                "PGBACKREST_REPO1_CIPHER_PASS",
                "PGBACKREST_REPO1_S3_KEY_SECRET"
            ]
        );
        let echoed = "<Message>bad key object-store-secret-9f2</Message>".to_owned();
        assert_eq!(
            config.hide(echoed.clone()),
            "<Message>bad key <redacted></Message>",
            "a secret quoted back is not reported"
        );
        let dir = config.path.parent().expect("its directory").to_path_buf();
        drop(config);
        assert!(
            !dir.exists(),
            "the private directory is gone after the command"
        );

        let keep = tempfile::tempdir().expect("tempdir");
        let path = keep.path().join("lasect-main.conf");
        repo.config_path = Some(path.display().to_string());
        let config = Config::write(42, &s, "main", &repo).expect("persistent config");
        assert!(config.env.is_empty(), "the file holds them");
        assert_eq!(
            config.hide(format!("{echoed} cipher-pass-of-the-unit-test")),
            "<Message>bad key <redacted></Message> <redacted>"
        );
        drop(config);
        let text = read(&path);
        let global = text.split("\n[main]").next().unwrap_or_default();
        assert!(
            global.contains("repo1-s3-key-secret=object-store-secret-9f2\n")
                && global.contains("repo1-cipher-pass=cipher-pass-of-the-unit-test\n"),
            "{text}"
        );
        assert_eq!(mode(&path), 0o600, "kept, private");

        let mut gcs = object_store("gcs");
        gcs.key_id = None;
        gcs.uri_style = None;
        let service_key = "{\"type\": \"service_account\",\n \"private_key\": \"k\"}";
        gcs.secret_key = Some(lasect_runs::RepoSecret(service_key.into()));
        let config = Config::write(43, &s, "main", &gcs).expect("GCS config");
        let key = config.path.with_file_name("gcs-key.json");
        assert_eq!(read(&key), service_key);
        assert_eq!(mode(&key), 0o600);
        assert!(
            read(&config.path).contains(&format!("repo1-gcs-key={}\n", key.display())),
            "the config names the key file"
        );
        drop(config);
        assert!(
            !key.exists(),
            "the service key goes with the private directory"
        );
    }

    #[test]
    fn a_persistent_config_keeps_its_secrets_in_global() {
        let text = "[global]\nrepo1-path=/r\n\n[main]\npg1-port=5432\n";
        let with =
            with_global(text, &option_of("PGBACKREST_REPO1_S3_KEY_SECRET"), "k3y").expect("added");
        assert_eq!(
            with,
            "[global]\nrepo1-path=/r\nrepo1-s3-key-secret=k3y\n\n[main]\npg1-port=5432\n"
        );
        assert!(with_global(text, "repo1-cipher-pass", "a\nb").is_err());
    }

    #[test]
    fn archive_problems_name_the_fix() {
        let mut s = server();
        assert!(archive_problems(&s, "main").is_ok());
        s.archive_mode = "off".into();
        let Err(OpError::Failed { message, .. }) = archive_problems(&s, "main") else {
            panic!("archive_mode=off passed");
        };
        assert!(message.contains("archive_mode = on"), "{message}");
        s.archive_mode = "on".into();
        s.archive_command = "cp %p /mnt/wal/%f".into();
        let Err(OpError::Failed { message, .. }) = archive_problems(&s, "main") else {
            panic!("a cp archive_command passed");
        };
        assert!(message.contains("archive-push"), "{message}");
    }

    #[test]
    fn a_failed_write_into_a_full_repository_says_so() {
        let short = "pgBackRest backup failed (exit status: 64): ERROR: [064]: raised from \
                     local-1 protocol: unable to write '/repo/backup/main/x/pg_data/f.gz' | \
                     [FileWriteError] on retry after 0ms";
        let note = disk_full_note(short, "/repo", 0, 8 << 20).expect("full");
        assert!(
            note.contains("(/repo) is full, 0 bytes free of 8388608")
                && note.contains("No space left on device")
                && note.contains("Free space there or grow it"),
            "{note}"
        );
        let big = 1u64 << 40;
        assert!(disk_full_note(short, "/repo", 10 << 20, big).is_some());
        assert_eq!(
            disk_full_note(short, "/repo", 100 << 20, big),
            None,
            "room left"
        );
        assert_eq!(
            disk_full_note(short, "/repo", 2 << 20, 8 << 20),
            None,
            "a quarter free"
        );
        let other = "ERROR: [047]: unable to create path '/repo/x': [13] Permission denied";
        assert_eq!(disk_full_note(other, "/repo", 0, big), None, "not a write");
        // Not a posix repository: nothing asked.
        let mut repo = object_store("s3");
        repo.path = "/".into();
        let kept = full_repository(
            OpError::Failed {
                message: short.into(),
                detail: Value::Null,
            },
            &repo,
        );
        assert_eq!(kept.to_string(), short);
    }

    #[test]
    fn stanza_names_are_plain() {
        assert!(check_stanza_name("main-16.a").is_ok());
        for bad in ["", "-x", "a b", "a]\n[b", &"x".repeat(65)] {
            assert!(check_stanza_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pgbackrest_errors_keep_their_own_text() {
        let out = "2026-12-07 INFO: start\nERROR: [055]: unable to load info file '/r/archive/main/archive.info'\n";
        assert!(error_lines(out, "").contains("[055]: unable to load info file"));
        assert_eq!(
            error_lines("", "line one\nline two\n"),
            "line one | line two"
        );
        let seven = "1\n2\n3\n4\n5\n6\n7\n";
        assert_eq!(
            error_lines(seven, ""),
            "3 | 4 | 5 | 6 | 7",
            "the last five, in order"
        );
    }

    #[test]
    fn a_failed_request_keeps_the_stores_answer_and_drops_the_headers() {
        // pgBackRest 2.45's stderr for an S3 bucket that does not exist.
        let err = "ERROR: [039]: HTTP request failed with 404 (NOT FOUND):
       *** Path/Query ***:
       GET /lasect-missing/?delimiter=%2F&list-type=2&prefix=pg%2Farchive%2Fmain%2F
       *** Request Headers ***:
       authorization: <redacted>
       content-length: 0
       host: localhost
       x-amz-date: <redacted>
       *** Response Headers ***:
       content-type: application/xml
       x-amzn-requestid: 4GrbJEK1LVO8o2En39cv
       *** Response Content ***:
       <?xml version=\"1.0\" encoding=\"utf-8\"?>
       <Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>
";
        let text = error_lines("", err);
        assert!(
            text.starts_with("ERROR: [039]: HTTP request failed with 404"),
            "{text}"
        );
        assert!(text.contains("| GET /lasect-missing/?delimiter"), "{text}");
        assert!(
            text.contains("<Code>NoSuchBucket</Code><Message>The specified bucket does not exist"),
            "{text}"
        );
        for header in [
            "authorization",
            "x-amz-date",
            "x-amzn-requestid",
            "content-type",
            "***",
        ] {
            assert!(!text.contains(header), "{header} in {text}");
        }

        // An ERROR's HINTs and further lines stay; a WARN's HINT does not bury it.
        let out = "WARN: option 'repo1-retention-full' is not set
      HINT: to retain full backups indefinitely, set option 'repo1-retention-full'
2026-12-07 17:05:26.017 P00   INFO: backup start
ERROR: [082]: WAL segment 000000010000000000000004 was not archived before the 60000ms timeout
       HINT: check the archive_command to ensure that all options are correct
ERROR: [104]: archive-push command encountered error(s):
       repo1: [FormatError] upload id missing
2026-12-07 17:05:27.017 P00   INFO: backup command end: aborted with exception [082]
       not under an error
";
        let text = error_lines(out, "");
        assert!(text.contains("HINT: check the archive_command"), "{text}");
        assert!(
            text.contains("| repo1: [FormatError] upload id missing"),
            "{text}"
        );
        assert!(!text.contains("to retain full backups"), "{text}");
        assert!(!text.contains("not under an error"), "{text}");
    }

    #[test]
    fn the_catalogue_keeps_type_sizes_and_wal_range() {
        let info = json!([{
            "name": "main",
            "status": {"code": 0, "message": "ok"},
            "archive": [{"id": "16-1", "min": "000000010000000000000001", "max": "000000010000000000000004"}],
            "backup": [{
                "label": "20261207-083000F", "type": "full", "prior": null,
                "timestamp": {"start": 1, "stop": 2},
                "info": {"size": 100, "delta": 100, "repository": {"size": 10, "delta": 10}},
                "archive": {"start": "000000010000000000000002", "stop": "000000010000000000000002"},
                "lsn": {"start": "0/2000028", "stop": "0/2000100"},
                "error": false
            }]
        }]);
        let c = reduce_info(&info, "main");
        assert_eq!(c["backups"][0]["type"], "full");
        assert_eq!(c["backups"][0]["database_size"], 100);
        assert_eq!(c["backups"][0]["repo_size"], 10);
        assert_eq!(c["archive"][0]["max"], "000000010000000000000004");
        assert_eq!(reduce_info(&info, "other")["backups"], json!([]));
    }

    #[test]
    fn backup_types_are_pgbackrests() {
        let names: Vec<&str> = BackupType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(names, ["full", "diff", "incr"]);
    }
}
