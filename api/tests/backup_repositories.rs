//! Backup repositories on a migrated store (docs/BACKUPS.md, "Repositories"): an S3 repository
//! registered and run (its secret encrypted, never in an answer nor in the run's parameters); a
//! repository for a label serving every instance that carries it (instances gaining and losing
//! the label included, each with its own stanza and its own copy of the secrets), its refusals
//! per role; and `lasect-api secrets rotate` re-encrypting every repository secret with the new
//! key.

use std::time::Duration;

use axum::Router;
use lasect_api::auth::Role;
use lasect_api::auth::jwt::JwtKeys;
use lasect_api::auth::{AuthConfig, AuthState};
use lasect_api::routes::backup_label_repos::sync;
use lasect_api::server::store_pool;
use lasect_api::store_dsn::StoreDsn;
use lasect_api::{AppState, router};
use lasect_pki::secrets::{KeyFile, Keyring, decrypt_instance_secret};
use lasect_testkit::{PgCluster, PgOptions};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::http::req;

const SECRET_KEY: &str = "s3-secret-access-key-of-the-api-test-1f9a";
const PASSPHRASE: &str = "a-repository-passphrase-of-the-api-test";
const AZURE_KEY: &str = "azure-shared-key-of-the-label-test-77c2";

struct Setup {
    _pg: PgCluster,
    dsn: String,
    pool: PgPool,
    app: Router,
    key_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
    admin: String,
    viewer: String,
    /// `admin` on env=prod, `viewer` on env=staging, nothing global.
    scoped: String,
}

impl Setup {
    fn keyring(&self) -> std::sync::Arc<Keyring> {
        KeyFile::open(&self.key_path)
            .and_then(|k| k.keyring())
            .expect("keyring")
    }

    async fn call(
        &self,
        token: &str,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = req(method, uri).token(token);
        if let Some(b) = body {
            r = r.json(b);
        }
        let (status, value) = r.send(&self.app).await;
        (status.as_u16(), value)
    }

    async fn instance(&self, name: &str) -> i64 {
        sqlx::query_scalar("SELECT id FROM instances WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .expect("instance")
    }
}

async fn setup() -> Setup {
    let pg = PgCluster::start(PgOptions::default()).expect("start pg");
    let dsn = pg.store_dsn().await.expect("migrated store");
    let pool = store_pool(&StoreDsn::new(dsn.clone()), Duration::from_secs(10)).expect("pool");
    sqlx::raw_sql(
        "INSERT INTO agents (id, last_seen, control_connected_at, control_allowed) \
             VALUES ('db-01', now(), now(), '{sql,backup}');
         INSERT INTO instances (name, agent_id, labels) VALUES
             ('prod', 'db-01', '{\"env\": \"prod\"}'),
             ('staging', 'db-01', '{\"env\": \"staging\"}'),
             ('dev eu/1', 'db-01', '{\"env\": \"dev\"}');",
    )
    .execute(&pool)
    .await
    .expect("seed");
    let admin = crate::common::user(&pool, "admin", Some(Role::Admin), &[]).await;
    let viewer = crate::common::user(&pool, "viewer", Some(Role::Viewer), &[]).await;
    let scoped = crate::common::user(
        &pool,
        "scoped",
        None,
        &[
            ("env", "prod", Role::Admin),
            ("env", "staging", Role::Viewer),
        ],
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("secrets.keys");
    KeyFile::open_or_create(&key_path).expect("key file");
    let state = AppState::with_auth(
        pool.clone(),
        AuthState::new(JwtKeys::ephemeral(), AuthConfig::default()),
    )
    .with_secrets(KeyFile::open(&key_path).expect("key file"));
    Setup {
        _pg: pg,
        dsn,
        pool,
        app: router(state),
        key_path,
        _dir: dir,
        admin,
        viewer,
        scoped,
    }
}

fn s3(stanza: Option<&str>) -> Value {
    let mut body = json!({
        "repo_type": "s3",
        "path": "/lasect",
        "bucket": "backups",
        "endpoint": "s3.eu-west-1.amazonaws.com",
        "region": "eu-west-1",
        "key_id": "AKIA2LASECTAPITEST01",
        "uri_style": "path",
        "storage_port": 9443,
        "ca_file": "/etc/ssl/store-ca.pem",
        "secret_key": SECRET_KEY,
        "cipher_type": "aes-256-cbc",
        "cipher_pass": PASSPHRASE,
    });
    if let (Some(o), Some(s)) = (body.as_object_mut(), stanza) {
        o.insert("stanza".into(), s.into());
    }
    body
}

fn shows_no_secret(v: &Value) {
    let text = v.to_string();
    for secret in [SECRET_KEY, PASSPHRASE, AZURE_KEY] {
        assert!(!text.contains(secret), "a secret in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_repositories_run_with_their_secrets_kept_apart() {
    let s = setup().await;
    let prod = s.instance("prod").await;
    let repos = format!("/api/v1/instances/{prod}/backup/repositories");
    let (status, created) = s
        .call(&s.admin, "POST", &repos, Some(s3(Some("main"))))
        .await;
    assert_eq!(status, 201, "{created}");
    shows_no_secret(&created);
    assert_eq!(created["repo_type"], "s3");
    assert_eq!(created["storage_port"], 9443);
    assert_eq!(created["uri_style"], "path");
    assert_eq!(created["has_secret_key"], true);
    // A body of the wrong type's fields breaks the documented schema: 400, not stored.
    let mut azure_with_region = s3(Some("az"));
    azure_with_region["repo_type"] = "azure".into();
    let (status, refused) = s
        .call(&s.admin, "POST", &repos, Some(azure_with_region))
        .await;
    assert_eq!(status, 400, "{refused}");
    // An Azure key bound to the instance, its agent and the stanza.
    let (status, azure) = s
        .call(
            &s.admin,
            "POST",
            &repos,
            Some(
                json!({"stanza": "az", "repo_type": "azure", "path": "/p", "bucket": "c",
                "key_id": "lasectaccount", "secret_key": AZURE_KEY}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{azure}");
    let stored: Vec<u8> = sqlx::query_scalar(
        "SELECT secret_key_ciphertext FROM backup_repositories WHERE stanza = 'az'",
    )
    .fetch_one(&s.pool)
    .await
    .expect("ciphertext");
    let keyring = s.keyring();
    let opened = decrypt_instance_secret(&keyring, prod, "db-01", "backup:az:secret_key", &stored)
        .expect("bound to its row");
    assert_eq!(opened.plaintext.expose_secret(), AZURE_KEY);
    assert!(
        decrypt_instance_secret(&keyring, prod + 1, "db-01", "backup:az:secret_key", &stored)
            .is_err()
    );

    // A run on it: no longer refused; its stored parameters name the store, not the secrets.
    let (status, run) = s
        .call(
            &s.admin,
            "POST",
            &format!("{repos}/{}/backups?wait=0", created["id"]),
            Some(json!({"type": "full"})),
        )
        .await;
    assert_eq!(status, 202, "{run}");
    let params: Value = sqlx::query_scalar("SELECT params FROM runs WHERE id = $1")
        .bind(run["id"].as_i64().expect("run id"))
        .fetch_one(&s.pool)
        .await
        .expect("params");
    assert_eq!(params["repo"]["repo_type"], "s3", "{params}");
    assert_eq!(params["repo"]["bucket"], "backups", "{params}");
    assert_eq!(params["repo"]["storage_port"], 9443, "{params}");
    assert!(params["repo"].get("secret_key").is_none(), "{params}");
    shows_no_secret(&params);
    for token in [&s.viewer, &s.scoped] {
        let (status, list) = s.call(token, "GET", &repos, None).await;
        assert_eq!(status, 200, "{list}");
        shows_no_secret(&list);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_repository_serves_its_instances_and_rotation_reencrypts_repository_secrets() {
    let s = setup().await;
    let (prod, staging) = (s.instance("prod").await, s.instance("staging").await);
    let route = "/api/v1/backup/label-repositories";
    let mut body = s3(None);
    body["label_key"] = "env".into();
    body["label_value"] = "prod".into();

    // Who may: admin globally or on the label; viewers and other labels' admins may not.
    let (status, refused) = s.call(&s.viewer, "POST", route, Some(body.clone())).await;
    assert_eq!(status, 403, "{refused}");
    let mut staging_body = body.clone();
    staging_body["label_value"] = "staging".into();
    let (status, refused) = s.call(&s.scoped, "POST", route, Some(staging_body)).await;
    assert_eq!(status, 403, "a viewer of env=staging adds none: {refused}");
    let mut no_value = body.clone();
    no_value.as_object_mut().map(|o| o.remove("label_value"));
    let (status, refused) = s.call(&s.admin, "POST", route, Some(no_value)).await;
    assert_eq!(status, 400, "{refused}");

    let (status, label_repo) = s.call(&s.scoped, "POST", route, Some(body)).await;
    assert_eq!(status, 201, "{label_repo}");
    shows_no_secret(&label_repo);
    assert_eq!(label_repo["has_secret_key"], true);
    assert_eq!(label_repo["stanza"], Value::Null);
    let served = label_repo["instances"].as_array().expect("instances");
    assert_eq!(served.len(), 1, "{label_repo}");
    assert_eq!(served[0]["instance_id"], prod);
    assert_eq!(served[0]["stanza"], "prod", "named after the instance");
    let prod_repo = served[0]["repository_id"].as_i64().expect("repository");
    let (status, list) = s
        .call(
            &s.admin,
            "GET",
            &format!("/api/v1/instances/{prod}/backup/repositories"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list["repositories"][0]["label_repository_id"],
        label_repo["id"]
    );
    assert_eq!(list["repositories"][0]["repo_type"], "s3");

    // Another admin's repository for env=dev: derived stanzas take only what pgBackRest takes.
    let (status, dev_repo) = s
        .call(
            &s.admin,
            "POST",
            route,
            Some(
                json!({"label_key": "env", "label_value": "dev", "path": "/srv/pgbackrest",
                "config_path": "/etc/pgbackrest/lasect-{stanza}.conf"}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{dev_repo}");
    assert_eq!(dev_repo["instances"][0]["stanza"], "dev-eu-1", "{dev_repo}");
    let config: Option<String> = sqlx::query_scalar(
        "SELECT config_path FROM backup_repositories WHERE label_repository_id = $1",
    )
    .bind(dev_repo["id"].as_i64())
    .fetch_one(&s.pool)
    .await
    .expect("the dev instance's row");
    assert_eq!(
        config.as_deref(),
        Some("/etc/pgbackrest/lasect-dev-eu-1.conf"),
        "each instance its own persistent config"
    );

    // An instance gaining the label is served on the next round, with its own copy of the
    // secrets bound to it; losing it, it is no longer.
    sqlx::query("UPDATE instances SET labels = '{\"env\": \"prod\"}' WHERE id = $1")
        .bind(staging)
        .execute(&s.pool)
        .await
        .expect("relabel");
    let keyring = s.keyring();
    assert_eq!(sync(&s.pool, &keyring).await.expect("sync"), (1, 0));
    assert_eq!(sync(&s.pool, &keyring).await.expect("sync"), (0, 0), "once");
    let copy: Vec<u8> = sqlx::query_scalar(
        "SELECT secret_key_ciphertext FROM backup_repositories \
         WHERE instance_id = $1 AND label_repository_id = $2",
    )
    .bind(staging)
    .bind(label_repo["id"].as_i64())
    .fetch_one(&s.pool)
    .await
    .expect("staging's copy");
    let opened = decrypt_instance_secret(
        &keyring,
        staging,
        "db-01",
        "backup:staging:secret_key",
        &copy,
    )
    .expect("bound to staging");
    assert_eq!(opened.plaintext.expose_secret(), SECRET_KEY);
    // The scoped user views prod and staging's label repository, not dev's.
    let (status, seen) = s.call(&s.scoped, "GET", route, None).await;
    assert_eq!(status, 200, "{seen}");
    shows_no_secret(&seen);
    let seen = seen["label_repositories"].as_array().expect("list");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["instances"].as_array().map(Vec::len), Some(2));

    // A served row goes with its label, not by itself.
    let (status, refused) = s
        .call(
            &s.admin,
            "DELETE",
            &format!("/api/v1/instances/{prod}/backup/repositories/{prod_repo}"),
            None,
        )
        .await;
    assert_eq!(status, 409, "{refused}");

    // Rotation: every repository secret (the instances' copies and the template's) is
    // re-encrypted with the new key and still opens to the same plaintext.
    let rotated = lasect_api::secrets_cmd::rotate(&StoreDsn::new(s.dsn.clone()), &s.key_path)
        .await
        .expect("rotate");
    assert!(
        rotated.contains("re-encrypted 0 instance(s) and 6 backup repository secret(s)"),
        "{rotated}"
    );
    let after = s.keyring();
    type Pair = (Option<Vec<u8>>, Option<Vec<u8>>);
    let ciphertexts: Vec<Pair> = sqlx::query_as(
        "SELECT secret_key_ciphertext, cipher_pass_ciphertext FROM backup_repositories \
         UNION ALL SELECT secret_key_ciphertext, cipher_pass_ciphertext \
         FROM backup_label_repositories",
    )
    .fetch_all(&s.pool)
    .await
    .expect("ciphertexts");
    let all: Vec<Vec<u8>> = ciphertexts
        .into_iter()
        .flat_map(|(a, b)| [a, b])
        .flatten()
        .collect();
    assert_eq!(all.len(), 6);
    for c in &all {
        assert_eq!(
            Keyring::key_id_of(c).expect("key id"),
            after.current_key_id(),
            "sealed with the new key"
        );
    }
    let copy: Vec<u8> = sqlx::query_scalar(
        "SELECT cipher_pass_ciphertext FROM backup_repositories WHERE instance_id = $1",
    )
    .bind(staging)
    .fetch_one(&s.pool)
    .await
    .expect("staging's passphrase");
    let opened = decrypt_instance_secret(
        &after,
        staging,
        "db-01",
        "backup:staging:cipher_pass",
        &copy,
    )
    .expect("still bound to staging");
    assert_eq!(opened.plaintext.expose_secret(), PASSPHRASE);

    sqlx::query("UPDATE instances SET labels = '{}' WHERE id = $1")
        .bind(prod)
        .execute(&s.pool)
        .await
        .expect("unlabel");
    assert_eq!(sync(&s.pool, &after).await.expect("sync"), (0, 1));

    // Removing: viewers may not, a stranger's id is 404, the admin's removal takes the rows.
    let id = label_repo["id"].as_i64().expect("id");
    let (status, refused) = s
        .call(&s.viewer, "DELETE", &format!("{route}/{id}"), None)
        .await;
    assert_eq!(status, 403, "{refused}");
    let (status, _) = s
        .call(&s.admin, "DELETE", &format!("{route}/{}", id + 100), None)
        .await;
    assert_eq!(status, 404);
    // A label the caller does not view: as if it did not exist.
    let (status, hidden) = s
        .call(
            &s.scoped,
            "DELETE",
            &format!("{route}/{}", dev_repo["id"]),
            None,
        )
        .await;
    assert_eq!(status, 404, "{hidden}");
    let (status, _) = s
        .call(&s.scoped, "DELETE", &format!("{route}/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM backup_repositories WHERE label_repository_id = $1",
    )
    .bind(id)
    .fetch_one(&s.pool)
    .await
    .expect("count");
    assert_eq!(left, 0);
}
