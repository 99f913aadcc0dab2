//! Throwaway PostgreSQL clusters for tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::unistd::{Uid, User};

use crate::{HarnessError, free_port};

mod replica;

pub use replica::REPLICA_APPLICATION_NAME;

/// Server log format written into `<data>/log/` in addition to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Csv,
    Json,
}

/// How to configure a cluster.
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// Preload pg_stat_statements (and `track_io_timing`).
    pub stat_statements: bool,
    /// `wal_level = logical` with room for slots and senders.
    pub logical: bool,
    /// Enable the logging collector with this format.
    pub log_format: Option<LogFormat>,
    /// Extra `postgresql.conf` settings, written verbatim as `name = value`.
    pub settings: Vec<(String, String)>,
    /// `ssl = on` with this server certificate (see [`crate::TestCa`]); TCP
    /// clients may then negotiate TLS (plaintext stays allowed).
    pub tls: Option<crate::CertPair>,
    /// With `tls`: TCP clients without TLS are rejected (`hostnossl … reject`);
    /// the unix socket stays open, and [`PgCluster::connect`] then uses it.
    pub tls_only: bool,
}

/// A running PostgreSQL cluster, stopped and deleted on `Drop`.
pub struct PgCluster {
    root: tempfile::TempDir,
    port: u16,
    bindir: PathBuf,
    run_as: Option<String>,
    /// TCP needs TLS: the harness's own connections go through the socket.
    tls_only: bool,
}

static DB_COUNTER: AtomicU32 = AtomicU32::new(0);

impl PgCluster {
    /// Creates and starts a cluster. Blocking; call it before or outside
    /// async code (it is fine inside `#[tokio::test]` too: it takes ~1 s).
    pub fn start(opts: PgOptions) -> Result<Self, HarnessError> {
        let bindir = pg_bindir()?;
        let run_as = server_user()?;
        let root = tempfile::Builder::new()
            .prefix("lasect-pg-")
            .tempdir()
            .map_err(HarnessError::io("create cluster temp dir"))?;
        if let Some(user) = &run_as {
            chown_to(root.path(), user)?;
        }
        let mut cluster = Self {
            root,
            port: 0,
            bindir,
            run_as,
            tls_only: opts.tls_only,
        };
        let data = cluster.data_dir();
        cluster.run(
            cluster
                .command("initdb")
                .args(["-D"])
                .arg(&data)
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
                .arg("--no-sync"),
        )?;
        if let Some(major) = requested_major()? {
            check_major(&data, &major, &cluster.bindir)?;
        }
        std::fs::create_dir_all(cluster.socket_dir())
            .map_err(HarnessError::io("create socket dir"))?;
        if let Some(user) = &cluster.run_as {
            chown_to(&cluster.socket_dir(), user)?;
        }
        // A port can be taken between free_port() and bind: retry a few times.
        let mut last = None;
        for _ in 0..5 {
            cluster.port = free_port();
            cluster.write_conf(&opts)?;
            match cluster.pg_ctl_start() {
                Ok(()) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| HarnessError::Other("cluster did not start".into())))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.root.path().join("sock")
    }

    /// The server's stderr log (startup messages, errors).
    pub fn log_path(&self) -> PathBuf {
        self.root.path().join("server.log")
    }

    /// Directory of csvlog/jsonlog files when `log_format` was set.
    pub fn log_dir(&self) -> PathBuf {
        self.data_dir().join("log")
    }

    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// Key-value DSN over TCP as superuser `postgres`.
    pub fn dsn(&self, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={dbname}",
            self.port
        )
    }

    /// Connects as `postgres`; the connection task is spawned on the current
    /// tokio runtime.
    pub async fn connect(&self, dbname: &str) -> Result<tokio_postgres::Client, HarnessError> {
        let dsn = if self.tls_only {
            format!(
                "host={} port={} user=postgres dbname={dbname}",
                self.socket_dir().display(),
                self.port
            )
        } else {
            self.dsn(dbname)
        };
        let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    pub async fn create_database(&self, name: &str) -> Result<(), HarnessError> {
        let client = self.connect("postgres").await?;
        client
            .batch_execute(&format!(
                "CREATE DATABASE \"{}\"",
                name.replace('"', "\"\"")
            ))
            .await?;
        Ok(())
    }

    /// Creates a fresh database holding the migrated Lasect store (native
    /// partition layout) and returns its DSN.
    pub async fn store_dsn(&self) -> Result<String, HarnessError> {
        let name = format!("store_{}", DB_COUNTER.fetch_add(1, Ordering::Relaxed));
        self.create_database(&name).await?;
        let mut client = self.connect(&name).await?;
        client
            .batch_execute("SET lasect.metric_storage = 'native'")
            .await?;
        lasect_migrations::migrate(&mut client).await?;
        lasect_migrations::maintain(&client).await?;
        Ok(self.dsn(&name))
    }

    /// Stops the server immediately (like a crash); the data dir stays until Drop.
    pub fn stop(&self) -> Result<(), HarnessError> {
        self.run(
            self.command("pg_ctl")
                .args(["stop", "-m", "immediate", "-w", "-D"])
                .arg(self.data_dir()),
        )
    }

    /// Starts a stopped cluster again on the same port.
    pub fn restart(&self) -> Result<(), HarnessError> {
        self.pg_ctl_start()
    }

    fn pg_ctl_start(&self) -> Result<(), HarnessError> {
        self.run(
            self.command("pg_ctl")
                .args(["start", "-w", "-t", "60", "-D"])
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_path()),
        )
        .map_err(|e| match std::fs::read_to_string(self.log_path()) {
            Ok(log) => HarnessError::Other(format!("{e}\nserver log:\n{log}")),
            Err(_) => e,
        })
    }

    fn write_conf(&self, opts: &PgOptions) -> Result<(), HarnessError> {
        let mut conf = vec![
            ("listen_addresses".to_string(), "'127.0.0.1'".to_string()),
            ("port".into(), self.port.to_string()),
            (
                "unix_socket_directories".into(),
                format!("'{}'", self.socket_dir().display()),
            ),
            // Throwaway clusters: durability is not what these tests measure.
            ("fsync".into(), "off".into()),
            ("synchronous_commit".into(), "off".into()),
            ("full_page_writes".into(), "off".into()),
            ("shared_buffers".into(), "32MB".into()),
            ("max_connections".into(), "100".into()),
        ];
        if opts.stat_statements {
            conf.push((
                "shared_preload_libraries".into(),
                "'pg_stat_statements'".into(),
            ));
            conf.push(("track_io_timing".into(), "on".into()));
            conf.push(("pg_stat_statements.track".into(), "all".into()));
        }
        if opts.logical {
            conf.push(("wal_level".into(), "logical".into()));
            conf.push(("max_replication_slots".into(), "10".into()));
            conf.push(("max_wal_senders".into(), "10".into()));
        }
        if let Some(format) = opts.log_format {
            let dest = match format {
                LogFormat::Csv => "csvlog",
                LogFormat::Json => "jsonlog",
            };
            conf.push(("logging_collector".into(), "on".into()));
            conf.push(("log_destination".into(), format!("'stderr,{dest}'")));
            conf.push(("log_directory".into(), "'log'".into()));
        }
        if let Some(tls) = &opts.tls {
            let data = self.data_dir();
            self.write_private(&data.join("server.crt"), &tls.cert_pem)?;
            self.write_private(&data.join("server.key"), &tls.key_pem)?;
            conf.push(("ssl".into(), "on".into()));
            conf.push(("ssl_cert_file".into(), "'server.crt'".into()));
            conf.push(("ssl_key_file".into(), "'server.key'".into()));
            if opts.tls_only {
                let hba = "local all all trust\n\
                           hostssl all all 127.0.0.1/32 trust\n\
                           hostssl all all ::1/128 trust\n\
                           hostnossl all all all reject\n";
                self.write_private(&data.join("pg_hba.conf"), hba)?;
            }
        }
        conf.extend(opts.settings.iter().cloned());
        let body: String = conf.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        // postgresql.auto.conf is read last and is ours alone.
        let path = self.data_dir().join("postgresql.auto.conf");
        std::fs::write(&path, body).map_err(HarnessError::io("write postgresql.auto.conf"))?;
        if let Some(user) = &self.run_as {
            chown_to(&path, user)?;
        }
        Ok(())
    }

    /// Writes a file only the server's OS user may read (PostgreSQL refuses a
    /// key file that others can read).
    fn write_private(&self, path: &Path, body: &str) -> Result<(), HarnessError> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, body)
            .map_err(HarnessError::io(format!("write {}", path.display())))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(HarnessError::io(format!("chmod {}", path.display())))?;
        if let Some(user) = &self.run_as {
            chown_to(path, user)?;
        }
        Ok(())
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bindir.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn run(&self, cmd: &mut Command) -> Result<(), HarnessError> {
        let out = cmd
            .current_dir(self.root.path())
            .output()
            .map_err(HarnessError::io(format!("run {cmd:?}")))?;
        if out.status.success() {
            return Ok(());
        }
        Err(HarnessError::Command {
            command: format!("{cmd:?}"),
            status: out.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Best effort; the temp dir is removed after this by TempDir's Drop.
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(self.data_dir())
            .current_dir(self.root.path())
            .output();
    }
}

/// The programs the harness runs from the bindir.
const PROGRAMS: [&str; 4] = ["initdb", "postgres", "pg_ctl", "pg_basebackup"];

/// The PostgreSQL binaries: `$LASECT_PG_BINDIR`, else `pg_config --bindir`,
/// else the newest `/usr/lib/postgresql/*/bin`.
///
/// A `LASECT_PG_BINDIR` that does not hold the server programs is an error,
/// never a reason to look elsewhere: a run asked for one server (say
/// PostgreSQL 18, `make test`) must not pass silently against another.
pub(crate) fn pg_bindir() -> Result<PathBuf, HarnessError> {
    if let Some(dir) = std::env::var_os("LASECT_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        check_bindir(&dir)?;
        return Ok(dir);
    }
    pg_bindir_fallback()
}

fn pg_bindir_fallback() -> Result<PathBuf, HarnessError> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && dir.join("initdb").is_file() {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(HarnessError::io("find PostgreSQL (set LASECT_PG_BINDIR)"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, dir)| dir)
        .ok_or_else(|| HarnessError::Other("no PostgreSQL server binaries found".into()))
}

fn check_bindir(dir: &Path) -> Result<(), HarnessError> {
    use std::os::unix::fs::PermissionsExt;
    for program in PROGRAMS {
        let path = dir.join(program);
        let executable = std::fs::metadata(&path)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false);
        if !executable {
            return Err(HarnessError::Other(format!(
                "LASECT_PG_BINDIR={}: no executable {program} there \
                 (unset it to use the installed PostgreSQL, or run scripts/deps.sh --pg18)",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// `$LASECT_PG_MAJOR`: the major version every cluster of this run must
/// have (`make test` sets it next to `LASECT_PG_BINDIR`).
fn requested_major() -> Result<Option<String>, HarnessError> {
    match std::env::var("LASECT_PG_MAJOR") {
        Ok(major) if !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Some(major))
        }
        Ok(other) => Err(HarnessError::Other(format!(
            "LASECT_PG_MAJOR={other:?}: expected a major version such as 18"
        ))),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(HarnessError::Other(format!("LASECT_PG_MAJOR: {e}"))),
    }
}

/// A new data directory's `PG_VERSION` is the major version of the `initdb`
/// that made it, hence of the server that will run it.
fn check_major(data: &Path, want: &str, bindir: &Path) -> Result<(), HarnessError> {
    let got = std::fs::read_to_string(data.join("PG_VERSION"))
        .map_err(HarnessError::io("read PG_VERSION"))?;
    if got.trim() == want {
        return Ok(());
    }
    Err(HarnessError::Other(format!(
        "LASECT_PG_MAJOR={want} but {} made a PostgreSQL {} cluster \
         (point LASECT_PG_BINDIR at the PostgreSQL {want} binaries)",
        bindir.join("initdb").display(),
        got.trim()
    )))
}

/// `initdb` and `postgres` refuse to run as root: as root we run them as
/// the `postgres` OS user.
fn server_user() -> Result<Option<String>, HarnessError> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    match User::from_name("postgres") {
        Ok(Some(_)) => Ok(Some("postgres".into())),
        _ => Err(HarnessError::Other(
            "running as root needs an unprivileged `postgres` OS user".into(),
        )),
    }
}

fn chown_to(path: &Path, user: &str) -> Result<(), HarnessError> {
    let u = User::from_name(user)
        .ok()
        .flatten()
        .ok_or_else(|| HarnessError::Other(format!("no OS user {user}")))?;
    nix::unistd::chown(path, Some(u.uid), Some(u.gid))
        .map_err(|e| HarnessError::Other(format!("chown {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bindir_without_the_server_programs_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let err = check_bindir(dir.path()).expect_err("empty dir").to_string();
        assert!(err.contains("LASECT_PG_BINDIR="), "{err}");
        assert!(err.contains("no executable initdb"), "{err}");

        // Present but not executable is no better (a wheel unpacked without
        // its modes looks like this).
        for program in PROGRAMS {
            std::fs::write(dir.path().join(program), "").expect("write");
        }
        let err = check_bindir(dir.path())
            .expect_err("not executable")
            .to_string();
        assert!(err.contains("no executable initdb"), "{err}");

        let found = pg_bindir_fallback().expect("an installed PostgreSQL");
        check_bindir(&found).expect("the installed server programs pass");
    }

    #[test]
    fn a_cluster_of_another_major_version_is_refused() {
        let data = tempfile::tempdir().expect("dir");
        std::fs::write(data.path().join("PG_VERSION"), "15\n").expect("write");
        let bindir = Path::new("/usr/lib/postgresql/15/bin");
        check_major(data.path(), "15", bindir).expect("same major");
        let err = check_major(data.path(), "18", bindir)
            .expect_err("other major")
            .to_string();
        assert!(
            err.contains("LASECT_PG_MAJOR=18 but /usr/lib/postgresql/15/bin/initdb made a PostgreSQL 15 cluster"),
            "{err}"
        );
    }
}
