//! `dump_sql`: `pg_dump` run by the agent (schema only by default), its
//! output streamed as the result. The connection goes to pg_dump through
//! PG* environment variables, never its command line (which any local user
//! can read in /proc); it is killed when the run is cancelled or times out.

use std::path::PathBuf;
use std::process::Stdio;

use lasect_runs::DumpSqlParams;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio_postgres::config::Host;

use super::{OpContext, OpError, OpOutcome};

/// `pg_dump` on PATH, else in `pg_config --bindir`.
fn pg_dump_path() -> Option<PathBuf> {
    if let Some(found) = super::on_path("pg_dump") {
        return Some(found);
    }
    let out = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    let candidate = PathBuf::from(dir.trim()).join("pg_dump");
    candidate.is_file().then_some(candidate)
}

/// The command, connection in the environment only.
pub fn command(pg: &tokio_postgres::Config, program: &std::path::Path, args: &[String]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PGAPPNAME", "lasect-agent pg_dump")
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(host) = pg.get_hosts().first() {
        match host {
            Host::Tcp(h) => cmd.env("PGHOST", h),
            Host::Unix(p) => cmd.env("PGHOST", p),
        };
    }
    if let Some(port) = pg.get_ports().first() {
        cmd.env("PGPORT", port.to_string());
    }
    if let Some(user) = pg.get_user() {
        cmd.env("PGUSER", user);
    }
    if let Some(db) = pg.get_dbname() {
        cmd.env("PGDATABASE", db);
    }
    if let Some(password) = pg.get_password() {
        cmd.env("PGPASSWORD", String::from_utf8_lossy(password).into_owned());
    }
    cmd
}

/// pg_dump is libpq: it gets the same TLS settings as the agent's own
/// sessions (the environment was cleared, so libpq's default would be
/// `prefer`, unverified).
fn tls_env(cmd: &mut Command, tls: &lasect_pgtls::TlsOptions) {
    cmd.env("PGSSLMODE", tls.mode.as_str());
    match &tls.root_cert {
        Some(lasect_pgtls::RootCert::File(path)) => cmd.env("PGSSLROOTCERT", path),
        Some(lasect_pgtls::RootCert::System) => cmd.env("PGSSLROOTCERT", "system"),
        None => cmd,
    };
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        cmd.env("PGSSLCERT", cert).env("PGSSLKEY", key);
    }
}

pub async fn run(ctx: &mut OpContext, p: &DumpSqlParams) -> Result<OpOutcome, OpError> {
    let program = pg_dump_path().ok_or_else(|| OpError::Failed {
        message:
            "pg_dump is not installed on the agent's host (not on PATH nor in pg_config --bindir)"
                .to_owned(),
        detail: json!({}),
    })?;
    let mut args = vec!["--no-password".to_owned()];
    if p.schema_only {
        args.push("--schema-only".to_owned());
    }
    if let Some(s) = &p.schema {
        args.push(format!("--schema={s}"));
    }
    if let Some(t) = &p.table {
        args.push(format!("--table={t}"));
    }
    let mut pg = ctx.pg.clone();
    if let Some(db) = &p.database {
        pg.dbname(db);
    }
    let version = std::process::Command::new(&program)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let mut cmd = command(&pg, &program, &args);
    tls_env(&mut cmd, pg.tls_options());
    let mut child = cmd.spawn().map_err(|e| OpError::Failed {
        message: format!("cannot start pg_dump: {e}"),
        detail: json!({}),
    })?;
    ctx.out.started(0).await?;
    let mut stdout = child.stdout.take().ok_or_else(|| OpError::Failed {
        message: "pg_dump has no stdout".to_owned(),
        detail: json!({}),
    })?;
    let mut stderr = child.stderr.take().ok_or_else(|| OpError::Failed {
        message: "pg_dump has no stderr".to_owned(),
        detail: json!({}),
    })?;
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut buf = vec![0u8; 64 << 10];
    let mut cancel = ctx.cancel.clone();
    loop {
        let n = tokio::select! {
            n = stdout.read(&mut buf) => n.map_err(|e| OpError::Failed { message: format!("reading pg_dump: {e}"), detail: json!({}) })?,
            () = async { let _ = cancel.wait_for(|c| *c).await; } => {
                let _ = child.kill().await;
                return Err(OpError::Failed { message: "cancelled on request".to_owned(), detail: json!({}) });
            }
        };
        if n == 0 {
            break;
        }
        if !ctx.out.raw(&buf[..n], 0).await? {
            let _ = child.kill().await;
            break;
        }
    }
    let status = child.wait().await.map_err(|e| OpError::Failed {
        message: format!("pg_dump did not finish: {e}"),
        detail: json!({}),
    })?;
    let stderr = errors.await.unwrap_or_default();
    if !status.success() && ctx.out.truncated().is_none() {
        return Err(OpError::Failed {
            message: format!(
                "pg_dump failed ({status}): {}",
                stderr.lines().next().unwrap_or("")
            ),
            detail: json!({ "stderr": stderr }),
        });
    }
    ctx.out.flush().await?;
    Ok(OpOutcome {
        summary: json!({ "pg_dump_version": version, "schema_only": p.schema_only }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_goes_in_the_environment_not_the_arguments() {
        let pg: tokio_postgres::Config = "host=db port=5433 user=u password=s3cret dbname=app"
            .parse()
            .expect("dsn");
        let cmd = command(
            &pg,
            std::path::Path::new("/bin/true"),
            &["--schema-only".to_owned()],
        );
        let std = cmd.as_std();
        assert!(
            std.get_args()
                .all(|a| !a.to_string_lossy().contains("s3cret"))
        );
        let env: Vec<(String, String)> = std
            .get_envs()
            .filter_map(|(k, v)| {
                Some((
                    k.to_string_lossy().into_owned(),
                    v?.to_string_lossy().into_owned(),
                ))
            })
            .collect();
        assert!(env.contains(&("PGPASSWORD".to_owned(), "s3cret".to_owned())));
        assert!(env.contains(&("PGHOST".to_owned(), "db".to_owned())));
    }
}
