//! The real `lasect` binary against a real `lasect-api` router served over HTTPS (certificate
//! from lasect-pki) on 127.0.0.1, backed by a testkit store with inserted rows.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use lasect_api::server::{install_crypto_provider, load_tls, serve_on, store_pool};
use lasect_api::store_dsn::StoreDsn;
use lasect_api::{AppState, router};
use lasect_pki::CertificateAuthority;
use lasect_testkit::{PgCluster, PgOptions, free_port};
use serde_json::Value;
use tokio::sync::oneshot;

const BIN: &str = env!("CARGO_BIN_EXE_lasect");

struct Api {
    _pg: PgCluster,
    pool: sqlx::PgPool,
    /// An admin API token.
    token: String,
    _dir: tempfile::TempDir,
    url: String,
    ca_file: PathBuf,
    t2: DateTime<Utc>,
    _stop: oneshot::Sender<()>,
}

async fn start_api() -> Api {
    install_crypto_provider();
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    let dsn = pg.store_dsn().await.expect("migrated store");
    let pool = store_pool(&StoreDsn::new(dsn), Duration::from_secs(10)).expect("pool");
    let t2 = Utc::now().trunc_subsecs(0) - TimeDelta::seconds(30);
    seed(&pool, t2).await;
    let token = admin_token(&pool).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let ca = CertificateAuthority::generate("Test CA").expect("CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).expect("write CA");
    let issued = ca
        .issue_server(
            "lasect-api",
            &["127.0.0.1".to_owned()],
            Duration::from_secs(3600),
        )
        .expect("server cert");
    let (cert, key) = issued.write(dir.path(), "api").expect("write server cert");
    let tls = load_tls(&cert, &key).await.expect("TLS config");

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let (stop, stopped) = oneshot::channel::<()>();
    // The DSN key file is re-read when it changes: it lives as long as `dir`.
    let keyring = lasect_pki::secrets::KeyFile::open_or_create(&dir.path().join("secrets.key"))
        .expect("secrets key");
    // A live stream re-checks its caller every second: a revoked token ends it at once.
    let auth = lasect_api::auth::AuthState::new(
        lasect_api::auth::jwt::JwtKeys::ephemeral(),
        lasect_api::auth::AuthConfig {
            live_recheck_secs: 1,
            ..lasect_api::auth::AuthConfig::default()
        },
    );
    let app = router(AppState::with_auth(pool.clone(), auth).with_secrets(keyring));
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = serve_on(listener, app, Some(tls), shutdown).await {
            eprintln!("test API stopped: {e:#}");
        }
    });
    Api {
        _pg: pg,
        pool,
        token,
        _dir: dir,
        url: format!("https://127.0.0.1:{port}"),
        ca_file,
        t2,
        _stop: stop,
    }
}

/// User `admin` (password [`ADMIN_PASSWORD`]) and an API token of it.
async fn admin_token(pool: &sqlx::PgPool) -> String {
    let id = lasect_api::auth::users::create_user(
        pool,
        "admin",
        ADMIN_PASSWORD.to_owned(),
        Some(lasect_api::auth::Role::Admin),
        "test",
    )
    .await
    .expect("admin");
    let token = lasect_pki::new_token(lasect_pki::API_TOKEN_PREFIX);
    sqlx::query(
        "INSERT INTO api_tokens (user_id, name, token_hash, role) VALUES ($1, 'test', $2, 'admin')",
    )
    .bind(id)
    .bind(lasect_pki::hash_token(&token))
    .execute(pool)
    .await
    .expect("token");
    token
}

const ADMIN_PASSWORD: &str = "the admin's password";

async fn seed(pool: &sqlx::PgPool, t2: DateTime<Utc>) {
    sqlx::raw_sql(
        "INSERT INTO agents (id) VALUES ('db-01'), ('db-02');
         INSERT INTO instances (name, agent_id, server_version_num, version, in_recovery, labels,
                                last_seen)
         VALUES ('main', 'db-01', 170002, '17.2', false, '{\"env\": \"prod\"}', now()),
                ('main', 'db-02', 160004, '16.4', true, '{}', NULL),
                ('reports', 'db-01', NULL, NULL, NULL, '{}', NULL);",
    )
    .execute(pool)
    .await
    .expect("seed instances");
    let t1 = t2 - TimeDelta::seconds(30);
    for (instance, time, datname, commits, size) in [
        (1_i64, t1, "app", 10_i64, 1_000_i64),
        (1, t2, "app", 20, 8_192_000),
        (1, t2, "postgres", 21, 7_000_000),
        (3, t2, "reporting", 99, 3 * 1024 * 1024 * 1024),
    ] {
        sqlx::query(
            "INSERT INTO metric_database (time, instance_id, datid, datname, numbackends,
                 xact_commit, xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched,
                 tup_inserted, tup_updated, tup_deleted, conflicts, temp_files, temp_bytes,
                 deadlocks, size_bytes)
             VALUES ($1, $2, 1, $3, 3, $4, 2, 5, 995, 100, 50, 7, 6, 5, 0, 1, 2048, 1, $5)",
        )
        .bind(time)
        .bind(instance)
        .bind(datname)
        .bind(commits)
        .bind(size)
        .execute(pool)
        .await
        .expect("insert metric_database");
    }
    sqlx::query(
        "INSERT INTO metric_host_cpu (time, agent_id, cpu_count, usage_percent, load1, load5, load15)
         VALUES ($1, 'db-02', 8, 12.5, 1.25, 1.0, 0.75)",
    )
    .bind(t2)
    .execute(pool)
    .await
    .expect("insert metric_host_cpu");
}

impl Api {
    fn lasect(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("LASECT_URL", &self.url)
            .env("LASECT_CA_FILE", &self.ca_file)
            .env("LASECT_TOKEN", &self.token)
            // No config file of the machine's user: login tests write their own.
            .env("HOME", self._dir.path())
            .env_remove("XDG_CONFIG_HOME");
        cmd
    }
}

/// Runs the binary off the async threads so the in-process API keeps serving.
async fn run(mut cmd: Command) -> (Output, String, String) {
    let output = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run lasect");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

async fn ok(cmd: Command) -> String {
    let (output, stdout, stderr) = run(cmd).await;
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    // Shown with --nocapture or when the test fails.
    eprintln!("{stdout}");
    stdout
}

/// Runs a command that must fail with exit code `code`; returns its stderr.
async fn fails_with(cmd: Command, code: i32) -> String {
    let (output, stdout, stderr) = run(cmd).await;
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.is_empty(), "nothing on stdout on failure: {stdout}");
    eprintln!("{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_list_as_table_and_json() {
    let api = start_api().await;
    let table = ok(api.lasect(&["instance", "list"])).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    for header in [
        "id",
        "agent_id",
        "name",
        "version",
        "role",
        "last_seen",
        "labels",
    ] {
        assert!(lines[0].contains(header), "{table}");
    }
    let cells = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        cells(lines[1])[..5],
        ["1", "db-01", "main", "17.2", "primary"]
    );
    assert!(lines[1].ends_with("env=prod"), "{table}");
    assert_eq!(
        cells(lines[2]),
        ["3", "db-01", "reports", "-", "-", "-", "-"]
    );
    assert_eq!(
        cells(lines[3])[..5],
        ["2", "db-02", "main", "16.4", "standby"]
    );

    let json = ok(api.lasect(&["instance", "list", "--output", "json"])).await;
    let value: Value = serde_json::from_str(&json).expect("JSON output");
    assert_eq!(value["instances"].as_array().map(Vec::len), Some(3));
    assert_eq!(value["instances"][0]["labels"]["env"], "prod");
    assert!(json.contains("\n  \"instances\""), "pretty-printed: {json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_resolves_names_and_renders() {
    let api = start_api().await;
    let t2 = api.t2.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);

    // "reports" is unique; the table shows the latest sample time once.
    let out = ok(api.lasect(&["metrics", "show", "--instance", "reports"])).await;
    assert!(out.starts_with("db-01/reports (id 3): database\n"), "{out}");
    assert_eq!(out.matches(&format!("time: {t2}")).count(), 1, "{out}");
    for header in [
        "datname",
        "numbackends",
        "xact_commit",
        "xact_rollback",
        "blks_hit_ratio",
        "tup_returned",
        "tup_fetched",
        "tup_inserted",
        "tup_updated",
        "tup_deleted",
        "deadlocks",
        "temp_bytes",
        "size_bytes",
    ] {
        assert!(out.contains(header), "{header}: {out}");
    }
    let row = out
        .lines()
        .find(|l| l.contains("reporting"))
        .expect("reporting row");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "reporting",
            "3",
            "99",
            "2",
            "99.5%",
            "100",
            "50",
            "7",
            "6",
            "5",
            "1",
            "2.0",
            "KiB",
            "3.0",
            "GiB"
        ]
    );

    // "main" is on two agents: refused, naming both.
    let err = fails_with(api.lasect(&["metrics", "show", "--instance", "main"]), 1).await;
    assert!(
        err.starts_with("error: instance name \"main\" is on several agents"),
        "{err}"
    );
    assert!(err.contains("db-01/main, db-02/main"), "{err}");

    // agent/name and the numeric id pick one; --limit 2 goes two sample times back.
    let out = ok(api.lasect(&["metrics", "show", "-i", "db-01/main", "--limit", "2"])).await;
    assert_eq!(out.matches("time: ").count(), 2, "{out}");
    assert!(out.contains("7.8 MiB") && out.contains("postgres"), "{out}");
    let by_id = ok(api.lasect(&["metrics", "show", "-i", "1", "--limit", "2"])).await;
    assert_eq!(out, by_id);

    // Host families: generic table of all columns.
    let out = ok(api.lasect(&[
        "metrics",
        "show",
        "-i",
        "db-02/main",
        "--family",
        "host_cpu",
    ]))
    .await;
    assert!(
        out.contains("usage_percent") && out.contains("12.50") && out.contains(&t2),
        "{out}"
    );

    // JSON is the API's answer, pretty-printed.
    let json = ok(api.lasect(&["metrics", "show", "-i", "reports", "-o", "json"])).await;
    let value: Value = serde_json::from_str(&json).expect("JSON output");
    assert_eq!(value["family"], "database");
    assert_eq!(value["instance"]["name"], "reports");
    assert_eq!(value["rows"][0]["size_bytes"], 3_i64 * 1024 * 1024 * 1024);
    assert_eq!(value["columns"][0], "time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_clear() {
    let api = start_api().await;
    let err = fails_with(api.lasect(&["metrics", "show", "--instance", "999"]), 4).await;
    assert_eq!(err, "error: no instance with id 999 (not_found)\n");
    let err = fails_with(api.lasect(&["metrics", "show", "--instance", "nope"]), 1).await;
    assert!(
        err.starts_with("error: no instance named \"nope\""),
        "{err}"
    );
    let err = fails_with(
        api.lasect(&["metrics", "show", "-i", "1", "--family", "bogus"]),
        2,
    )
    .await;
    assert!(err.starts_with("error: unknown family \"bogus\""), "{err}");
    assert!(err.trim_end().ends_with("(unknown_family)"), "{err}");
    let err = fails_with(
        api.lasect(&["metrics", "show", "-i", "1", "--limit", "5000"]),
        2,
    )
    .await;
    assert!(err.contains("(invalid_query)"), "{err}");

    // Environment problems.
    let mut cmd = api.lasect(&["instance", "list"]);
    cmd.env_remove("LASECT_URL");
    let err = fails_with(cmd, 2).await;
    assert!(err.starts_with("error: no API URL"), "{err}");
    let mut cmd = api.lasect(&["instance", "list"]);
    cmd.env("LASECT_URL", "ftp://127.0.0.1");
    assert!(fails_with(cmd, 2).await.contains("http:// or https://"));

    // Nothing listens there.
    let dead = format!("https://127.0.0.1:{}", free_port());
    let mut cmd = api.lasect(&["instance", "list"]);
    cmd.env("LASECT_URL", &dead);
    let err = fails_with(cmd, 5).await;
    assert!(
        err.starts_with(&format!("error: could not reach the API at {dead}/")),
        "{err}"
    );

    // The API's certificate is not signed by the CA we were told to trust.
    let other = CertificateAuthority::generate("Other CA").expect("other CA");
    let other_file = api._dir.path().join("other-ca.pem");
    std::fs::write(&other_file, other.cert_pem()).expect("write other CA");
    let mut cmd = api.lasect(&["instance", "list"]);
    cmd.env("LASECT_CA_FILE", &other_file);
    let err = fails_with(cmd, 5).await;
    assert!(
        err.contains("could not reach the API at https://127.0.0.1"),
        "{err}"
    );
    assert!(
        err.to_lowercase().contains("certificate"),
        "says why: {err}"
    );

    // Missing CA file.
    let mut cmd = api.lasect(&["instance", "list"]);
    cmd.env("LASECT_CA_FILE", "/nonexistent/ca.pem");
    assert!(
        fails_with(cmd, 1)
            .await
            .contains("read LASECT_CA_FILE /nonexistent/ca.pem")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_then_admin_commands_with_exit_codes() {
    let api = start_api().await;
    let home = api._dir.path();
    let config = home.join(".config/lasect/config.toml");

    // No credentials at all: an auth error (3).
    let mut cmd = api.lasect(&["instance", "list"]);
    cmd.env_remove("LASECT_TOKEN");
    let err = fails_with(cmd, 3).await;
    assert!(err.contains("(unauthenticated)"), "{err}");

    // Wrong password: 3, and no config file is written.
    let mut cmd = api.lasect(&["login", "--username", "admin", "--password-stdin"]);
    cmd.env_remove("LASECT_TOKEN");
    let err = fails_with(with_stdin(cmd, "not the password\n"), 3).await;
    assert!(err.contains("invalid_credentials"), "{err}");
    assert!(!config.exists());

    // Login writes the URL, CA file and an API token, 0600; later commands need no env.
    let mut cmd = api.lasect(&["login", "--username", "admin", "--password-stdin"]);
    cmd.env_remove("LASECT_TOKEN");
    let out = ok(with_stdin(cmd, &format!("{ADMIN_PASSWORD}\n"))).await;
    assert!(out.contains("logged in as admin (admin)"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&config)
        .expect("config")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&config).expect("read config");
    assert!(
        text.contains("token = \"lsat_") && text.contains(&api.url),
        "{text}"
    );
    let bare = |args: &[&str]| {
        let mut cmd = api.lasect(args);
        cmd.env_remove("LASECT_TOKEN")
            .env_remove("LASECT_URL")
            .env_remove("LASECT_CA_FILE");
        cmd
    };
    let out = ok(bare(&["instance", "list"])).await;
    assert!(out.contains("reports"), "{out}");
    // A flag wins over the config file.
    let err = fails_with(bare(&["--token", "lsat_nope", "instance", "list"]), 3).await;
    assert!(err.contains("malformed API token"), "{err}");

    // Users.
    let out = ok(with_stdin(
        bare(&[
            "user",
            "create",
            "-u",
            "vic",
            "--role",
            "viewer",
            "--password-stdin",
        ]),
        "vic's long password\n",
    ))
    .await;
    assert!(out.contains("vic") && !out.contains("generated"), "{out}");
    let out = ok(bare(&[
        "user",
        "create",
        "-u",
        "sam",
        "--grant",
        "env=prod:user",
        "-o",
        "json",
    ]))
    .await;
    let created: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(created["user"]["grants"][0]["role"], "user");
    assert!(created["generated_password"].is_string());
    let out = ok(bare(&["user", "list", "-o", "json"])).await;
    let users: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(users["users"].as_array().map(Vec::len), Some(3));
    ok(bare(&["user", "set-role", "sam", "--role", "user"])).await;
    fails_with(bare(&["user", "set-role", "nobody", "--role", "user"]), 4).await;
    fails_with(bare(&["user", "set-role", "sam", "--role", "root"]), 2).await;
    fails_with(bare(&["user", "create", "-u", "Bad Name"]), 2).await;
    let out = ok(bare(&["user", "disable", "sam"])).await;
    assert!(out.contains("disabled"), "{out}");

    // Tokens: a viewer token is refused admin commands with 3.
    let out = ok(bare(&[
        "token", "create", "--name", "ro", "--role", "viewer", "-o", "json",
    ]))
    .await;
    let created: Value = serde_json::from_str(&out).expect("json");
    let viewer_token = created["secret"].as_str().expect("secret").to_owned();
    let id = created["token"]["id"].as_i64().expect("id").to_string();
    let err = fails_with(bare(&["--token", &viewer_token, "user", "list"]), 3).await;
    assert!(err.contains("(forbidden)"), "{err}");
    let out = ok(bare(&["token", "list"])).await;
    assert!(out.contains("ro") && !out.contains(&viewer_token), "{out}");
    ok(bare(&["token", "revoke", &id])).await;
    fails_with(bare(&["--token", &viewer_token, "instance", "list"]), 3).await;
    fails_with(bare(&["token", "revoke", "999999"]), 4).await;

    // Agents.
    let out = ok(bare(&["agent", "list", "-o", "json"])).await;
    let agents: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(agents["agents"][0]["id"], "db-01");
    let out = ok(bare(&[
        "agent", "token", "create", "--ttl", "1h", "--uses", "2",
    ]))
    .await;
    assert!(out.contains("lset_"), "{out}");
    fails_with(bare(&["agent", "token", "create", "--ttl", "soon"]), 2).await;
    let out = ok(bare(&["agent", "disable", "db-02", "-o", "json"])).await;
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["disabled"],
        true
    );
    fails_with(bare(&["agent", "disable", "nope"]), 4).await;

    // Audit: every change above, with its actor.
    let out = ok(bare(&["audit", "list", "--since", "1h", "-o", "json"])).await;
    let audit: Value = serde_json::from_str(&out).expect("json");
    let entries = audit["entries"].as_array().expect("entries");
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "POST /api/v1/agents/{id}/disable"
                && e["actor"] == "admin"
                && e["outcome"] == "success")
    );
    // The wrong password above is not among them: refused logins are counted per source and
    // minute (`auth_failures`), not audited one by one.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE actor = 'admin'")
        .fetch_one(&api.pool)
        .await
        .expect("count");
    assert!(rows >= 10, "{rows}");
    let out = ok(bare(&["audit", "list", "--actor", "admin"])).await;
    assert!(out.contains("POST /api/v1/users"), "{out}");
    fails_with(bare(&["audit", "list", "--since", "whenever"]), 2).await;

    // Usage errors from clap are 2 as well.
    fails_with(bare(&["user", "frobnicate"]), 2).await;
}

/// The commands that read the API's answers as its own types (`lasect_api_contract`): each
/// answer parsed, shown as a table and as JSON, and what they send taken by the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_admin_commands_read_every_answer() {
    let api = start_api().await;
    let json = |out: &str| serde_json::from_str::<Value>(out).expect("json");

    // A password given on stdin reaches the API as given: the new user can log in with it.
    ok(with_stdin(
        api.lasect(&[
            "user",
            "create",
            "-u",
            "ria",
            "--role",
            "viewer",
            "--password-stdin",
        ]),
        "ria's long password\n",
    ))
    .await;
    let mut cmd = api.lasect(&["login", "--username", "ria", "--password-stdin"]);
    cmd.env_remove("LASECT_TOKEN");
    let out = ok(with_stdin(cmd, "ria's long password\n")).await;
    assert!(out.contains("logged in as ria (viewer)"), "{out}");
    let out = ok(api.lasect(&[
        "user",
        "set-role",
        "ria",
        "--role",
        "viewer",
        "--grant",
        "env=prod:user",
    ]))
    .await;
    assert!(out.contains("ria") && out.contains("env=prod"), "{out}");
    let out = ok(api.lasect(&["user", "list"])).await;
    assert!(out.contains("ria") && out.contains("admin"), "{out}");

    // Enrollment tokens: created (table), listed, revoked.
    let out = ok(api.lasect(&[
        "agent",
        "token",
        "create",
        "--ttl",
        "2h",
        "--uses",
        "3",
        "--agent-id",
        "db-09",
    ]))
    .await;
    assert!(
        out.contains("enrollment token (shown once): lset_")
            && out.contains("uses: 3")
            && out.contains("agent: db-09"),
        "{out}"
    );
    let listed = json(&ok(api.lasect(&["agent", "token", "list", "-o", "json"])).await);
    let token = &listed["tokens"][0];
    assert_eq!(token["agent_id"], "db-09");
    assert_eq!(token["state"], "active");
    assert!(token.get("token").is_none(), "{token}");
    let id = token["id"].as_i64().expect("id").to_string();
    let out = ok(api.lasect(&["agent", "token", "revoke", &id])).await;
    assert!(out.contains("revoked"), "{out}");
    let out = ok(api.lasect(&["agent", "token", "list"])).await;
    assert!(out.contains("revoked") && out.contains("db-09"), "{out}");

    // Certificates of an agent: listed and revoked.
    sqlx::query(
        "INSERT INTO agent_certificates (serial, agent_id, not_before, not_after, reason) \
         VALUES ('0a1b2c', 'db-01', now() - interval '1 day', now() + interval '89 days', 'enroll')",
    )
    .execute(&api.pool)
    .await
    .expect("certificate");
    let out = ok(api.lasect(&["agent", "cert", "list", "db-01"])).await;
    assert!(out.contains("0a1b2c") && out.contains("enroll"), "{out}");
    let revoked =
        json(&ok(api.lasect(&["agent", "cert", "revoke", "db-01", "0a1b2c", "-o", "json"])).await);
    assert_eq!(revoked["serial"], "0a1b2c");
    assert_eq!(revoked["revoke_reason"], "revoked");

    // Agents and the audit log as tables.
    let out = ok(api.lasect(&["agent", "disable", "db-02"])).await;
    assert!(out.contains("db-02") && out.contains("true"), "{out}");
    let out = ok(api.lasect(&["agent", "list"])).await;
    assert!(out.contains("db-01") && out.contains("db-02"), "{out}");
    let out = ok(api.lasect(&[
        "audit",
        "list",
        "--action",
        "POST /api/v1/agents/{id}/disable",
    ]))
    .await;
    assert!(out.contains("admin") && out.contains("success"), "{out}");

    // Alerts: none yet; a silence added, listed and removed.
    let alerts = json(&ok(api.lasect(&["alert", "list", "-o", "json"])).await);
    assert_eq!(alerts, serde_json::json!({"alerts": []}));
    let history = json(&ok(api.lasect(&["alert", "history", "-o", "json"])).await);
    assert_eq!(history, serde_json::json!({"events": []}));
    let out = ok(api.lasect(&[
        "alert",
        "silence",
        "add",
        "--matchers",
        "env=staging",
        "--duration",
        "2h",
        "--starts-in",
        "1h",
        "--comment",
        "maintenance window",
    ]))
    .await;
    assert!(
        out.starts_with("silence ") && out.contains(" until "),
        "{out}"
    );
    let listed = json(&ok(api.lasect(&["alert", "silence", "list", "-o", "json"])).await);
    let silence = &listed["silences"][0];
    assert_eq!(silence["matchers"], "env=staging");
    assert_eq!(silence["active"], false, "it starts in an hour");
    let id = silence["id"].as_i64().expect("id").to_string();
    let out = ok(api.lasect(&["alert", "silence", "remove", &id])).await;
    assert_eq!(out, format!("silence {id} removed\n"));
}

/// Gives `cmd` `input` on stdin, through a file in the test's temp dir.
fn with_stdin(mut cmd: Command, input: &str) -> Command {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("lasect-cli-stdin-{}-{n}", std::process::id()));
    std::fs::write(&path, input).expect("write stdin");
    cmd.stdin(std::fs::File::open(&path).expect("open stdin"));
    // The open handle keeps the content readable.
    let _ = std::fs::remove_file(&path);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_series_and_top_queries() {
    let api = start_api().await;

    // Series of the last 15 minutes in 1-second buckets: `app` has rows at t2 - 30 s and t2
    // (xact_commit 10 then 20: the bucket of t2 has a rate of 10 over 30 s).
    let json = ok(api.lasect(&[
        "metrics", "show", "-i", "1", "--since", "15m", "--step", "1s", "-o", "json",
    ]))
    .await;
    let body: Value = serde_json::from_str(&json).expect("JSON output");
    assert_eq!(body["family"], "database");
    assert_eq!(body["step_seconds"], 1);
    let series = body["series"].as_array().expect("series");
    let app = series
        .iter()
        .find(|s| s["key"]["datname"] == "app")
        .expect("app series");
    let points = app["points"].as_array().expect("points");
    let rows: i64 = points
        .iter()
        .map(|p| p["row_count"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(rows, 2, "{app}");
    let last = points.last().expect("a point");
    let rate = last["xact_commit"]
        .as_f64()
        .expect("rate in the bucket of t2");
    assert!((rate - 10.0 / 30.0).abs() < 1e-9, "{rate}");

    let table = ok(api.lasect(&[
        "metrics", "show", "-i", "1", "--since", "15m", "--step", "1m",
    ]))
    .await;
    assert!(
        table.starts_with("db-01/main (id 1): database from "),
        "{table}"
    );
    assert!(
        table.contains("xact_commit/s") && table.contains("datname"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.trim_start().starts_with("postgres")),
        "{table}"
    );

    // Usage errors are caught by the CLI (exit 2); a request the server refuses as bad is 2 too.
    for args in [
        &["metrics", "show", "-i", "1", "--since", "15x"][..],
        &[
            "metrics", "show", "-i", "1", "--since", "15m", "--limit", "2",
        ][..],
        &["metrics", "show", "-i", "1", "--step", "1m"][..],
        &["queries", "top", "-i", "1", "--by", "speed"][..],
        &["queries", "top", "-i", "1", "--limit", "0"][..],
        &["run", "watch", "0"][..],
        &["run", "watch", "twelve"][..],
    ] {
        let (output, stdout, stderr) = run(api.lasect(args)).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stdout} {stderr}");
    }
    let stderr = fails_with(
        api.lasect(&[
            "metrics", "show", "-i", "1", "--since", "7d", "--step", "1s",
        ]),
        2,
    )
    .await;
    assert!(stderr.contains("too_many_points"), "{stderr}");

    // Top statements: q1 many cheap calls, q2 few expensive ones, q3 (outside --since) huge.
    for (queryid, calls, total_ms, minutes_ago) in [
        (1_i64, 500_i64, 10.0_f64, 2_i64),
        (2, 3, 900.0, 2),
        (3, 10_000, 10_000.0, 120),
    ] {
        sqlx::query(
            "INSERT INTO metric_statement (time, instance_id, queryid, dbid, userid, toplevel,
                 since_reset, calls, rows, total_exec_time_ms)
             VALUES (now() - make_interval(mins => $1::int), 1, $2, 1, 10, true, false, $3, $3, $4)",
        )
        .bind(minutes_ago as i32)
        .bind(queryid)
        .bind(calls)
        .bind(total_ms)
        .execute(&api.pool)
        .await
        .expect("insert statement");
    }
    sqlx::raw_sql(
        "INSERT INTO statement_texts VALUES
             (1, 1, 'SELECT * FROM pgbench_branches WHERE bid = $1', now()),
             (1, 2, 'UPDATE pgbench_accounts SET abalance = abalance + $1', now())",
    )
    .execute(&api.pool)
    .await
    .expect("texts");
    let json = ok(api.lasect(&[
        "queries", "top", "-i", "1", "--by", "calls", "--since", "30m", "-o", "json",
    ]))
    .await;
    let body: Value = serde_json::from_str(&json).expect("JSON output");
    let ids: Vec<i64> = body["statements"]
        .as_array()
        .expect("statements")
        .iter()
        .map(|s| s["queryid"].as_i64().expect("queryid"))
        .collect();
    assert_eq!(ids, [1, 2], "q3 is older than 30m");
    let json = ok(api.lasect(&[
        "queries", "top", "-i", "1", "--since", "3h", "--limit", "2", "-o", "json",
    ]))
    .await;
    let body: Value = serde_json::from_str(&json).expect("JSON output");
    assert_eq!(body["by"], "total_time");
    assert_eq!(body["statements"][0]["queryid"], 3);
    assert_eq!(body["statements"].as_array().map(Vec::len), Some(2));

    let table = ok(api.lasect(&[
        "queries",
        "top",
        "-i",
        "1",
        "--by",
        "mean_time",
        "--since",
        "30m",
    ]))
    .await;
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].contains("top statements by mean_time"), "{table}");
    let first = lines
        .iter()
        .position(|l| l.contains("UPDATE pgbench_accounts"))
        .expect("q2");
    let second = lines
        .iter()
        .position(|l| l.contains("pgbench_branches"))
        .expect("q1");
    assert!(first < second, "mean 300 ms before 0.02 ms: {table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_a_global_flag() {
    let api = start_api().await;
    // Before the subcommand (kubectl, gh), after it, or between its two words.
    for args in [
        &["--output", "json", "instance", "list"][..],
        &["-o", "json", "user", "list"][..],
        &["token", "-o", "json", "list"][..],
        &["-o", "json", "agent", "list"][..],
        &["--output", "json", "audit", "list"][..],
        &["-o", "json", "run", "list"][..],
        &["-o", "json", "metrics", "show", "-i", "reports"][..],
        &["-o", "json", "queries", "top", "-i", "1"][..],
        &["instance", "list", "-o", "json"][..],
    ] {
        let out = ok(api.lasect(args)).await;
        let value: Result<Value, _> = serde_json::from_str(&out);
        assert!(value.is_ok(), "{args:?} did not print JSON: {out}");
    }
    let table = ok(api.lasect(&["instance", "list"])).await;
    assert!(serde_json::from_str::<Value>(&table).is_err(), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_top_defaults_to_the_only_instance() {
    let api = start_api().await;
    // Three instances: the same refusal as `sql run`, naming them.
    let err = fails_with(api.lasect(&["queries", "top"]), 2).await;
    assert!(
        err.starts_with("error: several instances: say which with --instance"),
        "{err}"
    );
    assert!(err.contains("reports (3)"), "{err}");

    sqlx::query("UPDATE instances SET state = 'removed' WHERE id IN (2, 3)")
        .execute(&api.pool)
        .await
        .expect("remove two instances");
    let out = ok(api.lasect(&["queries", "top"])).await;
    assert!(
        out.starts_with("db-01/main (id 1): top statements by total_time"),
        "{out}"
    );
    let json = ok(api.lasect(&["queries", "top", "-o", "json"])).await;
    let body: Value = serde_json::from_str(&json).expect("JSON output");
    assert_eq!(body["instance"]["id"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_refused_except_on_loopback() {
    let api = start_api().await;
    let refused = |err: &str| {
        assert!(
            err.contains("plain http://") && err.contains("use https://"),
            "{err}"
        );
    };
    // From the environment, a flag and the config file alike; nothing is sent anywhere.
    let mut cmd = api.lasect(&["instance", "list"]);
    cmd.env("LASECT_URL", "http://lasect.example.com:8443");
    refused(&fails_with(cmd, 2).await);
    refused(
        &fails_with(
            api.lasect(&["--url", "http://10.1.2.3", "instance", "list"]),
            2,
        )
        .await,
    );
    let config = api._dir.path().join(".config/lasect/config.toml");
    std::fs::create_dir_all(config.parent().expect("dir")).expect("config dir");
    std::fs::write(&config, "url = \"http://192.0.2.7:8443\"\n").expect("config");
    let mut cmd = api.lasect(&["instance", "list"]);
    cmd.env_remove("LASECT_URL");
    refused(&fails_with(cmd, 2).await);
    // Login would send a password: refused before it is asked for.
    let mut cmd = api.lasect(&["login", "-u", "admin"]);
    cmd.env("LASECT_URL", "http://lasect.example.com");
    let err = fails_with(with_stdin(cmd, "secret\n"), 2).await;
    refused(&err);
    assert!(!err.contains("Password:"), "{err}");
    std::fs::remove_file(&config).expect("remove config");

    // Loopback over http is accepted (nothing listens there: unreachable, not refused).
    let port = free_port();
    for url in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://[::1]:{port}"),
    ] {
        let mut cmd = api.lasect(&["instance", "list"]);
        cmd.env("LASECT_URL", &url);
        let err = fails_with(cmd, 5).await;
        assert!(err.contains("could not reach the API"), "{url}: {err}");
    }
}

/// What a terminal would interpret rather than show.
fn has_terminal_controls(text: &str) -> bool {
    text.chars()
        .any(|c| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_values_cannot_drive_the_terminal() {
    let api = start_api().await;
    let title = "\x1b]0;pwned\x07";
    let clear = "\x1b[2J";
    sqlx::query(
        "UPDATE instances SET name = $1, labels = jsonb_build_object('team', $2::text) WHERE id = 3",
    )
    .bind(format!("rep{title}orts"))
    .bind(format!("ops{clear}\r\u{202e}x"))
    .execute(&api.pool)
    .await
    .expect("hostile name and label");
    sqlx::query("UPDATE metric_database SET datname = $1 WHERE instance_id = 3")
        .bind(format!("db{clear}"))
        .execute(&api.pool)
        .await
        .expect("hostile datname");
    sqlx::query(
        "INSERT INTO metric_statement (time, instance_id, queryid, dbid, userid, toplevel,
             since_reset, calls, rows, total_exec_time_ms)
         VALUES (now() - interval '1 minute', 3, 42, 1, 10, true, false, 1, 1, 1.0)",
    )
    .execute(&api.pool)
    .await
    .expect("statement");
    sqlx::query("INSERT INTO statement_texts VALUES (3, 42, $1, now())")
        .bind(format!("SELECT '{title}'"))
        .execute(&api.pool)
        .await
        .expect("statement text");

    let table = ok(api.lasect(&["instance", "list"])).await;
    assert!(!has_terminal_controls(&table), "{table:?}");
    assert!(table.contains("rep\\x1b]0;pwned\\x07orts"), "{table}");
    assert!(table.contains("team=ops\\x1b[2J\\r\\u{202e}x"), "{table}");
    for args in [
        &["metrics", "show", "-i", "3"][..],
        &["queries", "top", "-i", "3"][..],
    ] {
        let out = ok(api.lasect(args)).await;
        assert!(!has_terminal_controls(&out), "{args:?}: {out:?}");
        assert!(out.contains("\\x1b"), "{args:?}: {out}");
    }
    // An error naming the value (the several-instances refusal lists every name).
    let err = fails_with(api.lasect(&["queries", "top"]), 2).await;
    assert!(!has_terminal_controls(&err), "{err:?}");
    assert!(err.contains("rep\\x1b]0;pwned\\x07orts (3)"), "{err}");

    // JSON keeps the value itself (serde escapes the controls).
    let json = ok(api.lasect(&["instance", "list", "-o", "json"])).await;
    assert!(!json.contains('\x1b') && !json.contains('\x07'), "{json:?}");
    let body: Value = serde_json::from_str(&json).expect("JSON output");
    let names: Vec<&str> = body["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert!(
        names.contains(&format!("rep{title}orts").as_str()),
        "{names:?}"
    );
}

/// Runs `lasect login` with its stdin, stdout and stderr on a pseudo-terminal, types
/// `password` once the prompt is shown, and returns whether it succeeded and all the terminal
/// displayed.
async fn login_at_a_terminal(api: &Api, password: &str) -> (bool, String) {
    use std::io::{Read, Write};

    let pty = nix::pty::openpty(None, None).expect("open a pty");
    let mut cmd = api.lasect(&["login", "--username", "admin"]);
    cmd.env_remove("LASECT_TOKEN")
        .stdin(pty.slave.try_clone().expect("dup pty"))
        .stdout(pty.slave.try_clone().expect("dup pty"))
        .stderr(pty.slave);
    let typed = format!("{password}\n");
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().expect("run lasect");
        // Our copies of the terminal's slave side go, so reads end when lasect exits.
        drop(cmd);
        let master = std::fs::File::from(pty.master);
        let mut writer = master.try_clone().expect("dup master");
        let mut master = master;
        let mut shown = Vec::new();
        let mut buf = [0_u8; 4096];
        let mut read = |shown: &mut Vec<u8>| match master.read(&mut buf) {
            Ok(n) if n > 0 => {
                shown.extend_from_slice(&buf[..n]);
                true
            }
            // EIO once the slave side is closed.
            _ => false,
        };
        while !String::from_utf8_lossy(&shown).contains("Password: ") && read(&mut shown) {}
        writer
            .write_all(typed.as_bytes())
            .expect("type the password");
        while read(&mut shown) {}
        let status = child.wait().expect("wait for lasect");
        (
            status.success(),
            String::from_utf8_lossy(&shown).into_owned(),
        )
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_prompt_does_not_echo() {
    let api = start_api().await;
    let (ok_login, shown) = login_at_a_terminal(&api, ADMIN_PASSWORD).await;
    eprintln!("{shown}");
    assert!(ok_login, "{shown}");
    assert!(shown.contains("Password: "), "{shown}");
    assert!(shown.contains("logged in as admin"), "{shown}");
    assert!(
        !shown.contains(ADMIN_PASSWORD),
        "the password was echoed: {shown}"
    );

    // Scripts: without a terminal the prompt still reads the first line of stdin. (Another
    // host name: the token login names after host and second is still live.)
    let mut cmd = api.lasect(&["login", "--username", "admin"]);
    cmd.env_remove("LASECT_TOKEN")
        .env("HOSTNAME", "script-host");
    let out = ok(with_stdin(cmd, &format!("{ADMIN_PASSWORD}\n"))).await;
    assert!(out.contains("logged in as admin"), "{out}");
}

/// `instance add --run-dsn --allow-privileged-runs` reaches the API, which keeps the run DSN
/// encrypted; an add whose agent has not answered yet says so (202) instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_add_sends_the_run_dsn_and_reports_a_pending_check() {
    let api = start_api().await;
    // Its agent has not been heard of for an hour: the add does not wait for the check.
    sqlx::query("UPDATE agents SET last_seen = now() - interval '1 hour' WHERE id = 'db-01'")
        .execute(&api.pool)
        .await
        .expect("silence the agent");
    let out = ok(api.lasect(&[
        "instance",
        "add",
        "--dsn",
        "host=db.example user=app password=Mon1tor dbname=app",
        "--run-dsn",
        "host=db.example user=lasect_run password=Re4der dbname=app",
        "--allow-privileged-runs",
        "--agent",
        "db-01",
        "--name",
        "added",
    ]))
    .await;
    assert!(out.contains("saved as validating"), "{out}");
    assert!(!out.contains("Mon1tor") && !out.contains("Re4der"), "{out}");
    let (run_dsn, privileged, state): (Option<Vec<u8>>, bool, String) = sqlx::query_as(
        "SELECT run_dsn_ciphertext, allow_privileged_runs, state FROM instances WHERE name = 'added'",
    )
    .fetch_one(&api.pool)
    .await
    .expect("the added instance");
    let run_dsn = run_dsn.expect("the run DSN is stored");
    assert!(
        !String::from_utf8_lossy(&run_dsn).contains("Re4der"),
        "stored encrypted"
    );
    assert!(privileged);
    assert_eq!(state, "validating", "kept until its check ends");

    // Routes that answer with the agent's result say so when the agent has not answered, rather
    // than showing an empty result: exit 5, naming the run.
    for args in [
        &["instance", "test", "db-01/main"][..],
        &["instance", "show", "--refresh", "db-01/main"][..],
    ] {
        let err = fails_with(api.lasect(args), 5).await;
        assert!(err.contains("has not answered yet"), "{args:?}: {err}");
        assert!(err.contains("lasect run show"), "{args:?}: {err}");
    }
}

/// A webhook receiver on 127.0.0.1 that answers every request `200 ok` and hands each
/// request's body to the returned channel. Returns its URL.
async fn webhook_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let url = format!(
        "http://{}/hook",
        listener.local_addr().expect("receiver address")
    );
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // The whole request (headers, then Content-Length bytes) before answering.
            let body = loop {
                let Ok(n) = conn.read(&mut buf).await else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).into_owned();
                let Some((head, body)) = text.split_once("\r\n\r\n") else {
                    continue;
                };
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    break Some(body.to_owned());
                }
            };
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
            if let Some(body) = body {
                let _ = tx.send(body);
            }
        }
    });
    (url, rx)
}

/// `lasect alert channel add|list|edit|test|deliveries|remove` read the API's own types
/// (`lasect_api_contract::alert_channels`): each answer parsed and shown as a table and as
/// JSON, and what they send taken by the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_channels_and_deliveries_are_read_as_the_apis_types() {
    let api = start_api().await;
    let json = |out: &str| serde_json::from_str::<Value>(out).expect("json");
    let (hook, mut received) = webhook_receiver().await;

    let out = ok(with_stdin(
        api.lasect(&[
            "alert",
            "channel",
            "add",
            "ops-hook",
            "--kind",
            "webhook",
            "--receiver-url",
            &hook,
            "--insecure-http",
            "--secret-stdin",
            "--min-severity",
            "warning",
            "--matchers",
            "env=prod",
            "--repeat",
            "1h",
        ]),
        "a signing secret of some length\n",
    ))
    .await;
    assert!(
        out.starts_with("channel ops-hook (webhook) added, route "),
        "{out}"
    );
    let out = ok(api.lasect(&["alert", "channel", "list"])).await;
    assert!(
        out.contains("ops-hook") && out.contains(">=warning env=prod every 3600s"),
        "{out}"
    );
    let listed = json(&ok(api.lasect(&["alert", "channel", "list", "-o", "json"])).await);
    let channel = &listed["channels"][0];
    assert_eq!(channel["kind"], "webhook");
    assert_eq!(channel["url"], hook.as_str());
    assert_eq!(channel["has_secret"], true);
    assert!(channel.get("secret").is_none(), "{channel}");
    assert_eq!(channel["routes_text"], ">=warning env=prod every 3600s");

    // A severity the API would refuse is refused before anything is sent (exit 2): the routes
    // stay as they were.
    let err = fails_with(
        api.lasect(&[
            "alert",
            "channel",
            "edit",
            "ops-hook",
            "--disable",
            "--min-severity",
            "fatal",
        ]),
        2,
    )
    .await;
    assert!(err.contains("--min-severity"), "{err}");
    let listed = json(&ok(api.lasect(&["alert", "channel", "list", "-o", "json"])).await);
    assert_eq!(
        listed["channels"][0]["enabled"], true,
        "not disabled either"
    );
    let out = ok(api.lasect(&[
        "alert",
        "channel",
        "edit",
        "ops-hook",
        "--disable",
        "--timeout",
        "5s",
        "--min-severity",
        "critical",
        "--repeat",
        "0",
    ]))
    .await;
    assert_eq!(out, "channel ops-hook changed (disabled)\n");
    let listed = json(&ok(api.lasect(&["alert", "channel", "list", "-o", "json"])).await);
    let channel = &listed["channels"][0];
    assert_eq!(channel["enabled"], false);
    assert_eq!(channel["timeout_secs"], 5);
    assert_eq!(channel["routes_text"], ">=critical env=prod");
    let edited = json(
        &ok(api.lasect(&[
            "alert", "channel", "edit", "ops-hook", "--enable", "-o", "json",
        ]))
        .await,
    );
    assert_eq!(edited["enabled"], true);
    assert_eq!(edited["name"], "ops-hook");

    // A test notification reaches the receiver, which answers 200 "ok".
    let out = ok(api.lasect(&["alert", "channel", "test", "ops-hook"])).await;
    assert_eq!(out, "delivered: 200 ok\n");
    let sent = received
        .recv()
        .await
        .expect("the receiver got the notification");
    assert!(sent.contains("lasect_test"), "{sent}");

    let out = ok(api.lasect(&[
        "alert",
        "channel",
        "deliveries",
        "--channel",
        "ops-hook",
        "--since",
        "1h",
    ]))
    .await;
    assert!(
        out.contains("lasect_test") && out.contains("delivered"),
        "{out}"
    );
    let deliveries = json(&ok(api.lasect(&["alert", "channel", "deliveries", "-o", "json"])).await);
    let delivery = &deliveries["deliveries"][0];
    assert_eq!(delivery["kind"], "test");
    assert_eq!(delivery["state"], "delivered");
    assert_eq!(delivery["attempt_count"], 1);
    assert_eq!(delivery["attempts"][0]["status"], 200);

    let out = ok(api.lasect(&["alert", "channel", "remove", "ops-hook"])).await;
    assert_eq!(out, "channel ops-hook removed\n");
    let listed = json(&ok(api.lasect(&["alert", "channel", "list", "-o", "json"])).await);
    assert_eq!(listed, serde_json::json!({"channels": []}));
}

/// Plays agent db-01's part in the store: claims each run queued for it and finishes it with
/// `result(kind)` as its summary, through the statements ingest executes
/// (`lasect_runs::Transition`), woken like ingest by `NOTIFY lasect_runs`. The API and the
/// CLI then meet real runs without an agent process.
async fn answer_runs(pool: sqlx::PgPool, result: fn(&str) -> Value) {
    use lasect_runs::Transition;
    use sqlx::Row;
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .expect("listen");
    listener.listen("lasect_runs").await.expect("listen");
    loop {
        // Runs queued before the LISTEN are claimed on the first round.
        let claimed = sqlx::query(Transition::Claim.sql())
            .bind(vec!["db-01".to_owned()])
            .bind("test")
            .fetch_all(&pool)
            .await
            .expect("claim");
        for run in claimed {
            let id: i64 = run.get(0);
            let kind: String = run.get(2);
            sqlx::query(Transition::Finish.sql())
                .bind(id)
                .bind("db-01")
                .bind("succeeded")
                .bind(0_i64)
                .bind(0_i64)
                .bind(false)
                .bind(0_i32)
                .bind(None::<String>)
                .bind(None::<Value>)
                .bind(Some(result(&kind)))
                .bind(3600_i64)
                .fetch_optional(&pool)
                .await
                .expect("finish");
        }
        listener.recv().await.expect("notification");
    }
}

/// What the agent reports for the kinds `data_commands_read_typed_results` asks for.
fn agent_result(kind: &str) -> Value {
    match kind {
        "extension_list" => serde_json::json!({"extensions": [
            {"name": "pg_trgm", "default_version": "1.6", "installed_version": null,
             "schema": null, "comment": "text similarity measurement"},
            {"name": "plpgsql", "default_version": "1.0", "installed_version": "1.0",
             "schema": "pg_catalog", "comment": "PL/pgSQL procedural language"}]}),
        "extension_action" => {
            serde_json::json!({"name": "pg_trgm", "action": "enable", "installed_version": "1.6"})
        }
        "import_csv" => serde_json::json!({"rows_imported": 2, "records": 2, "errors": []}),
        "schema_snapshot" => serde_json::json!({"database": "app", "objects": 5}),
        other => panic!("no result for a {other} run in this test"),
    }
}

/// `lasect schema show|changes`, `extension list|enable` and `data import` read the API's
/// types (`lasect_api_contract::schema`) and the runs' typed results (`lasect_runs`): a
/// stored snapshot and change, and runs finished in the store as the agent would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_commands_read_typed_results() {
    let api = start_api().await;
    let json = |out: &str| serde_json::from_str::<Value>(out).expect("json");
    let document = serde_json::json!({
        "database": "app", "server_version_num": 170002,
        "extensions": [{"name": "plpgsql", "version": "1.0", "schema": "pg_catalog"}],
        "later_field": "kept",
        "schemas": [{"name": "public",
          "tables": [{"name": "orders", "kind": "table", "partition_of": null,
            "size_bytes": 16384, "row_estimate": 2,
            "columns": [
              {"name": "id", "type": "bigint", "nullable": false, "default": null,
               "identity": "a", "generated": null},
              {"name": "note", "type": "text", "nullable": true, "default": "'none'::text",
               "identity": null, "generated": null}],
            "constraints": [{"name": "orders_pkey", "type": "primary_key",
              "definition": "PRIMARY KEY (id)", "columns": ["id"], "ref_schema": null,
              "ref_table": null, "ref_columns": null}],
            "indexes": [{"name": "orders_pkey",
              "definition": "CREATE UNIQUE INDEX orders_pkey ON public.orders USING btree (id)",
              "unique": true, "primary": true, "valid": true}],
            "triggers": [{"name": "orders_audit", "definition": "CREATE TRIGGER orders_audit",
              "enabled": true}]}],
          "views": [{"name": "recent_orders", "materialized": false,
            "definition": " SELECT id FROM orders;", "columns": [{"name": "id", "type": "bigint"}],
            "depends_on": ["public.orders"]}],
          "functions": [{"name": "total", "signature": "total(bigint)", "returns": "numeric",
            "kind": "f", "language": "sql", "volatility": "s", "definition_md5": "0f"}],
          "types": [{"name": "mood", "kind": "enum", "values": ["sad", "ok"], "definition": null}],
          "sequences": []}]
    });
    let (first, second): (i64, i64) = sqlx::query_as(
        "WITH a AS (INSERT INTO schema_snapshots (instance_id, database, digest, snapshot, taken_at) \
                    VALUES (1, 'app', 'd1', '{}', now() - interval '1 hour') RETURNING id), \
              b AS (INSERT INTO schema_snapshots (instance_id, database, digest, snapshot) \
                    VALUES (1, 'app', 'd2', $1) RETURNING id) \
         SELECT a.id, b.id FROM a, b",
    )
    .bind(&document)
    .fetch_one(&api.pool)
    .await
    .expect("snapshots");
    sqlx::query(
        "INSERT INTO schema_changes (instance_id, database, from_snapshot, to_snapshot, \
             object_kind, object_name, change, classification, detail) \
         VALUES (1, 'app', $1, $2, 'column', 'public.orders.note', 'altered', 'breaking', \
                 '{\"from\": {\"type\": \"integer\"}, \"to\": {\"type\": \"text\"}}')",
    )
    .bind(first)
    .bind(second)
    .execute(&api.pool)
    .await
    .expect("change");

    let out = ok(api.lasect(&["schema", "show", "-i", "db-01/main"])).await;
    for line in [
        &format!("database app (snapshot {second} taken ")[..],
        "table public.orders (~2 rows, 16384 bytes)\n",
        "view public.recent_orders\n",
        "function public.total(bigint) returns numeric\n",
        "type public.mood (enum)\n",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    assert!(
        !out.contains("  id bigint"),
        "columns only with --table: {out}"
    );
    let out = ok(api.lasect(&[
        "schema",
        "show",
        "-i",
        "db-01/main",
        "--table",
        "public.orders",
    ]))
    .await;
    for line in [
        "  id bigint NOT NULL\n",
        "  note text DEFAULT 'none'::text\n",
        "  constraint orders_pkey PRIMARY KEY (id)\n",
        "  index CREATE UNIQUE INDEX orders_pkey ON public.orders USING btree (id)\n",
        "  trigger orders_audit\n",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    assert!(!out.contains("view "), "only the table: {out}");
    // The document is handed on whole, fields the CLI does not read included.
    let shown = json(&ok(api.lasect(&["schema", "show", "-i", "db-01/main", "-o", "json"])).await);
    assert_eq!(shown["snapshot_id"], second);
    assert_eq!(shown["snapshot"], document);

    let out = ok(api.lasect(&["schema", "changes", "-i", "db-01/main"])).await;
    assert!(
        out.contains("public.orders.note") && out.contains("BREAKING"),
        "{out}"
    );
    let changes =
        json(&ok(api.lasect(&["schema", "changes", "-i", "db-01/main", "-o", "json"])).await);
    assert_eq!(changes["changes"][0]["detail"]["to"]["type"], "text");

    let agent = tokio::spawn(answer_runs(api.pool.clone(), agent_result));
    // --refresh asks the agent for a snapshot of the database named, then shows the stored one.
    let out = ok(api.lasect(&[
        "schema",
        "show",
        "-i",
        "db-01/main",
        "--db",
        "app",
        "--refresh",
    ]))
    .await;
    assert!(out.contains("table public.orders"), "{out}");
    let asked: String =
        sqlx::query_scalar("SELECT params->>'database' FROM runs WHERE kind = 'schema_snapshot'")
            .fetch_one(&api.pool)
            .await
            .expect("the snapshot run");
    assert_eq!(asked, "app");
    let out = ok(api.lasect(&["extension", "list", "-i", "db-01/main"])).await;
    assert!(
        out.contains("pg_trgm") && out.contains("text similarity") && out.contains("pg_catalog"),
        "{out}"
    );
    let listed =
        json(&ok(api.lasect(&["extension", "list", "-i", "db-01/main", "-o", "json"])).await);
    assert_eq!(listed["extensions"][1]["installed_version"], "1.0");
    assert_eq!(listed["extensions"][0]["installed_version"], Value::Null);
    let out = ok(api.lasect(&["extension", "enable", "pg_trgm", "-i", "db-01/main"])).await;
    assert_eq!(out, "enable pg_trgm: installed version 1.6\n");
    let csv = api._dir.path().join("orders.csv");
    std::fs::write(&csv, "id,note\n1,first\n2,second\n").expect("write the CSV");
    let out = ok(api.lasect(&[
        "data",
        "import",
        "-i",
        "db-01/main",
        "--table",
        "public.orders",
        "--file",
        csv.to_str().expect("utf-8 path"),
    ]))
    .await;
    assert_eq!(out, "imported 2 row(s) into public.orders\n");
    agent.abort();
}

/// `lasect alert rule apply` and `alert rule test` read the API's answers as its types
/// (`ApplyResult`, `TestResult`): the difference as `+`/`~`/`-` lines, the values as a table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_rule_apply_and_test_read_typed_answers() {
    let api = start_api().await;
    let json = |out: &str| serde_json::from_str::<Value>(out).expect("json");
    let rules = api._dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - name: commits_seen\n    severity: info\n    condition:\n      \
         kind: threshold\n      family: database\n      column: xact_commit\n      agg: rate\n      \
         by: [datname]\n      window_secs: 900\n      op: \">\"\n      threshold: 0\n",
    )
    .expect("write the rules");
    let file = rules.to_str().expect("utf-8 path");
    let out = ok(api.lasect(&["alert", "rule", "apply", "-f", file, "--dry-run"])).await;
    assert!(
        out.starts_with("+ commits_seen\n") && out.ends_with(" would stay\n"),
        "{out}"
    );
    let out = ok(api.lasect(&["alert", "rule", "apply", "-f", file])).await;
    assert!(
        out.starts_with("+ commits_seen\n") && out.ends_with(" unchanged\n"),
        "{out}"
    );
    let again = json(&ok(api.lasect(&["alert", "rule", "apply", "-f", file, "-o", "json"])).await);
    assert_eq!(again["dry_run"], false);
    assert_eq!(again["diff"]["created"], serde_json::json!([]));
    assert_eq!(again["diff"]["updated"], serde_json::json!([]));

    // Listed with the default pack; exported as YAML that applies as no change.
    let out = ok(api.lasect(&["alert", "rule", "list"])).await;
    assert!(
        out.contains("commits_seen") && out.contains("threshold") && out.contains("deadlocks"),
        "{out}"
    );
    let listed = json(&ok(api.lasect(&["alert", "rule", "list", "-o", "json"])).await);
    let mine = listed["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["rule"]["name"] == "commits_seen")
        .expect("commits_seen listed");
    assert_eq!(mine["source"], "user");
    assert_eq!(mine["rule"]["condition"]["family"], "database");
    let exported = ok(api.lasect(&["alert", "rule", "export"])).await;
    assert!(exported.contains("name: commits_seen"), "{exported}");
    let export_file = api._dir.path().join("exported.yaml");
    std::fs::write(&export_file, &exported).expect("write the export");
    let again = json(
        &ok(api.lasect(&[
            "alert",
            "rule",
            "apply",
            "-f",
            export_file.to_str().expect("utf-8 path"),
            "--dry-run",
            "-o",
            "json",
        ]))
        .await,
    );
    assert_eq!(
        (
            &again["diff"]["created"],
            &again["diff"]["updated"],
            &again["diff"]["deleted"]
        ),
        (
            &serde_json::json!([]),
            &serde_json::json!([]),
            &serde_json::json!([])
        ),
        "{again}"
    );

    // Commits rose from 10 to 20 on db-01/main's database app: the rule holds there.
    let out = ok(api.lasect(&["alert", "rule", "test", "commits_seen"])).await;
    assert!(out.contains("datname=app") && out.contains("true"), "{out}");
    let tested =
        json(&ok(api.lasect(&["alert", "rule", "test", "commits_seen", "-o", "json"])).await);
    assert_eq!(tested["rule"], "commits_seen");
    let value = &tested["values"][0];
    assert_eq!(value["key_labels"]["datname"], "app");
    assert_eq!(value["holds"], true);
    assert_eq!(value["would_be"], "firing", "for_secs is 0");
}

/// A `lasect` that goes on while the test drives the store: its stdout line by line as it
/// writes them.
struct Following {
    child: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

/// A bound on waiting for a line that should come, not a measurement.
const PATIENCE: Duration = Duration::from_secs(60);

fn follow(mut cmd: Command) -> Following {
    use std::io::{BufRead as _, Read as _};
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lasect");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            eprintln!("| {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    Following {
        child,
        lines,
        stderr,
    }
}

impl Following {
    /// The next line of stdout; `None` once the command closed it.
    async fn next_line(&mut self) -> Option<String> {
        tokio::time::timeout(PATIENCE, self.lines.recv())
            .await
            .expect("a line from lasect in time")
    }

    /// Skips lines until one containing `text`; returns it.
    async fn line_with(&mut self, text: &str) -> String {
        loop {
            match self.next_line().await {
                Some(line) if line.contains(text) => return line,
                Some(_) => continue,
                None => panic!("lasect ended before printing {text:?}"),
            }
        }
    }

    /// The rest of stdout, the exit code and stderr.
    async fn end(mut self) -> (Vec<String>, Option<i32>, String) {
        let mut rest = Vec::new();
        while let Some(line) = self.next_line().await {
            rest.push(line);
        }
        let mut child = self.child;
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait for lasect");
        let stderr = self.stderr.join().expect("stderr reader");
        eprintln!("{stderr}");
        (rest, status.code(), stderr)
    }
}

/// A run queued for `agent` on `instance`, inserted as the API inserts one.
async fn queued(pool: &sqlx::PgPool, kind: &str, instance: i64, agent: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO runs (kind, instance_id, agent_id, params, requested_by, timeout_ms, \
         max_rows, max_bytes, expires_at) \
         VALUES ($1, $2, $3, '{\"stanza\": \"main\", \"type\": \"full\"}', 'user:admin', \
                 600000, 10, 1000, now() + interval '1 hour') RETURNING id",
    )
    .bind(kind)
    .bind(instance)
    .bind(agent)
    .fetch_one(pool)
    .await
    .expect("queue a run")
}

/// The agent's part, with ingest's statements: claimed (dispatched) and started.
async fn claim_and_start(pool: &sqlx::PgPool, runs: &[i64]) {
    use lasect_runs::Transition;
    sqlx::query(Transition::Claim.sql())
        .bind(vec!["db-01".to_owned()])
        .bind("test")
        .execute(pool)
        .await
        .expect("claim");
    for &run in runs {
        let started = sqlx::query(Transition::Start.sql())
            .bind(run)
            .bind("db-01")
            .bind(None::<i32>)
            .execute(pool)
            .await
            .expect("start");
        assert_eq!(started.rows_affected(), 1, "run {run} started");
    }
}

async fn report_progress(pool: &sqlx::PgPool, run: i64, progress: Value) {
    let reported = sqlx::query(lasect_runs::progress_sql())
        .bind(run)
        .bind("db-01")
        .bind(progress)
        .execute(pool)
        .await
        .expect("progress");
    assert_eq!(reported.rows_affected(), 1);
}

async fn finish(pool: &sqlx::PgPool, run: i64, status: &str, error: Option<&str>) {
    sqlx::query(lasect_runs::Transition::Finish.sql())
        .bind(run)
        .bind("db-01")
        .bind(status)
        .bind(0_i64)
        .bind(0_i64)
        .bind(false)
        .bind(0_i32)
        .bind(error)
        .bind(None::<Value>)
        .bind(None::<Value>)
        .bind(3600_i64)
        .fetch_all(pool)
        .await
        .expect("finish");
}

/// `lasect run watch` and `lasect backup progress --follow` follow runs on the live
/// WebSocket (over TLS, trusting `LASECT_CA_FILE`, with the token): each status change and
/// progress report the store announces is printed as it comes (a line each; one JSON object
/// a line with `-o json`), and the command ends with the runs: exit 0 when they succeeded, 5
/// with the error otherwise. `--follow` also follows a run created after it started. A run the
/// caller may not see is refused like `run show` refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_followed_on_the_live_stream() {
    let api = start_api().await;
    let pool = &api.pool;

    // A backup that succeeds, watched from its queue.
    let backup = queued(pool, "backup", 1, "db-01").await;
    let mut watch = follow(api.lasect(&["run", "watch", &backup.to_string()]));
    watch
        .line_with(&format!("run {backup} backup on main: queued"))
        .await;
    claim_and_start(pool, &[backup]).await;
    report_progress(
        pool,
        backup,
        serde_json::json!({"stage": "copy", "percent": 42.5, "bytes_done": 420, "bytes_total": 1000}),
    )
    .await;
    finish(pool, backup, "succeeded", None).await;
    let (lines, code, stderr) = watch.end().await;
    assert_eq!(
        lines,
        [
            format!("run {backup} backup on main: dispatched"),
            format!("run {backup} backup on main: running"),
            format!("run {backup} backup on main: running copy 42.5% (420 B of 1000 B)"),
            format!("run {backup} backup on main: succeeded"),
        ],
        "{stderr}"
    );
    assert_eq!(code, Some(0), "{stderr}");

    // One that fails, as JSON lines: the run first, then the live stream's run objects.
    let failing = queued(pool, "backup", 1, "db-01").await;
    let mut watch = follow(api.lasect(&["-o", "json", "run", "watch", &failing.to_string()]));
    let first: Value =
        serde_json::from_str(&watch.next_line().await.expect("first line")).expect("JSON");
    assert_eq!(first["id"], failing);
    assert_eq!(first["status"], "queued");
    claim_and_start(pool, &[failing]).await;
    finish(
        pool,
        failing,
        "failed",
        Some("pgbackrest: no space left on device"),
    )
    .await;
    let (lines, code, stderr) = watch.end().await;
    let changes: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    let statuses: Vec<&str> = changes
        .iter()
        .map(|c| c["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses, ["dispatched", "running", "failed"], "{lines:?}");
    assert_eq!(changes[2]["error"], "pgbackrest: no space left on device");
    assert_eq!(code, Some(5), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "run {failing} failed: pgbackrest: no space left on device"
        )),
        "{stderr}"
    );

    // backup progress --follow: the running backup, then a drill queued meanwhile; the
    // command goes on after the backup succeeds and ends when the drill fails.
    let backup = queued(pool, "backup", 1, "db-01").await;
    let mut progress = follow(api.lasect(&["backup", "progress", "--follow", "-i", "1"]));
    progress.line_with("queued").await;
    let drill = queued(pool, "backup_drill", 1, "db-01").await;
    progress
        .line_with(&format!("run {drill} backup_drill on main: queued"))
        .await;
    claim_and_start(pool, &[backup, drill]).await;
    finish(pool, backup, "succeeded", None).await;
    progress
        .line_with(&format!("run {backup} backup on main: succeeded"))
        .await;
    report_progress(
        pool,
        drill,
        serde_json::json!({"stage": "checks", "percent": 100.0}),
    )
    .await;
    progress
        .line_with(&format!(
            "run {drill} backup_drill on main: running checks 100.0%"
        ))
        .await;
    finish(pool, drill, "failed", Some("amcheck: index corrupted")).await;
    let (lines, code, stderr) = progress.end().await;
    assert_eq!(
        lines,
        [format!(
            "run {drill} backup_drill on main: failed: amcheck: index corrupted"
        )],
        "{stderr}"
    );
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("amcheck: index corrupted"), "{stderr}");

    // Nothing running: it says so and ends at once.
    let idle = ok(api.lasect(&["backup", "progress", "--follow", "-i", "1"])).await;
    assert_eq!(idle, "no backup, restore or drill is running\n");

    // A viewer of env=prod (instance 1) may not see a run of `reports` (instance 3).
    let viewer = lasect_api::auth::users::create_user(
        pool,
        "pat",
        "pat's password".to_owned(),
        None,
        "test",
    )
    .await
    .expect("viewer");
    sqlx::query(
        "INSERT INTO user_label_roles (user_id, label_key, label_value, role) \
         VALUES ($1, 'env', 'prod', 'viewer')",
    )
    .bind(viewer)
    .execute(pool)
    .await
    .expect("grant");
    let token = lasect_pki::new_token(lasect_pki::API_TOKEN_PREFIX);
    sqlx::query(
        "INSERT INTO api_tokens (user_id, name, token_hash, role) VALUES ($1, 'test', $2, 'viewer')",
    )
    .bind(viewer)
    .bind(lasect_pki::hash_token(&token))
    .execute(pool)
    .await
    .expect("token");
    let hidden = queued(pool, "backup", 3, "db-01").await;
    let mut cmd = api.lasect(&["run", "watch", &hidden.to_string()]);
    cmd.env("LASECT_TOKEN", &token);
    let refused = fails_with(cmd, 4).await;
    assert!(
        refused.contains(&format!("no run with id {hidden}")),
        "{refused}"
    );
    // The same viewer watches a prod run.
    let seen = queued(pool, "backup", 1, "db-01").await;
    sqlx::query(lasect_runs::Transition::Cancel.sql())
        .bind(seen)
        .execute(pool)
        .await
        .expect("cancel");
    let mut cmd = api.lasect(&["run", "watch", &seen.to_string()]);
    cmd.env("LASECT_TOKEN", &token);
    let (output, stdout, stderr) = run(cmd).await;
    assert_eq!(output.status.code(), Some(5), "{stdout}{stderr}");
    assert_eq!(stdout, format!("run {seen} backup on main: cancelled\n"));

    // Without a token the upgrade itself is refused: the API's reason, exit 3.
    let mut cmd = api.lasect(&["run", "watch", &seen.to_string()]);
    cmd.env_remove("LASECT_TOKEN");
    let refused = fails_with(cmd, 3).await;
    assert!(refused.contains("live stream"), "{refused}");

    // The stream lost mid-watch (the viewer's token revoked: the API closes it): a clear
    // error naming why, after the one poll that tells how the run stands (refused too: 3).
    let going = queued(pool, "backup", 1, "db-01").await;
    let mut cmd = api.lasect(&["run", "watch", &going.to_string()]);
    cmd.env("LASECT_TOKEN", &token);
    let mut watch = follow(cmd);
    watch
        .line_with(&format!("run {going} backup on main: queued"))
        .await;
    sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE token_hash = $1")
        .bind(lasect_pki::hash_token(&token))
        .execute(pool)
        .await
        .expect("revoke");
    let (lines, code, stderr) = watch.end().await;
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("the live connection to the API")
            && stderr.contains("was lost: closed by the API: credentials no longer valid"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The same for backup progress --follow, with another token of the viewer.
    let token = lasect_pki::new_token(lasect_pki::API_TOKEN_PREFIX);
    sqlx::query(
        "INSERT INTO api_tokens (user_id, name, token_hash, role) \
         VALUES ($1, 'follow', $2, 'viewer')",
    )
    .bind(viewer)
    .bind(lasect_pki::hash_token(&token))
    .execute(pool)
    .await
    .expect("token");
    let mut cmd = api.lasect(&["backup", "progress", "--follow", "-i", "1"]);
    cmd.env("LASECT_TOKEN", &token);
    let mut progress = follow(cmd);
    progress.line_with("queued").await;
    sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE token_hash = $1")
        .bind(lasect_pki::hash_token(&token))
        .execute(pool)
        .await
        .expect("revoke");
    let (lines, code, stderr) = progress.end().await;
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("was lost: closed by the API: credentials no longer valid")
            && stderr.contains("then reading their state over HTTP"),
        "{stderr}"
    );
}
