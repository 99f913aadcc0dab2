//! `lasect-api admin create|token` and the first-start admin of `serve`, as real processes.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use lasect_api::auth::password::verify_password;
use lasect_testkit::{ChildGuard, PgCluster, PgOptions, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_lasect-api");

fn api(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("LASECT_STORE_DSN");
    cmd
}

fn run_with_stdin(mut cmd: Command, stdin: &str) -> (Option<i32>, String, String) {
    let out = lasect_testkit::run_with_stdin(&mut cmd, stdin).expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn password_hash(pg: &PgCluster, user: &str) -> String {
    let client = pg.connect("fresh").await.expect("connect");
    client
        .query_one(
            "SELECT password_hash FROM users WHERE username = $1",
            &[&user],
        )
        .await
        .expect("user exists")
        .get(0)
}

#[tokio::test]
async fn admin_create_and_token_on_a_fresh_store() {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    pg.create_database("fresh").await.expect("create db");
    let dsn = pg.dsn("fresh");

    let (code, stdout, stderr) = run_with_stdin(
        api(&[
            "admin",
            "create",
            "--store-dsn",
            &dsn,
            "--username",
            "ops",
            "--password-stdin",
        ]),
        "a long enough password\n",
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stdout.contains("a long enough password"));
    assert!(verify_password(
        "a long enough password",
        &password_hash(&pg, "ops").await
    ));

    let out = api(&[
        "admin",
        "create",
        "--store-dsn",
        &dsn,
        "--username",
        "eve",
        "--role",
        "viewer",
    ])
    .output()
    .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("password (shown once, store it now): "))
        .expect("generated password printed")
        .to_owned();
    assert!(verify_password(&password, &password_hash(&pg, "eve").await));

    // Refusals: duplicate, short password, bad role.
    let (code, _, stderr) = run_with_stdin(
        api(&[
            "admin",
            "create",
            "--store-dsn",
            &dsn,
            "--username",
            "ops",
            "--password-stdin",
        ]),
        "another long password\n",
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("already exists"), "{stderr}");
    let (code, _, stderr) = run_with_stdin(
        api(&[
            "admin",
            "create",
            "--store-dsn",
            &dsn,
            "--username",
            "x",
            "--password-stdin",
        ]),
        "short\n",
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("at least 12"), "{stderr}");
    let out = api(&[
        "admin",
        "create",
        "--store-dsn",
        &dsn,
        "--username",
        "x",
        "--role",
        "root",
    ])
    .output()
    .expect("run");
    assert_eq!(out.status.code(), Some(2));

    let out = api(&[
        "admin",
        "token",
        "--store-dsn",
        &dsn,
        "--username",
        "ops",
        "--name",
        "ci",
    ])
    .output()
    .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        lasect_pki::looks_like_token(&token, lasect_pki::API_TOKEN_PREFIX),
        "{token}"
    );
    let client = pg.connect("fresh").await.expect("connect");
    let row = client
        .query_one(
            "SELECT role FROM api_tokens WHERE token_hash = $1",
            &[&lasect_pki::hash_token(&token)],
        )
        .await
        .expect("stored hashed");
    assert_eq!(row.get::<_, String>(0), "admin");
    let out = api(&[
        "admin",
        "token",
        "--store-dsn",
        &dsn,
        "--username",
        "eve",
        "--name",
        "up",
        "--role",
        "admin",
    ])
    .output()
    .expect("run");
    assert_eq!(out.status.code(), Some(1), "no token above the user's role");
}

#[tokio::test]
async fn first_serve_writes_a_generated_admin_password_to_a_private_file() {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    pg.create_database("fresh").await.expect("create db");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("api.toml");
    let listen = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        &config,
        format!(
            "listen = \"{listen}\"\nstore_dsn = \"{}\"\n[tls]\nallow_plaintext = true\n",
            pg.dsn("fresh")
        ),
    )
    .expect("config");
    let start = || {
        let mut cmd = api(&["serve", "--config", config.to_str().expect("utf-8")]);
        cmd.env("LASECT_LOG", "debug");
        let mut child = ChildGuard::spawn(cmd).expect("spawn");
        child
            .wait_for_line("listening on", Duration::from_secs(60))
            .expect("listening");
        child
    };
    let mut first = start();
    let lines = first.lines();
    let file = dir.path().join("initial-admin-password");
    let announced: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("created the first admin"))
        .collect();
    assert_eq!(announced.len(), 1, "{lines:?}");
    assert!(
        announced[0].contains(&file.display().to_string()),
        "the path is logged: {lines:?}"
    );
    let mode = std::fs::metadata(&file)
        .expect("password file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let password = std::fs::read_to_string(&file)
        .expect("read")
        .trim_end()
        .to_owned();
    assert!(
        !lines.iter().any(|l| l.contains(&password)),
        "never in stdout or the log: {lines:?}"
    );
    assert!(verify_password(
        &password,
        &password_hash(&pg, "admin").await
    ));
    let key = dir.path().join("jwt.key");
    let mode = std::fs::metadata(&key)
        .expect("jwt key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    first.terminate(Duration::from_secs(30));

    let mut second = start();
    assert!(
        !second
            .lines()
            .iter()
            .any(|l| l.contains("created the first admin")),
        "only on the first start"
    );
    second.terminate(Duration::from_secs(30));
}
