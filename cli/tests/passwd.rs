//! `lasect user passwd` against a real `lasect-api` router (plain HTTP on loopback) on a testkit
//! store: changing one's own password with the stored token, and finishing an admin reset.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

use lasect_api::auth::Role;
use lasect_api::auth::password::verify_password;
use lasect_api::auth::users::create_user;
use lasect_api::server::{serve_on, store_pool};
use lasect_api::store_dsn::StoreDsn;
use lasect_api::{AppState, router};
use lasect_testkit::{PgCluster, PgOptions, run_with_stdin};
use tokio::sync::oneshot;

const BIN: &str = env!("CARGO_BIN_EXE_lasect");
const FIRST: &str = "the first password";

struct Api {
    _pg: PgCluster,
    pool: sqlx::PgPool,
    url: String,
    home: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

async fn token_of(pool: &sqlx::PgPool, user_id: i64, role: &str) -> String {
    let token = lasect_pki::new_token(lasect_pki::API_TOKEN_PREFIX);
    sqlx::query(
        "INSERT INTO api_tokens (user_id, name, token_hash, role) VALUES ($1, 't', $2, $3)",
    )
    .bind(user_id)
    .bind(lasect_pki::hash_token(&token))
    .bind(role)
    .execute(pool)
    .await
    .expect("token");
    token
}

async fn start() -> Api {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    let dsn = pg.store_dsn().await.expect("migrated store");
    let pool = store_pool(&StoreDsn::new(dsn), Duration::from_secs(10)).expect("pool");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (stop, stopped) = oneshot::channel::<()>();
    let app = router(AppState::new(pool.clone()));
    tokio::spawn(async move {
        let _ = serve_on(listener, app, None, async {
            let _ = stopped.await;
        })
        .await;
    });
    Api {
        _pg: pg,
        pool,
        url: format!("http://127.0.0.1:{port}"),
        home: tempfile::tempdir().expect("home"),
        _stop: stop,
    }
}

/// Runs `lasect` with `stdin` off the async threads so the in-process API keeps serving.
async fn lasect(api: &Api, token: Option<&str>, args: &[&str], stdin: &str) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("LASECT_URL", &api.url)
        .env("HOME", api.home.path())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("LASECT_TOKEN");
    if let Some(t) = token {
        cmd.env("LASECT_TOKEN", t);
    }
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || run_with_stdin(&mut cmd, &stdin).expect("run lasect"))
        .await
        .expect("join")
}

async fn hash_of(pool: &sqlx::PgPool, username: &str) -> (String, bool) {
    sqlx::query_as("SELECT password_hash, must_change_password FROM users WHERE username = $1")
        .bind(username)
        .fetch_one(pool)
        .await
        .expect("user")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_passwd_changes_the_password_and_finishes_an_admin_reset() {
    let api = start().await;
    let ops = create_user(&api.pool, "ops", FIRST.to_owned(), Some(Role::User), "test")
        .await
        .expect("ops");
    let ops_token = token_of(&api.pool, ops, "user").await;
    let admin = create_user(
        &api.pool,
        "boss",
        FIRST.to_owned(),
        Some(Role::Admin),
        "test",
    )
    .await
    .expect("admin");
    let admin_token = token_of(&api.pool, admin, "admin").await;

    // A wrong old password: refused, nothing changes.
    let out = lasect(
        &api,
        Some(&ops_token),
        &["user", "passwd", "--password-stdin"],
        "not the password\nthe second password\n",
    )
    .await;
    assert!(!out.status.success());
    assert!(verify_password(FIRST, &hash_of(&api.pool, "ops").await.0));

    // With the stored token's user.
    let out = lasect(
        &api,
        Some(&ops_token),
        &["user", "passwd", "--password-stdin"],
        &format!("{FIRST}\nthe second password\n"),
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("password changed for ops"), "{stdout}");
    assert!(!stdout.contains("second"), "no password echoed: {stdout}");
    assert!(verify_password(
        "the second password",
        &hash_of(&api.pool, "ops").await.0
    ));

    // An admin reset (through the CLI's API call), then the user finishes it by logging in.
    let out = lasect(
        &api,
        Some(&admin_token),
        &["user", "create", "--username", "carol", "--role", "viewer"],
        "",
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reset = admin_reset(&api, &admin_token, "carol", "a temporary password").await;
    assert!(reset, "reset");
    assert!(hash_of(&api.pool, "carol").await.1, "must change");
    let out = lasect(
        &api,
        None,
        &["user", "passwd", "--username", "carol", "--password-stdin"],
        "a temporary password\ncarol's own password\n",
    )
    .await;
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (hash, must_change) = hash_of(&api.pool, "carol").await;
    assert!(!must_change);
    assert!(verify_password("carol's own password", &hash));
}

/// An admin reset through the router's HTTP API, with a minimal HTTP/1.1 request (the CLI has
/// no reset command).
async fn admin_reset(api: &Api, token: &str, username: &str, password: &str) -> bool {
    let url = api.url.clone();
    let token = token.to_owned();
    let body = format!("{{\"password\":\"{password}\"}}");
    let path = format!("/api/v1/users/{username}/password");
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let addr = url.trim_start_matches("http://").to_owned();
        let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        answer.starts_with("HTTP/1.1 200")
    })
    .await
    .expect("join")
}
