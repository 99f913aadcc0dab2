//! Authentication, authorization, tokens and audit, through the real router on a real store.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lasect_api::auth::jwt::JwtKeys;
use lasect_api::auth::{AuthConfig, AuthState, Role};
use lasect_api::routes::{Access, route_specs};
use lasect_api::server::store_pool;
use lasect_api::store_dsn::StoreDsn;
use lasect_api::{AppState, router};
use lasect_testkit::{PgCluster, PgOptions};
use serde_json::{Value, json};
use sqlx::PgPool;

mod common;

const SECRET: &[u8] = b"a test signing key of at least thirty-two bytes";

struct Fixture {
    _pg: PgCluster,
    pool: PgPool,
    app: Router,
    admin: String,
    viewer: String,
    /// `user` on env=staging, `viewer` on env=prod, nothing global.
    scoped: String,
}

fn test_config() -> AuthConfig {
    AuthConfig {
        max_failed_logins: 3,
        max_failed_logins_per_source: 6,
        ..AuthConfig::default()
    }
}

async fn fixture() -> Fixture {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    let dsn = pg.store_dsn().await.expect("migrated store");
    let pool = store_pool(&StoreDsn::new(dsn), Duration::from_secs(10)).expect("pool");
    sqlx::raw_sql(
        "INSERT INTO agents (id) VALUES ('db-01');
         INSERT INTO instances (name, agent_id, labels) VALUES
             ('prod', 'db-01', '{\"env\": \"prod\"}'),
             ('staging', 'db-01', '{\"env\": \"staging\"}'),
             ('dev', 'db-01', '{\"env\": \"dev\"}');",
    )
    .execute(&pool)
    .await
    .expect("seed");
    let admin = common::user(&pool, "admin", Some(Role::Admin), &[]).await;
    let viewer = common::user(&pool, "viewer", Some(Role::Viewer), &[]).await;
    let scoped = common::user(
        &pool,
        "scoped",
        None,
        &[
            ("env", "staging", Role::User),
            ("env", "prod", Role::Viewer),
        ],
    )
    .await;
    let state = AppState::with_auth(
        pool.clone(),
        AuthState::new(JwtKeys::from_secret(SECRET), test_config()),
    );
    Fixture {
        _pg: pg,
        pool,
        app: router(state),
        admin,
        viewer,
        scoped,
    }
}

struct Call<'a> {
    method: &'a str,
    uri: &'a str,
    token: Option<&'a str>,
    body: Option<Value>,
    source: [u8; 4],
}

fn req<'a>(method: &'a str, uri: &'a str) -> Call<'a> {
    Call {
        method,
        uri,
        token: None,
        body: None,
        source: [127, 0, 0, 1],
    }
}

impl<'a> Call<'a> {
    fn token(mut self, t: &'a str) -> Self {
        self.token = Some(t);
        self
    }
    fn json(mut self, v: Value) -> Self {
        self.body = Some(v);
        self
    }
    fn from(mut self, ip: [u8; 4]) -> Self {
        self.source = ip;
        self
    }
    async fn send(self, app: &Router) -> (StatusCode, Value) {
        let answer = common::http::call(
            app,
            self.method,
            self.uri,
            self.token,
            self.body,
            self.source,
        )
        .await;
        (answer.status, answer.body)
    }
}

/// A concrete URI for a route path.
fn concrete(path: &str) -> String {
    // Calls that wait for an agent (there is none here) must not wait.
    if path.ends_with("/instances/{id}/extensions") {
        return "/api/v1/instances/1/extensions?wait=0".to_owned();
    }
    let path = match path.strip_suffix("/instances/{id}") {
        Some(prefix) => format!("{prefix}/instances/1"),
        None => path.to_owned(),
    };
    path.replace("/instances/{id}/", "/instances/1/")
        .replace("/runs/{id}", "/runs/999999")
        .replace("/migrations/{id}", "/migrations/999999")
        .replace("/{schema}/{table}/rows", "/public/t/rows?wait=0")
        .replace("{family}", "database")
        .replace("{username}", "nobody")
        .replace("/tokens/{id}", "/tokens/999999")
        .replace("/agents/{id}", "/agents/db-01")
}

#[tokio::test]
async fn every_route_declares_and_enforces_its_access() {
    let f = fixture().await;
    let specs = route_specs();
    let open: Vec<&str> = specs
        .iter()
        .filter(|s| s.access == Access::Open)
        .map(|s| s.path)
        .collect();
    for path in [
        "/api/v1/health",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
    ] {
        assert!(open.contains(&path), "{path} must be open");
    }
    for path in &open {
        assert!(
            lasect_api::auth::gate::OPEN_PATHS.contains(path),
            "{path} is declared open but the gate guards it"
        );
    }
    assert_eq!(
        lasect_api::auth::gate::OPEN_PATHS,
        [
            "/api/v1/health",
            "/api/v1/auth/login",
            "/api/v1/auth/refresh",
            "/api/v1/openapi.json"
        ],
        "nothing else is open"
    );
    for s in &specs {
        let uri = concrete(s.path);
        let (status, body) = req(s.method.as_str(), &uri).send(&f.app).await;
        if s.access == Access::Open {
            assert_ne!(
                status,
                StatusCode::UNAUTHORIZED,
                "{} {uri}: {body}",
                s.method
            );
        } else {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{} {uri}: {body}",
                s.method
            );
            assert_eq!(body["error"]["code"], "unauthenticated");
            // A bad token is no better than none.
            let (status, _) = req(s.method.as_str(), &uri)
                .token("garbage")
                .send(&f.app)
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{} {uri}", s.method);
        }
        match s.access {
            Access::Admin => {
                let (status, body) = req(s.method.as_str(), &uri)
                    .token(&f.viewer)
                    .json(json!({}))
                    .send(&f.app)
                    .await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{} {uri}: {body}", s.method);
                assert_eq!(body["error"]["code"], "forbidden");
            }
            Access::InstanceViewer | Access::InstanceUser | Access::InstanceAdmin => {
                // `scoped` has nothing on env=dev (instance 3).
                let uri = match uri.strip_suffix("/instances/1") {
                    Some(prefix) => format!("{prefix}/instances/3"),
                    None => uri.replace("/instances/1/", "/instances/3/"),
                };
                let (status, _) = req(s.method.as_str(), &uri)
                    .token(&f.scoped)
                    .send(&f.app)
                    .await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{} {uri}", s.method);
            }
            Access::Authenticated | Access::Open => {}
        }
        // The route exists: an admin is never answered "no route".
        let (_, body) = req(s.method.as_str(), &uri)
            .token(&f.admin)
            .send(&f.app)
            .await;
        assert!(
            !body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("no route"),
            "{} {uri}: {body}",
            s.method
        );
    }
    // Unknown paths under /api/ do not reveal themselves to strangers.
    let (status, _) = req("GET", "/api/v1/nope").send(&f.app).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = req("GET", "/api/v1/nope")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn label_scoped_roles_are_honoured() {
    let f = fixture().await;
    let (status, body) = req("GET", "/api/v1/instances")
        .token(&f.scoped)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<&str> = body["instances"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["prod", "staging"]);
    for (id, want) in [
        (1, StatusCode::OK),
        (2, StatusCode::OK),
        (3, StatusCode::FORBIDDEN),
    ] {
        let uri = format!("/api/v1/instances/{id}/samples/database");
        let (status, body) = req("GET", &uri).token(&f.scoped).send(&f.app).await;
        assert_eq!(status, want, "{uri}: {body}");
    }
    let (status, _) = req("GET", "/api/v1/instances/99/samples/database")
        .token(&f.scoped)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Global viewers see everything; admins too.
    for token in [&f.viewer, &f.admin] {
        let (_, body) = req("GET", "/api/v1/instances")
            .token(token)
            .send(&f.app)
            .await;
        assert_eq!(body["instances"].as_array().map(Vec::len), Some(3));
    }
    // No global role: no admin route; a token at most at the highest grant.
    let (status, _) = req("GET", "/api/v1/users")
        .token(&f.scoped)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = req("POST", "/api/v1/tokens")
        .token(&f.scoped)
        .json(json!({"name": "x", "role": "admin"}))
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = req("POST", "/api/v1/tokens")
        .token(&f.scoped)
        .json(json!({"name": "x", "role": "viewer"}))
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let capped = body["secret"].as_str().expect("secret").to_owned();
    let (_, body) = req("GET", "/api/v1/instances")
        .token(&capped)
        .send(&f.app)
        .await;
    assert_eq!(
        body["instances"].as_array().map(Vec::len),
        Some(2),
        "still label-scoped"
    );

    // Principal's checks directly: user on staging, viewer on prod, nothing on dev.
    let state = AppState::new(f.pool.clone());
    let p =
        lasect_api::auth::principal::authenticate(&state, Some(&format!("Bearer {}", f.scoped)))
            .await
            .expect("principal");
    assert!(p.require(Role::Viewer).is_err());
    assert!(p.require_on_instance(&f.pool, 2, Role::User).await.is_ok());
    assert!(p.require_on_instance(&f.pool, 1, Role::User).await.is_err());
    assert!(
        p.require_on_instance(&f.pool, 1, Role::Viewer)
            .await
            .is_ok()
    );
    assert!(
        p.require_on_instance(&f.pool, 3, Role::Viewer)
            .await
            .is_err()
    );
}

async fn login(app: &Router, username: &str, password: &str) -> (StatusCode, Value) {
    req("POST", "/api/v1/auth/login")
        .json(json!({"username": username, "password": password}))
        .send(app)
        .await
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn sign(alg: Algorithm, key: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(key)).expect("sign")
}

#[tokio::test]
async fn login_gives_working_tokens_and_forged_ones_are_refused() {
    let f = fixture().await;
    let (status, body) = login(&f.app, "admin", common::PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["role"], "admin");
    let access = body["access_token"].as_str().expect("access").to_owned();
    let (status, me) = req("GET", "/api/v1/auth/me")
        .token(&access)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["username"], "admin");

    let admin_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'admin'")
        .fetch_one(&f.pool)
        .await
        .expect("id");
    let good = json!({"sub": admin_id.to_string(), "iss": "lasect-api", "aud": "lasect",
                      "iat": now(), "exp": now() + 300});
    // Control: a token we sign correctly is accepted, so the refusals below are the attacks'.
    let token = sign(Algorithm::HS256, SECRET, &good);
    let (status, _) = req("GET", "/api/v1/auth/me")
        .token(&token)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);

    let with = |key: &str, value: Value| {
        let mut c = good.clone();
        c[key] = value;
        c
    };
    let without = |key: &str| {
        let mut c = good.clone();
        c.as_object_mut().expect("object").remove(key);
        c
    };
    let header_none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(good.to_string());
    let attacks = [
        (
            "bad signature",
            sign(
                Algorithm::HS256,
                b"another key of at least thirty-two bytes!",
                &good,
            ),
        ),
        ("alg none", format!("{header_none}.{payload}.")),
        ("other algorithm", sign(Algorithm::HS512, SECRET, &good)),
        (
            "expired",
            sign(Algorithm::HS256, SECRET, &with("exp", json!(now() - 3600))),
        ),
        (
            "exp as string",
            sign(
                Algorithm::HS256,
                SECRET,
                &with("exp", json!((now() + 300).to_string())),
            ),
        ),
        ("no exp", sign(Algorithm::HS256, SECRET, &without("exp"))),
        ("no iat", sign(Algorithm::HS256, SECRET, &without("iat"))),
        ("no aud", sign(Algorithm::HS256, SECRET, &without("aud"))),
        ("no iss", sign(Algorithm::HS256, SECRET, &without("iss"))),
        ("no sub", sign(Algorithm::HS256, SECRET, &without("sub"))),
        (
            "no signature",
            format!("{}.", token.rsplit_once('.').map_or("", |t| t.0)),
        ),
        (
            "wrong aud",
            sign(
                Algorithm::HS256,
                SECRET,
                &with("aud", json!("someone-else")),
            ),
        ),
        (
            "wrong iss",
            sign(Algorithm::HS256, SECRET, &with("iss", json!("evil"))),
        ),
        (
            "unknown sub",
            sign(Algorithm::HS256, SECRET, &with("sub", json!("999999"))),
        ),
        ("tampered", format!("{}x", &token[..token.len() - 1])),
    ];
    for (name, token) in attacks {
        let (status, body) = req("GET", "/api/v1/auth/me")
            .token(&token)
            .send(&f.app)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
    }

    // Wrong password and unknown user: the same 401.
    for (user, pw) in [
        ("admin", "wrong password!!"),
        ("nobody", "whatever password"),
    ] {
        let (status, body) = login(&f.app, user, pw).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["code"], "invalid_credentials");
    }
    // A disabled user can no longer use an access token already issued.
    let (_, body) = login(&f.app, "viewer", common::PASSWORD).await;
    let viewer_access = body["access_token"].as_str().expect("access").to_owned();
    let (status, _) = req("POST", "/api/v1/users/viewer/disable")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = req("GET", "/api/v1/auth/me")
        .token(&viewer_access)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = login(&f.app, "viewer", common::PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_replay_revokes_the_family() {
    let f = fixture().await;
    let (_, body) = login(&f.app, "admin", common::PASSWORD).await;
    let first = body["refresh_token"].as_str().expect("refresh").to_owned();
    assert!(first.starts_with("lsrt_"));
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE token_hash = $1")
            .bind(lasect_pki::hash_token(&first))
            .fetch_one(&f.pool)
            .await
            .expect("count");
    assert_eq!(stored, 1, "stored hashed");

    let refresh =
        |token: String| req("POST", "/api/v1/auth/refresh").json(json!({ "refresh_token": token }));
    let (status, body) = refresh(first.clone()).send(&f.app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = body["refresh_token"].as_str().expect("rotated").to_owned();
    assert_ne!(second, first);
    let access = body["access_token"].as_str().expect("access").to_owned();
    let (status, _) = req("GET", "/api/v1/auth/me")
        .token(&access)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);

    // The used one again: refused, and the live successor dies with it.
    let (status, body) = refresh(first).send(&f.app).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "invalid_refresh_token");
    let (status, _) = refresh(second).send(&f.app).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "family revoked");
    let audited: Vec<(String, String)> = sqlx::query_as(
        "SELECT actor, outcome FROM audit_log WHERE action = 'POST /api/v1/auth/refresh' ORDER BY id",
    )
    .fetch_all(&f.pool)
    .await
    .expect("audit");
    let audited: Vec<(&str, &str)> = audited
        .iter()
        .map(|(a, o)| (a.as_str(), o.as_str()))
        .collect();
    assert_eq!(
        audited,
        [
            ("admin", "success"),
            ("admin", "denied"),
            ("admin", "denied")
        ]
    );

    // Logout revokes; a revoked token cannot refresh.
    let (_, body) = login(&f.app, "admin", common::PASSWORD).await;
    let third = body["refresh_token"].as_str().expect("refresh").to_owned();
    let access = body["access_token"].as_str().expect("access").to_owned();
    let (status, body) = req("POST", "/api/v1/auth/logout")
        .token(&access)
        .json(json!({ "refresh_token": third }))
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revoked"], 1);
    let (status, _) = refresh(third).send(&f.app).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Garbage and unknown tokens.
    for bad in ["x", "lsrt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        let (status, _) = refresh(bad.to_owned()).send(&f.app).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn api_tokens_are_role_limited_expire_and_revoke() {
    let f = fixture().await;
    // Create a viewer token as admin.
    let (status, body) = req("POST", "/api/v1/tokens")
        .token(&f.admin)
        .json(json!({"name": "ci", "role": "viewer", "expires_in_secs": 3600}))
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["secret"].as_str().expect("secret").to_owned();
    let id = body["token"]["id"].as_i64().expect("id");
    assert!(secret.starts_with("lsat_"));
    assert!(body["token"]["expires_at"].is_string());
    let hash: String = sqlx::query_scalar("SELECT token_hash FROM api_tokens WHERE id = $1")
        .bind(id)
        .fetch_one(&f.pool)
        .await
        .expect("hash");
    assert_eq!(hash, lasect_pki::hash_token(&secret));

    // It works, as a viewer only, and records its last use.
    let (status, _) = req("GET", "/api/v1/instances")
        .token(&secret)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = req("GET", "/api/v1/users")
        .token(&secret)
        .send(&f.app)
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "capped at viewer although admin made it"
    );
    let (_, body) = req("GET", "/api/v1/tokens")
        .token(&f.admin)
        .send(&f.app)
        .await;
    let listed = body["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["id"] == id)
        .expect("listed")
        .clone();
    assert!(listed["last_used_at"].is_string(), "{listed}");
    assert!(listed.get("secret").is_none() && !body.to_string().contains(&secret));

    // Never above the creator's role.
    let (status, _) = req("POST", "/api/v1/tokens")
        .token(&f.viewer)
        .json(json!({"name": "up", "role": "admin"}))
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = req("POST", "/api/v1/tokens")
        .token(&secret)
        .json(json!({"name": "escalate", "role": "user"}))
        .send(&f.app)
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a viewer token cannot mint a user token"
    );

    // Revoked: refused.
    let (status, _) = req("DELETE", &format!("/api/v1/tokens/{id}"))
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = req("GET", "/api/v1/instances")
        .token(&secret)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("revoked")
    );

    // Expired: refused.
    let (_, body) = req("POST", "/api/v1/tokens")
        .token(&f.admin)
        .json(json!({"name": "short", "expires_in_secs": 60}))
        .send(&f.app)
        .await;
    let short = body["secret"].as_str().expect("secret").to_owned();
    let (status, _) = req("GET", "/api/v1/instances")
        .token(&short)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    sqlx::query(
        "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE name = 'short'",
    )
    .execute(&f.pool)
    .await
    .expect("age it");
    let (status, body) = req("GET", "/api/v1/instances")
        .token(&short)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("expired")
    );

    // A viewer cannot revoke someone else's token.
    let other: i64 = sqlx::query_scalar(
        "SELECT t.id FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE u.username = 'admin' LIMIT 1",
    )
    .fetch_one(&f.pool)
    .await
    .expect("admin token");
    let (status, _) = req("DELETE", &format!("/api/v1/tokens/{other}"))
        .token(&f.viewer)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn repeated_failures_from_one_source_block_that_source() {
    let f = fixture().await;
    // Per source: 6 failures from one address (any usernames) block that address only.
    // (Throttling per user and address: tests/login_abuse.rs.)
    for i in 0..6 {
        let (status, _) = req("POST", "/api/v1/auth/login")
            .json(json!({"username": format!("guess{i}"), "password": "whatever password"}))
            .from([192, 0, 2, 9])
            .send(&f.app)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = req("POST", "/api/v1/auth/login")
        .json(json!({"username": "admin", "password": common::PASSWORD}))
        .from([192, 0, 2, 9])
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _) = req("POST", "/api/v1/auth/login")
        .json(json!({"username": "admin", "password": common::PASSWORD}))
        .from([192, 0, 2, 10])
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn users_are_managed_by_admins() {
    let f = fixture().await;
    let (status, body) = req("POST", "/api/v1/users")
        .token(&f.admin)
        .json(json!({"username": "ops", "role": "user",
                     "grants": [{"key": "env", "value": "prod", "role": "admin"}]}))
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let password = body["generated_password"]
        .as_str()
        .expect("generated")
        .to_owned();
    assert_eq!(body["user"]["grants"][0]["role"], "admin");
    let (status, _) = login(&f.app, "ops", &password).await;
    assert_eq!(status, StatusCode::OK);
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE username = 'ops'")
        .fetch_one(&f.pool)
        .await
        .expect("hash");
    assert!(hash.starts_with("$argon2id$") && !hash.contains(&password));

    let bad = [
        (
            json!({"username": "ops", "password": "long enough password"}),
            StatusCode::CONFLICT,
        ),
        (json!({"username": "Bad Name"}), StatusCode::BAD_REQUEST),
        (
            json!({"username": "short", "password": "short"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"username": "x", "role": "root"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"username": "x", "extra": 1}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, want) in bad {
        let (status, answer) = req("POST", "/api/v1/users")
            .token(&f.admin)
            .json(body.clone())
            .send(&f.app)
            .await;
        assert_eq!(status, want, "{body}: {answer}");
    }
    let (status, body) = req("POST", "/api/v1/users/ops/role")
        .token(&f.admin)
        .json(json!({"role": "viewer"}))
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "viewer");
    assert_eq!(body["grants"], json!([]));
    let (status, _) = req("POST", "/api/v1/users/nobody/role")
        .token(&f.admin)
        .json(json!({"role": "viewer"}))
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = req("POST", "/api/v1/users/admin/disable")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "no locking yourself out");
    let (_, body) = req("GET", "/api/v1/users")
        .token(&f.admin)
        .send(&f.app)
        .await;
    let names: Vec<&str> = body["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(names, ["admin", "ops", "scoped", "viewer"]);
    assert!(
        !body.to_string().contains("argon2"),
        "no hashes in responses"
    );
}

#[tokio::test]
async fn agents_are_listed_enrolled_and_disabled_by_admins() {
    let f = fixture().await;
    let (status, body) = req("GET", "/api/v1/agents")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["agents"][0]["id"], "db-01");
    assert_eq!(body["agents"][0]["disabled"], false);

    let (status, body) = req("POST", "/api/v1/agents/enrollment-tokens")
        .token(&f.admin)
        .json(json!({"ttl_secs": 3600, "uses": 2, "agent_id": "db-02"}))
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    assert!(lasect_pki::looks_like_token(
        &token,
        lasect_pki::ENROLLMENT_TOKEN_PREFIX
    ));
    let (max_uses, agent, created_by): (i32, Option<String>, String) = sqlx::query_as(
        "SELECT max_uses, agent_id, created_by FROM enrollment_tokens WHERE token_hash = $1",
    )
    .bind(lasect_pki::hash_token(&token))
    .fetch_one(&f.pool)
    .await
    .expect("stored hashed");
    assert_eq!(
        (max_uses, agent.as_deref(), created_by.as_str()),
        (2, Some("db-02"), "admin")
    );
    for bad in [
        json!({"ttl_secs": 1}),
        json!({"ttl_secs": 3600, "uses": 0}),
        json!({"ttl_secs": 3600, "agent_id": "Bad/Id"}),
    ] {
        let (status, _) = req("POST", "/api/v1/agents/enrollment-tokens")
            .token(&f.admin)
            .json(bad.clone())
            .send(&f.app)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }

    let (status, body) = req("POST", "/api/v1/agents/db-01/disable")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["disabled"], true);
    assert_eq!(body["disabled_by"], "admin");
    let (status, _) = req("POST", "/api/v1/agents/nope/disable")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Its data stays readable.
    let (status, _) = req("GET", "/api/v1/instances/1/samples/database")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn every_mutating_call_is_audited_and_the_log_is_append_only() {
    let f = fixture().await;
    let calls = [
        req("POST", "/api/v1/users")
            .token(&f.admin)
            .json(json!({"username": "carol"})),
        req("POST", "/api/v1/users")
            .token(&f.viewer)
            .json(json!({"username": "mallory"})),
        req("POST", "/api/v1/users").json(json!({"username": "anon"})),
        req("POST", "/api/v1/agents/db-01/disable").token(&f.admin),
        req("POST", "/api/v1/auth/login")
            .json(json!({"username": "admin", "password": "bad password!!"})),
        req("POST", "/api/v1/tokens")
            .token(&f.admin)
            .json(json!({"name": "audit-me"})),
    ];
    for call in calls {
        call.send(&f.app).await;
    }
    // Reads are not audited.
    req("GET", "/api/v1/users")
        .token(&f.admin)
        .send(&f.app)
        .await;

    let (status, body) = req("GET", "/api/v1/audit?since=1h&limit=100")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows: Vec<(String, String, String, String)> = body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .rev()
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or("").to_owned(),
                e["action"].as_str().unwrap_or("").to_owned(),
                e["target"].as_str().unwrap_or("").to_owned(),
                e["outcome"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let want = [
        ("admin", "POST /api/v1/users", "/api/v1/users", "success"),
        ("viewer", "POST /api/v1/users", "/api/v1/users", "denied"),
        // Anonymous refusals (no credentials, a failed login) are counted per source and
        // minute instead (tests/login_abuse.rs).
        (
            "admin",
            "POST /api/v1/agents/{id}/disable",
            "/api/v1/agents/db-01/disable",
            "success",
        ),
        ("admin", "POST /api/v1/tokens", "/api/v1/tokens", "success"),
    ];
    let got: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), d.as_str()))
        .collect();
    assert_eq!(got, want);
    let entries = body["entries"].as_array().expect("entries");
    assert!(entries.iter().all(|e| e["source"] == "127.0.0.1"));
    let denied = entries
        .iter()
        .find(|e| e["actor"] == "viewer")
        .expect("denied row");
    assert!(
        denied["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("forbidden"),
        "{denied}"
    );
    assert!(
        !body.to_string().contains("lsat_"),
        "no secrets in the audit log"
    );

    // Filters.
    let (_, body) = req("GET", "/api/v1/audit?actor=viewer")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(body["entries"].as_array().map(Vec::len), Some(1));
    let (_, body) = req("GET", "/api/v1/audit?action=POST%20/api/v1/agents")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(body["entries"].as_array().map(Vec::len), Some(1));
    // Against the document: 400; well-formed but not a time or duration: 422.
    for (bad, expected) in [
        ("since=yesterday", StatusCode::UNPROCESSABLE_ENTITY),
        ("limit=0", StatusCode::BAD_REQUEST),
        ("limit=5000", StatusCode::BAD_REQUEST),
        ("foo=1", StatusCode::BAD_REQUEST),
    ] {
        let (status, _) = req("GET", &format!("/api/v1/audit?{bad}"))
            .token(&f.admin)
            .send(&f.app)
            .await;
        assert_eq!(status, expected, "{bad}");
    }
    let (status, _) = req("GET", "/api/v1/audit")
        .token(&f.viewer)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The store refuses changes, even to the API's own database user.
    for sql in [
        "UPDATE audit_log SET outcome = 'success'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let err = sqlx::query(sql).execute(&f.pool).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    // Only retention removes rows, and only old ones.
    sqlx::query(
        "INSERT INTO audit_log (time, actor, action, outcome) \
         VALUES (now() - interval '400 days', 'old', 'x', 'success')",
    )
    .execute(&f.pool)
    .await
    .expect("old row");
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&f.pool)
        .await
        .expect("count");
    let removed = lasect_api::auth::audit::apply_retention(&f.pool, 365)
        .await
        .expect("retention");
    assert_eq!(removed, 1);
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&f.pool)
        .await
        .expect("count");
    assert_eq!(after, before - 1);
    let err = sqlx::query("DELETE FROM audit_log")
        .execute(&f.pool)
        .await
        .expect_err("still guarded after retention");
    assert!(err.to_string().contains("append-only"));
}

#[tokio::test]
async fn first_start_creates_one_admin() {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    let dsn = pg.store_dsn().await.expect("migrated store");
    let pool = store_pool(&StoreDsn::new(dsn), Duration::from_secs(10)).expect("pool");
    let (name, password) = lasect_api::auth::users::bootstrap_first_admin(&pool)
        .await
        .expect("bootstrap")
        .expect("created");
    assert_eq!(name, "admin");
    assert!(password.len() >= 20);
    assert!(
        lasect_api::auth::users::bootstrap_first_admin(&pool)
            .await
            .expect("bootstrap")
            .is_none(),
        "only once"
    );
    let app = router(AppState::new(pool));
    let (status, body) = login(&app, "admin", &password).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
