//! Backups into object stores through the real binaries (issue 17, docs/BACKUPS.md,
//! "Repositories"): pgBackRest 2.45 against moto's S3 server and gcp-storage-emulator (each
//! behind TLS with a certificate of the test's CA, which pgBackRest verifies with `ca_file`) and
//! Azurite's blob service (its own TLS, the same CA). An S3 repository registered through the
//! API and an Azure one through the CLI (`--secret-key-file`), both with the persistent config
//! the server's archive_command names; stanzas created, a full backup into each, the stored
//! catalogue listing both; a GCS repository (a token) without a persistent config: its stanza
//! created and its catalogue read, no config left behind; a GCS repository for a label the
//! instance carries serving it (stanza created, `lasect backup repo labels`); wrong Azure credentials fail
//! with pgBackRest's own error text; after `lasect-api secrets rotate` the repository secrets
//! still reach pgBackRest. The secrets are in no API answer, no run stored, and no process's
//! log. Needs pgBackRest and the emulators (`scripts/deps.sh --test` installs them).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use lasect_e2e::Stack;
use lasect_testkit::{ChildGuard, PgCluster, PgOptions, TestCa, free_port};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::logs::assert_not_logged;
use crate::support::pgbackrest_files::{
    backup_run, create_stanza, give_to_server, require_pgbackrest,
};

const AGENT_ID: &str = "objstore-agent";
const S3_SECRET: &str = "moto-secret-access-key-lasect-e2e-5b1d";
const S3_KEY_ID: &str = "AKIA2LASECTE2ETEST01";
const BUCKET: &str = "lasect-backups";
const AZURE_ACCOUNT: &str = "lasectbackups";
/// Azurite takes any base64 key for an account it is told of.
const AZURE_KEY: &str = "bGFzZWN0LWF6dXJpdGUta2V5LW9mLXRoZS1lMmUtdGVzdA==";
const AZURE_WRONG_KEY: &str = "bm90LXRoZS1henVyaXRlLWtleS1vZi10aGUtdGVzdA==";
const CONTAINER: &str = "lasect-container";
const GCS_TOKEN: &str = "gcs-oauth-token-lasect-e2e-40c8";

/// `target/` of the workspace, where `scripts/deps.sh --test` installs the emulators.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
}

fn emulator(relative: &str) -> PathBuf {
    let path = target_dir().join(relative);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/deps.sh --test",
        path.display()
    );
    path
}

/// A TLS front for a plain HTTP server on `upstream`, with `pair`'s certificate. It closes
/// each connection with a TLS close_notify when the server closes its side (moto's server
/// closes after each answer; pgBackRest's TLS refuses a bare end of stream).
async fn tls_front(pair: &lasect_testkit::CertPair, upstream: u16) -> u16 {
    let certs: Vec<_> = rustls_pemfile::certs(&mut pair.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("certificate");
    let key = rustls_pemfile::private_key(&mut pair.key_pem.as_bytes())
        .expect("key")
        .expect("a key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    return;
                };
                // Ends each side as the other ended: the server's close becomes close_notify.
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

/// Creates the bucket in an emulator (neither checks credentials) with a plain HTTP request:
/// moto's `PUT /bucket`, the GCS emulator's `POST /storage/v1/b`.
async fn create_bucket(port: u16, gcs: bool) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the emulator");
    let (head, body) = if gcs {
        (
            "POST /storage/v1/b?project=lasect".to_owned(),
            format!("{{\"name\": \"{BUCKET}\"}}"),
        )
    } else {
        (format!("PUT /{BUCKET}"), String::new())
    };
    let request = format!(
        "{head} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.expect("answer");
    assert_eq!(answer.split_whitespace().nth(1), Some("200"), "{answer}");
}

/// Creates the container with pgBackRest itself (its `repo-create`, as root, with a config of
/// its own).
fn create_container(dir: &Path, port: u16, ca: &Path) {
    let config = dir.join("create-container.conf");
    std::fs::write(
        &config,
        format!(
            "[global]\nrepo1-type=azure\nrepo1-path=/lasect\nrepo1-azure-container={CONTAINER}\n\
             repo1-azure-account={AZURE_ACCOUNT}\nrepo1-azure-endpoint=localhost\n\
             repo1-azure-uri-style=path\nrepo1-storage-port={port}\nrepo1-storage-ca-file={}\n\
             log-level-console=warn\n",
            ca.display()
        ),
    )
    .expect("config");
    let out = Command::new("pgbackrest")
        .arg(format!("--config={}", config.display()))
        .arg("repo-create")
        .env("PGBACKREST_REPO1_AZURE_KEY", AZURE_KEY)
        .output()
        .expect("pgbackrest repo-create");
    assert!(out.status.success(), "{out:?}");
    std::fs::remove_file(&config).expect("remove the config");
}

/// Waits until the API's stored catalogue holds run `run` of `repository`; returns the
/// repository's entry.
async fn stored_catalogue(stack: &Stack, instance: i64, repository: i64, run: i64) -> Value {
    let start = std::time::Instant::now();
    loop {
        let (status, body) = stack
            .api(
                Method::GET,
                &format!("api/v1/backups?instance_id={instance}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let entry = body["repositories"]
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|r| r["repository_id"] == repository && r["run_id"] == run)
            })
            .cloned();
        if let Some(entry) = entry {
            return entry;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the catalogue of run {run} was never stored: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [S3_SECRET, AZURE_KEY, AZURE_WRONG_KEY, GCS_TOKEN] {
        assert!(!text.contains(secret), "{what} holds a secret: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_into_s3_azure_and_gcs_through_the_agent() {
    let _pgbackrest = crate::support::pgbackrest().await;
    require_pgbackrest();
    let moto_server = emulator("object-store-venv/bin/moto_server");
    let azurite_blob = emulator("azurite/node_modules/.bin/azurite-blob");
    let gcs_server = emulator("object-store-venv/bin/gcp-storage-emulator");

    // The database user's directory: the CA file pgBackRest reads and the persistent configs.
    let dir = tempfile::Builder::new()
        .prefix("lasect-objstore-")
        .tempdir()
        .expect("tempdir");
    let s3_config = dir.path().join("s3.conf");
    let azure_config = dir.path().join("azure.conf");
    let cluster = PgCluster::start(PgOptions {
        settings: vec![
            ("archive_mode".into(), "on".into()),
            (
                "archive_command".into(),
                format!(
                    "'pgbackrest --config={} --stanza=s3 archive-push %p && \
                     pgbackrest --config={} --stanza=az archive-push %p'",
                    s3_config.display(),
                    azure_config.display()
                ),
            ),
        ],
        ..PgOptions::default()
    })
    .expect("archiving cluster");
    give_to_server(&cluster, dir.path());

    let ca = TestCa::new("lasect object store test CA").expect("CA");
    let ca_file = dir.path().join("store-ca.pem");
    ca.write_cert(&ca_file).expect("CA file");
    std::fs::set_permissions(&ca_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let pair = ca.server_cert(&["localhost"]).expect("server certificate");
    let tls_dir = tempfile::tempdir().expect("tls dir");
    let (cert_file, key_file) = (
        tls_dir.path().join("store.pem"),
        tls_dir.path().join("store.key"),
    );
    std::fs::write(&cert_file, &pair.cert_pem).expect("cert");
    std::fs::write(&key_file, &pair.key_pem).expect("key");

    // moto (plain HTTP) behind the test's TLS front; Azurite with its own TLS.
    let moto_port = free_port();
    let mut moto = ChildGuard::spawn({
        let mut c = Command::new(&moto_server);
        c.args(["-H", "127.0.0.1", "-p", &moto_port.to_string()]);
        c
    })
    .expect("spawn moto_server");
    moto.wait_for_line("Running on", Duration::from_secs(60))
        .expect("moto listens");
    let s3_port = tls_front(&pair, moto_port).await;
    create_bucket(moto_port, false).await;
    let gcs_plain_port = free_port();
    let mut gcs_emulator = ChildGuard::spawn({
        let mut c = Command::new(&gcs_server);
        c.args(["start", "--host", "127.0.0.1", "--in-memory", "--port"])
            .arg(gcs_plain_port.to_string());
        c
    })
    .expect("spawn gcp-storage-emulator");
    gcs_emulator
        .wait_for_line("All services started", Duration::from_secs(60))
        .expect("the GCS emulator listens");
    let gcs_port = tls_front(&pair, gcs_plain_port).await;
    create_bucket(gcs_plain_port, true).await;
    let azure_port = free_port();
    let azurite_dir = tempfile::tempdir().expect("azurite dir");
    let mut azurite = ChildGuard::spawn({
        let mut c = Command::new(&azurite_blob);
        c.args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &azure_port.to_string(),
        ])
        .arg("--cert")
        .arg(&cert_file)
        .arg("--key")
        .arg(&key_file)
        .arg("--location")
        .arg(azurite_dir.path())
        .args(["--skipApiVersionCheck", "--loose"])
        .env("AZURITE_ACCOUNTS", format!("{AZURE_ACCOUNT}:{AZURE_KEY}"));
        c
    })
    .expect("spawn azurite");
    azurite
        .wait_for_line("successfully listens", Duration::from_secs(60))
        .expect("azurite listens");
    create_container(tls_dir.path(), azure_port, &ca_file);

    let stack = Stack::new(AGENT_ID).await;
    let (ingest, api) = stack.start_ingest_and_api(&stack.secrets_toml());
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 5\n[control]\nallow = [\"sql\", \"backup\"]\n\
             [[instances]]\nname = \"stored\"\ndsn = \"{}\"\n",
            cluster.dsn("postgres")
        ),
    );
    let mut agent = stack.start_agent(&[]);
    agent
        .wait_for_line("Control stream open", Duration::from_secs(60))
        .expect("control stream");
    let instance = stack.instance_id("stored").await;
    let repos = format!("api/v1/instances/{instance}/backup/repositories");
    let s3_body = |stanza: &str, path: &str, config: Option<&Path>| {
        let mut body = json!({
            "stanza": stanza,
            "repo_type": "s3",
            "path": path,
            "bucket": BUCKET,
            "endpoint": "localhost",
            "region": "us-east-1",
            "key_id": S3_KEY_ID,
            "secret_key": S3_SECRET,
            "uri_style": "path",
            "storage_port": s3_port,
            "ca_file": ca_file.display().to_string(),
        });
        if let Some(c) = config {
            body["config_path"] = c.display().to_string().into();
        }
        body
    };

    // S3 through the API, Azure through the CLI (the key from a file).
    let (status, s3) = stack
        .api(
            Method::POST,
            &repos,
            Some(s3_body("s3", "/lasect", Some(&s3_config))),
        )
        .await;
    assert_eq!(status, 201, "{s3}");
    assert_no_secret("the S3 repository", &s3.to_string());
    let key_file_path = tls_dir.path().join("azure.key");
    std::fs::write(&key_file_path, format!("{AZURE_KEY}\n")).expect("key file");
    let azure_port_text = azure_port.to_string();
    let added = stack.cli(&[
        "backup",
        "repo",
        "add",
        "-i",
        "stored",
        "--stanza",
        "az",
        "--type",
        "azure",
        "--path",
        "/lasect",
        "--bucket",
        CONTAINER,
        "--key-id",
        AZURE_ACCOUNT,
        "--endpoint",
        "localhost",
        "--uri-style",
        "path",
        "--storage-port",
        &azure_port_text,
        "--store-ca-file",
        &ca_file.display().to_string(),
        "--config-path",
        &azure_config.display().to_string(),
        "--secret-key-file",
        &key_file_path.display().to_string(),
        "-o",
        "json",
    ]);
    assert_no_secret("the CLI's answer", &added);
    let azure: Value = serde_json::from_str(&added).expect("JSON");
    assert_eq!(azure["repo_type"], "azure", "{azure}");
    assert_eq!(azure["has_secret_key"], true, "{azure}");
    let s3_path = format!("{repos}/{}", s3["id"]);
    let azure_path = format!("{repos}/{}", azure["id"]);

    // Stanzas, then a full backup into each; the stored catalogue lists both.
    let mut runs = vec![
        create_stanza(&stack, &s3_path).await,
        create_stanza(&stack, &azure_path).await,
    ];
    for config in [&s3_config, &azure_config] {
        let meta = std::fs::metadata(config).expect("the persistent config");
        assert_eq!(
            meta.mode() & 0o777,
            0o600,
            "{} is private",
            config.display()
        );
        assert_eq!(
            meta.uid(),
            std::fs::metadata(cluster.data_dir()).expect("data").uid()
        );
    }
    for (path, id) in [(&s3_path, &s3["id"]), (&azure_path, &azure["id"])] {
        let run = backup_run(
            &stack,
            &format!("{path}/backups?wait=120"),
            Some(json!({"type": "full"})),
        )
        .await;
        assert_eq!(run["status"], "succeeded", "{run}");
        let label = run["summary"]["backup"]["label"]
            .as_str()
            .expect("the new backup's label")
            .to_owned();
        let stored = stored_catalogue(
            &stack,
            instance,
            id.as_i64().expect("id"),
            run["id"].as_i64().expect("run id"),
        )
        .await;
        let backups = stored["backups"].as_array().expect("backups");
        assert!(
            backups
                .iter()
                .any(|b| b["label"] == label.as_str() && b["type"] == "full"),
            "{stored}"
        );
        assert!(
            backups[0]["repo_size"].as_i64().is_some_and(|n| n > 0),
            "{stored}"
        );
        runs.push(run);
    }
    let listed = stack.cli(&["backup", "list", "-i", "stored"]);
    assert!(listed.contains("full"), "{listed}");

    // GCS, without a persistent config: the token travels in pgBackRest's environment and the
    // private directory is gone after the run.
    let (status, gcs) = stack
        .api(
            Method::POST,
            &repos,
            Some(json!({
                "stanza": "gcs", "repo_type": "gcs", "path": "/lasect-gcs", "bucket": BUCKET,
                "endpoint": "localhost", "storage_port": gcs_port, "key_type": "token",
                "secret_key": GCS_TOKEN, "ca_file": ca_file.display().to_string(),
            })),
        )
        .await;
    assert_eq!(status, 201, "{gcs}");
    let gcs_path = format!("{repos}/{}", gcs["id"]);
    let created = create_stanza(&stack, &gcs_path).await;
    let prefix = format!("lasect-pgbackrest-{}-", created["id"]);
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .expect("temp dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "a config left behind: {left:?}");
    runs.push(created);
    let gcs_info = backup_run(&stack, &format!("{gcs_path}/info?wait=120"), None).await;
    assert_eq!(gcs_info["status"], "succeeded", "{gcs_info}");
    assert_eq!(gcs_info["summary"]["stanza"], "gcs", "{gcs_info}");
    runs.push(gcs_info);

    // A repository for a label: the instance carrying it is served with a stanza named after
    // it, and its own copy of the token reaches pgBackRest.
    let store = stack.store().await;
    store
        .execute(
            "UPDATE instances SET labels = '{\"tier\": \"objstore\"}' WHERE id = $1",
            &[&instance],
        )
        .await
        .expect("label the instance");
    let (status, by_label) = stack
        .api(
            Method::POST,
            "api/v1/backup/label-repositories",
            Some(json!({
                "label_key": "tier", "label_value": "objstore", "repo_type": "gcs",
                "path": "/lasect-label", "bucket": BUCKET, "endpoint": "localhost",
                "storage_port": gcs_port, "key_type": "token", "secret_key": GCS_TOKEN,
                "ca_file": ca_file.display().to_string(),
            })),
        )
        .await;
    assert_eq!(status, 201, "{by_label}");
    assert_no_secret("the label repository", &by_label.to_string());
    let served = &by_label["instances"][0];
    assert_eq!(served["instance_id"], instance, "{by_label}");
    assert_eq!(served["stanza"], "stored", "{by_label}");
    let created = create_stanza(&stack, &format!("{repos}/{}", served["repository_id"])).await;
    runs.push(created);
    let labels = stack.cli(&["backup", "repo", "labels"]);
    assert!(
        labels.contains("tier=objstore") && labels.contains("stored (stored)"),
        "{labels}"
    );

    // Wrong credentials: a failed run with pgBackRest's own account of the store's refusal.
    let (status, wrong) = stack
        .api(
            Method::POST,
            &repos,
            Some(json!({
                "stanza": "azwrong", "repo_type": "azure", "path": "/lasect-wrong",
                "bucket": CONTAINER, "key_id": AZURE_ACCOUNT, "secret_key": AZURE_WRONG_KEY,
                "endpoint": "localhost", "uri_style": "path", "storage_port": azure_port,
                "ca_file": ca_file.display().to_string(),
            })),
        )
        .await;
    assert_eq!(status, 201, "{wrong}");
    let failed = backup_run(
        &stack,
        &format!("{repos}/{}/stanza?wait=120", wrong["id"]),
        Some(json!({"action": "create"})),
    )
    .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("pgBackRest stanza-create failed") && error.contains("403"),
        "{failed}"
    );
    runs.push(failed);

    // A new key: every repository secret re-encrypted, and still handed to pgBackRest.
    let rotated = stack.rotate_secrets();
    assert!(rotated.contains("backup repository secret(s)"), "{rotated}");
    let info = backup_run(&stack, &format!("{azure_path}/info?wait=120"), None).await;
    assert_eq!(info["status"], "succeeded", "{info}");
    runs.push(info);

    // The secrets: in no answer, no stored run, no log.
    for run in &runs {
        assert_no_secret("a run", &run.to_string());
    }
    let (status, list) = stack.api(Method::GET, &repos, None).await;
    assert_eq!(status, 200, "{list}");
    assert_no_secret("the repository list", &list.to_string());
    for row in store
        .query(
            "SELECT params::text || coalesce(summary::text, '') || coalesce(error, '') FROM runs",
            &[],
        )
        .await
        .expect("runs")
    {
        assert_no_secret("the store's runs", &row.get::<_, String>(0));
    }
    for secret in [S3_SECRET, AZURE_KEY, AZURE_WRONG_KEY, GCS_TOKEN] {
        assert_not_logged(
            secret,
            &[("agent", &agent), ("ingest", &ingest), ("api", &api)],
        );
    }
    drop(agent);
    drop(moto);
    drop(azurite);
    drop(gcs_emulator);
}
