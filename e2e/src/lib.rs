//! Shared set-up of the end-to-end tests in `tests/`: a store cluster, TLS
//! material from the real `lasect-api ca init`, configuration files, and the
//! real `lasect-ingest`, `lasect-api` and `lasect-agent` processes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lasect_testkit::{
    ChildGuard, PgCluster, PgOptions, binary_path, free_port, without_inherited_lasect_env,
};

/// How long a process may take to start listening (a cold debug build on a
/// loaded 2-core machine is slow, and migrations run first).
pub const START_BOUND: Duration = Duration::from_secs(60);

/// A store cluster with its `lasect` database, TLS material for one agent,
/// and a temp dir for configs and state. Processes are started on demand.
pub struct Stack {
    pub store_pg: PgCluster,
    pub agent_id: String,
    pub ingest_port: u16,
    pub api_port: u16,
    /// An admin API token, created with `lasect-api admin create` and `admin token`.
    pub admin_token: String,
    /// The generated password of `admin`.
    pub admin_password: String,
    dir: tempfile::TempDir,
    /// The DSN ingest, the API and the admin commands use instead of the
    /// plain one ([`Stack::with_store`], e.g. with `sslmode=verify-full`).
    store_dsn_override: Option<String>,
}

impl Stack {
    pub async fn new(agent_id: &str) -> Self {
        let store_pg = PgCluster::start(PgOptions::default()).expect("store cluster");
        Self::with_store(agent_id, store_pg, None).await
    }

    /// A stack on a store cluster of the caller's; `store_dsn` (of the
    /// database `lasect`, created here) replaces the plain TCP DSN everywhere.
    pub async fn with_store(
        agent_id: &str,
        store_pg: PgCluster,
        store_dsn: Option<String>,
    ) -> Self {
        store_pg.create_database("lasect").await.expect("store db");
        let dir = tempfile::tempdir().expect("tempdir");
        run_ok(
            Command::new(binary_path("lasect-api"))
                .args(["ca", "init", "--dir"])
                .arg(dir.path().join("tls"))
                .args(["--agent", agent_id]),
        );
        let dsn = store_dsn.clone().unwrap_or_else(|| store_pg.dsn("lasect"));
        // There is no default password: the operator makes the first admin (this also
        // migrates the store), then a token for scripts.
        let created = run_ok(Command::new(binary_path("lasect-api")).args([
            "admin",
            "create",
            "--store-dsn",
            &dsn,
            "--username",
            "admin",
        ]));
        let admin_password = created
            .lines()
            .find_map(|l| l.strip_prefix("password (shown once, store it now): "))
            .expect("generated password printed")
            .to_owned();
        let admin_token = run_ok(Command::new(binary_path("lasect-api")).args([
            "admin",
            "token",
            "--store-dsn",
            &dsn,
            "--username",
            "admin",
            "--name",
            "e2e",
        ]))
        .trim()
        .to_owned();
        Self {
            store_pg,
            agent_id: agent_id.to_string(),
            ingest_port: free_port(),
            api_port: free_port(),
            admin_token,
            admin_password,
            dir,
            store_dsn_override: store_dsn,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn tls(&self) -> PathBuf {
        self.path("tls")
    }

    pub fn store_dsn(&self) -> String {
        self.store_dsn_override
            .clone()
            .unwrap_or_else(|| self.store_pg.dsn("lasect"))
    }

    pub async fn store(&self) -> tokio_postgres::Client {
        self.store_pg
            .connect("lasect")
            .await
            .expect("connect store")
    }

    /// Writes `ingest.toml` (with `extra` TOML appended) and spawns ingest
    /// without waiting for it.
    pub fn spawn_ingest(&self, extra: &str) -> ChildGuard {
        let t = self.tls();
        let t = t.display();
        let config = self.path("ingest.toml");
        write(
            &config,
            &format!(
                "listen = \"127.0.0.1:{}\"\nstore_dsn = \"{}\"\n{extra}\n\
                 [tls]\nca_file = \"{t}/ca.pem\"\ncert_file = \"{t}/ingest.pem\"\nkey_file = \"{t}/ingest.key\"\n",
                self.ingest_port,
                self.store_dsn()
            ),
        );
        let mut c = Command::new(binary_path("lasect-ingest"));
        c.arg("--config").arg(config);
        ChildGuard::spawn(c).expect("spawn ingest")
    }

    /// The DSN key file the API creates and ingest reads.
    pub fn secrets_key(&self) -> PathBuf {
        self.path("secrets.key")
    }

    /// The `[secrets]` table for ingest: the API's key file.
    pub fn secrets_toml(&self) -> String {
        format!(
            "[secrets]\nkey_file = \"{}\"\n",
            self.secrets_key().display()
        )
    }

    /// An API call as the admin: (status, JSON body or Null).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.api_as(&self.admin_token, method, path, body).await
    }

    /// An API call with the bearer `token` (none when empty): (status, JSON body or Null).
    pub async fn api_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let ca = std::fs::read(self.tls().join("ca.pem")).expect("ca");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).expect("ca pem"))
            .build()
            .expect("client");
        let url = format!(
            "https://127.0.0.1:{}/{}",
            self.api_port,
            path.trim_start_matches('/')
        );
        let mut request = client.request(method, url);
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("call the API");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("read the answer");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Polls `GET /api/v1/runs/{id}` until the run ends; returns it.
    pub async fn wait_run(&self, id: i64) -> serde_json::Value {
        let start = std::time::Instant::now();
        loop {
            let (status, run) = self
                .api(
                    reqwest::Method::GET,
                    &format!("api/v1/runs/{id}?wait=20"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{run}");
            if ["succeeded", "failed", "timed_out", "cancelled", "expired"]
                .contains(&run["status"].as_str().unwrap_or(""))
            {
                return run;
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "run {id} never ended: {run}"
            );
        }
    }

    /// Polls `GET /api/v1/migrations/{id}` until the fleet migration is no longer running;
    /// returns it.
    pub async fn wait_migration(&self, id: i64) -> serde_json::Value {
        let start = std::time::Instant::now();
        loop {
            let (_, m) = self
                .api(
                    reqwest::Method::GET,
                    &format!("api/v1/migrations/{id}"),
                    None,
                )
                .await;
            if m["status"] != "running" {
                return m;
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "migration {id} never ended: {m:#}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the API lists the instance `name` (agents report theirs
    /// once connected); returns its id.
    pub async fn instance_id(&self, name: &str) -> i64 {
        let start = std::time::Instant::now();
        loop {
            let (_, list) = self
                .api(reqwest::Method::GET, "api/v1/instances", None)
                .await;
            if let Some(i) = list["instances"]
                .as_array()
                .and_then(|l| l.iter().find(|i| i["name"] == name))
            {
                return i["id"].as_i64().expect("id");
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "instance {name} never appeared"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Sends a run as `token` (POST `api/v1/instances/{instance}/{route}`)
    /// and waits for its end; returns it.
    pub async fn run_as(
        &self,
        token: &str,
        instance: i64,
        route: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let (status, run) = self
            .api_as(
                token,
                reqwest::Method::POST,
                &format!("api/v1/instances/{instance}/{route}"),
                Some(body),
            )
            .await;
        // 202 while the run is not over, 200 when it already is.
        assert!(status == 200 || status == 202, "{route}: {status} {run}");
        self.wait_run(run["id"].as_i64().expect("run id")).await
    }

    /// A `sql` run as the admin, waited for.
    pub async fn sql_run(&self, instance: i64, body: serde_json::Value) -> serde_json::Value {
        self.run_as(&self.admin_token, instance, "sql", body).await
    }

    /// Page `page` of a run's result, as the admin.
    pub async fn run_page(&self, run: &serde_json::Value, page: u32) -> serde_json::Value {
        let (status, body) = self
            .api(
                reqwest::Method::GET,
                &format!("api/v1/runs/{}/result?page={page}", run["id"]),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// `lasect-api secrets rotate` on this stack's store and key file; its output.
    pub fn rotate_secrets(&self) -> String {
        run_ok(
            Command::new(binary_path("lasect-api"))
                .args(["secrets", "rotate", "--store-dsn", &self.store_dsn()])
                .arg("--key-file")
                .arg(self.secrets_key()),
        )
    }

    /// [`Self::spawn_api`] and wait until it listens.
    pub fn start_api(&self) -> ChildGuard {
        let mut api = self.spawn_api();
        wait_listening(&mut api);
        api
    }

    /// [`Self::spawn_ingest`] and wait until it listens.
    pub fn start_ingest(&self, extra: &str) -> ChildGuard {
        let mut ingest = self.spawn_ingest(extra);
        wait_listening(&mut ingest);
        ingest
    }

    /// [`Self::spawn_ingest`] (with `extra`) and [`Self::spawn_api`], both started before either
    /// is waited for, so they come up side by side; returns (ingest, api) once both listen.
    pub fn start_ingest_and_api(&self, extra: &str) -> (ChildGuard, ChildGuard) {
        let mut ingest = self.spawn_ingest(extra);
        let mut api = self.spawn_api();
        wait_listening(&mut ingest);
        wait_listening(&mut api);
        (ingest, api)
    }

    /// Writes `api.toml` and spawns `lasect-api serve` without waiting.
    pub fn spawn_api(&self) -> ChildGuard {
        ChildGuard::spawn(self.api_command("")).expect("spawn api")
    }

    /// Writes `api.toml` (listen, store, TLS and secrets key, with `extra` TOML appended, e.g. an
    /// `[alerts]` table) and returns the `lasect-api serve` command for it, not yet started.
    pub fn api_command(&self, extra: &str) -> Command {
        let t = self.tls();
        let t = t.display();
        let config = self.path("api.toml");
        write(
            &config,
            &format!(
                "listen = \"127.0.0.1:{}\"\nstore_dsn = \"{}\"\n\
                 [tls]\ncert_file = \"{t}/api.pem\"\nkey_file = \"{t}/api.key\"\n\
                 [secrets]\nkey_file = \"{}\"\n{extra}",
                self.api_port,
                self.store_dsn(),
                self.secrets_key().display()
            ),
        );
        let mut c = Command::new(binary_path("lasect-api"));
        c.arg("serve").arg("--config").arg(config);
        c
    }

    /// Writes `agent.toml` for an agent pushing to 127.0.0.1:`port` (ingest,
    /// or a proxy in front of it). `body` is the rest of the file: `[collect]`,
    /// `[[instances]]` and any other section.
    pub fn agent_config(&self, port: u16, body: &str) -> PathBuf {
        let t = self.tls();
        let t = t.display();
        let id = &self.agent_id;
        let config = self.path("agent.toml");
        write(
            &config,
            &format!(
                "state_dir = \"{state}\"\n\
                 [ingest]\nendpoint = \"https://127.0.0.1:{port}\"\nserver_name = \"lasect-ingest\"\n\
                 [tls]\nca_file = \"{t}/ca.pem\"\ncert_file = \"{t}/agents/{id}.pem\"\nkey_file = \"{t}/agents/{id}.key\"\n\
                 {body}",
                state = self.agent_state().display(),
            ),
        );
        config
    }

    /// Writes `agent.toml` like [`Self::agent_config`] but without `[tls]
    /// cert_file`/`key_file`, so the agent uses its enrolled identity.
    pub fn enrolled_agent_config(&self, port: u16, body: &str) -> PathBuf {
        let config = self.path("agent.toml");
        write(
            &config,
            &format!(
                "state_dir = \"{state}\"\n\
                 [ingest]\nendpoint = \"https://127.0.0.1:{port}\"\nserver_name = \"lasect-ingest\"\n\
                 [tls]\nca_file = \"{ca}\"\n\
                 {body}",
                state = self.agent_state().display(),
                ca = self.tls().join("ca.pem").display(),
            ),
        );
        config
    }

    /// The `[enrollment]` table for ingest (the stack's CA signs), with
    /// certificates valid `validity_secs`.
    pub fn enrollment_toml(&self, validity_secs: u64) -> String {
        let t = self.tls();
        format!(
            "[enrollment]\nca_cert = \"{}\"\nca_key = \"{}\"\ncert_validity_secs = {validity_secs}\n",
            t.join("ca.pem").display(),
            t.join("ca.key").display()
        )
    }

    /// Stores an enrollment token the way the API does (hash only) and
    /// returns the secret.
    pub async fn enrollment_token(
        &self,
        bound_to: Option<&str>,
        max_uses: i32,
        expires_in: &str,
    ) -> String {
        let token = lasect_pki::new_token(lasect_pki::ENROLLMENT_TOKEN_PREFIX);
        self.store()
            .await
            .execute(
                "INSERT INTO enrollment_tokens (token_hash, agent_id, max_uses, expires_at, created_by)
                 VALUES ($1, $2, $3, now() + $4::text::interval, 'e2e')",
                &[&lasect_pki::hash_token(&token), &bound_to, &max_uses, &expires_in],
            )
            .await
            .expect("insert enrollment token");
        token
    }

    /// Runs the real `lasect-agent enroll` against this stack's ingest,
    /// storing the identity in `state_dir`; returns its output.
    pub fn enroll(&self, token: &str, agent_id: &str, state_dir: &Path) -> std::process::Output {
        let mut cmd = Command::new(binary_path("lasect-agent"));
        cmd.args(["enroll", "--ingest"])
            .arg(format!("https://127.0.0.1:{}", self.ingest_port))
            .args(["--server-name", "lasect-ingest", "--ca-file"])
            .arg(self.tls().join("ca.pem"))
            .args(["--agent-id", agent_id, "--state-dir"])
            .arg(state_dir)
            // The token through the environment, as documented.
            .env("LASECT_ENROLL_TOKEN", token);
        without_inherited_lasect_env(&mut cmd)
            .output()
            .expect("run lasect-agent enroll")
    }

    pub fn agent_state(&self) -> PathBuf {
        self.path("agent-state")
    }

    /// Spawns the agent with the config written by [`Self::agent_config`].
    pub fn start_agent(&self, env: &[(&str, &str)]) -> ChildGuard {
        let mut c = Command::new(binary_path("lasect-agent"));
        c.arg("--config").arg(self.path("agent.toml"));
        for (k, v) in env {
            c.env(k, v);
        }
        ChildGuard::spawn(c).expect("spawn agent")
    }

    /// Runs the `lasect` CLI against this stack's API as the admin; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = self.cli_command(args);
        run_ok(cmd.env("LASECT_TOKEN", &self.admin_token))
    }

    /// The `lasect` CLI pointed at this stack's API, without a token, with HOME in the stack's
    /// temp dir (never the config file of the machine's user).
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary_path("lasect"));
        cmd.args(args)
            .env("LASECT_URL", format!("https://127.0.0.1:{}", self.api_port))
            .env("LASECT_CA_FILE", self.tls().join("ca.pem"))
            .env_remove("LASECT_TOKEN")
            .env("HOME", self.dir.path())
            .env_remove("XDG_CONFIG_HOME");
        cmd
    }
}

/// The `[alerts]` table (for [`Stack::api_command`]) of an API that evaluates its rules every
/// second, for the tests that wait for alert states.
pub const ALERTS_EVERY_SECOND: &str = "[alerts]\nevaluation_interval_secs = 1\n";

/// The unprivileged role the e2e agents' read-only runs log in as (`run_dsn`,
/// docs/CONTROL.md "Read-only runs"): the harness clusters' DSN is the
/// superuser `postgres`, whose read-only runs the agent refuses.
pub const RUN_ROLE: &str = "lasect_run";

/// Every operation class of `[control] allow` (the default allows only the
/// read-only ones), for tests that exercise writes, DDL, import, dump or
/// extension changes.
pub const ALLOW_ALL: &str = "allow = [\"sql\", \"sql_write\", \"explain\", \"explain_analyze\", \
    \"schema\", \"table_data\", \"export\", \"import\", \"dump\", \"extensions\", \
    \"extensions_write\", \"ddl\"]";

/// Creates [`RUN_ROLE`] on `cluster` if missing (LOGIN, granted only
/// `pg_read_all_data` and `pg_monitor`, the recommended run role) and returns
/// its DSN on `dbname`.
pub async fn run_role_dsn(cluster: &PgCluster, dbname: &str) -> String {
    let db = cluster
        .connect("postgres")
        .await
        .expect("connect as postgres");
    db.batch_execute(&format!(
        "DO $$ BEGIN
             IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{RUN_ROLE}') THEN
                 CREATE ROLE {RUN_ROLE} LOGIN;
             END IF;
         END $$;
         GRANT pg_read_all_data, pg_monitor TO {RUN_ROLE};"
    ))
    .await
    .expect("create the run role");
    format!(
        "host=127.0.0.1 port={} user={RUN_ROLE} dbname={dbname}",
        cluster.port()
    )
}

/// An `[[instances]]` table for `cluster`'s `dbname`: monitored as the
/// superuser `postgres`, read-only runs as [`RUN_ROLE`].
pub async fn instance_toml(name: &str, cluster: &PgCluster, dbname: &str) -> String {
    format!(
        "[[instances]]\nname = \"{name}\"\ndsn = \"{}\"\nrun_dsn = \"{}\"\n",
        cluster.dsn(dbname),
        run_role_dsn(cluster, dbname).await
    )
}

/// Waits for the "… listening on …" line every server prints once bound.
pub fn wait_listening(child: &mut ChildGuard) {
    child
        .wait_for_line("listening", START_BOUND)
        .expect("server listening");
}

pub fn write(path: &Path, body: &str) {
    std::fs::write(path, body).expect("write file");
}

/// Runs a command that must succeed, without the test's inherited `LASECT_*`
/// variables (as [`ChildGuard`] does); returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = without_inherited_lasect_env(cmd)
        .output()
        .expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
