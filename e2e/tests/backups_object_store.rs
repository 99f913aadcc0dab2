//! Backups into object stores through the real binaries (issue 17, docs/BACKUPS.md,
//! "Repositories"): pgBackRest 2.45 against moto's S3 server and gcp-storage-emulator (each
//! behind TLS with a certificate of the test's CA, which pgBackRest verifies with `ca_file`) and
//! Azurite's blob service (its own TLS, the same CA). moto checks every S3 request's access key
//! and SigV4 signature (`/moto-api/reset-auth` after the set-up made an IAM user, its access
//! key and policy through moto's IAM API). An S3 repository registered through the API, an
//! Azure one through the CLI (`--secret-key-file`) and a GCS one (a token), each with the
//! persistent config the server's archive_command names; stanzas created, a full backup into
//! each, the stored catalogue listing the three; a GCS repository for a label the instance
//! carries serving it without a persistent config (stanza created, no config left behind,
//! `lasect backup repo labels`). Faults, each a failed run with pgBackRest's own text: a wrong
//! Azure key (403); a wrong S3 secret key (stanza-create 403, backup `SignatureDoesNotMatch`),
//! with no catalogue stored for it, and the stanza registered again with the right key created;
//! a bucket or container that does not exist in each store. After `lasect-api secrets rotate`
//! the repository secrets still reach pgBackRest. The secrets are in no API answer, no run
//! stored, and no process's log. Not tested here: a wrong GCS token (the emulator takes any),
//! and a GCS upload larger than pgBackRest's chunk (`repo-storage-upload-chunk-size`, 4 MiB for
//! GCS), which pgBackRest makes a resumable upload whose id it reads from the
//! `x-guploader-uploadid` header that the emulator does not send ("upload id missing"; the test
//! cluster's files and WAL stay under it). Needs pgBackRest and the emulators
//! (`scripts/deps.sh --test` installs them).

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
/// Not the secret moto made for the test's access key: its signatures do not match.
const S3_WRONG_SECRET: &str = "moto-wrong-secret-access-key-lasect-e2e-9c27";
const BUCKET: &str = "lasect-backups";
/// A bucket (S3, GCS) or container (Azure) no store has.
const MISSING_BUCKET: &str = "lasect-never-created";
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

/// One plain HTTP request to an emulator (`head`: method and path); its answer, which must
/// be a 200.
async fn plain_http(port: u16, head: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the emulator");
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let request = format!(
        "{head} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.expect("answer");
    assert_eq!(
        answer.split_whitespace().nth(1),
        Some("200"),
        "{head}: {answer}"
    );
    answer
}

/// Creates the bucket in an emulator before either checks credentials: moto's `PUT /bucket`,
/// the GCS emulator's `POST /storage/v1/b`.
async fn create_bucket(port: u16, gcs: bool) {
    let json = [("Content-Type", "application/json")];
    if gcs {
        let body = format!("{{\"name\": \"{BUCKET}\"}}");
        plain_http(port, "POST /storage/v1/b?project=lasect", &json, &body).await;
    } else {
        plain_http(port, &format!("PUT /{BUCKET}"), &json, "").await;
    }
}

/// An access key of moto's IAM (an id and its secret, both made by moto) for a user allowed
/// every S3 action (on every bucket, so a missing one is NoSuchBucket rather than a refusal).
async fn moto_access_key(port: u16) -> (String, String) {
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
    iam_call(port, "CreateUser").await;
    let key = iam_call(port, "CreateAccessKey").await;
    let put_policy = format!(
        "PutUserPolicy&PolicyName=backups&PolicyDocument={}",
        form_encoded(policy)
    );
    iam_call(port, &put_policy).await;
    (
        xml_text(&key, "AccessKeyId"),
        xml_text(&key, "SecretAccessKey"),
    )
}

/// An IAM action about the user `lasect`, before moto checks signatures.
async fn iam_call(port: u16, action: &str) -> String {
    // moto's server takes the service from the Authorization header's credential scope.
    let headers = [
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIALASECTE2ESETUP01/20260101/us-east-1/iam/\
             aws4_request, SignedHeaders=host, Signature=0",
        ),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let body = format!("Action={action}&UserName=lasect&Version=2010-05-08");
    plain_http(port, "POST /", &headers, &body).await
}

/// From now on moto checks each request's access key and SigV4 signature.
async fn moto_checks_signatures(port: u16) {
    let answer = plain_http(
        port,
        "POST /moto-api/reset-auth",
        &[("Content-Type", "text/plain")],
        "0",
    )
    .await;
    assert!(answer.contains("\"status\": \"ok\""), "{answer}");
}

fn form_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn xml_text(xml: &str, tag: &str) -> String {
    let start = xml
        .find(&format!("<{tag}>"))
        .unwrap_or_else(|| panic!("no {tag} in {xml}"))
        + tag.len()
        + 2;
    let len = xml[start..]
        .find(&format!("</{tag}>"))
        .unwrap_or_else(|| panic!("no end of {tag} in {xml}"));
    xml[start..start + len].to_owned()
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

fn assert_no_secret(secrets: &[&str], what: &str, text: &str) {
    for secret in secrets {
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
    let gcs_config = dir.path().join("gcs.conf");
    let cluster = PgCluster::start(PgOptions {
        settings: vec![
            ("archive_mode".into(), "on".into()),
            (
                "archive_command".into(),
                format!(
                    "'pgbackrest --config={} --stanza=s3 archive-push %p && \
                     pgbackrest --config={} --stanza=az archive-push %p && \
                     pgbackrest --config={} --stanza=gcs archive-push %p'",
                    s3_config.display(),
                    azure_config.display(),
                    gcs_config.display()
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
    let (s3_key_id, s3_secret) = moto_access_key(moto_port).await;
    moto_checks_signatures(moto_port).await;
    let secrets = [
        s3_secret.as_str(),
        S3_WRONG_SECRET,
        AZURE_KEY,
        AZURE_WRONG_KEY,
        GCS_TOKEN,
    ];
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
            "key_id": s3_key_id,
            "secret_key": s3_secret,
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
    assert_no_secret(&secrets, "the S3 repository", &s3.to_string());
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
    assert_no_secret(&secrets, "the CLI's answer", &added);
    let azure: Value = serde_json::from_str(&added).expect("JSON");
    assert_eq!(azure["repo_type"], "azure", "{azure}");
    assert_eq!(azure["has_secret_key"], true, "{azure}");
    // GCS with a token, its persistent config holding it for archive-push.
    let (status, gcs) = stack
        .api(
            Method::POST,
            &repos,
            Some(json!({
                "stanza": "gcs", "repo_type": "gcs", "path": "/lasect-gcs", "bucket": BUCKET,
                "endpoint": "localhost", "storage_port": gcs_port, "key_type": "token",
                "secret_key": GCS_TOKEN, "ca_file": ca_file.display().to_string(),
                "config_path": gcs_config.display().to_string(),
            })),
        )
        .await;
    assert_eq!(status, 201, "{gcs}");
    let s3_path = format!("{repos}/{}", s3["id"]);
    let azure_path = format!("{repos}/{}", azure["id"]);
    let gcs_path = format!("{repos}/{}", gcs["id"]);

    // Every stanza before any backup: the archive_command pushes each WAL segment to all three.
    let mut runs = vec![
        create_stanza(&stack, &s3_path).await,
        create_stanza(&stack, &azure_path).await,
        create_stanza(&stack, &gcs_path).await,
    ];
    for config in [&s3_config, &azure_config, &gcs_config] {
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
    // A full backup into each; the stored catalogue lists each.
    for (path, id) in [
        (&s3_path, &s3["id"]),
        (&azure_path, &azure["id"]),
        (&gcs_path, &gcs["id"]),
    ] {
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

    // A repository for a label, without a persistent config: the instance carrying the label
    // is served with a stanza named after it, and its own copy of the token reaches pgBackRest
    // in its environment; the private directory is gone after each run.
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
    assert_no_secret(&secrets, "the label repository", &by_label.to_string());
    let served = &by_label["instances"][0];
    assert_eq!(served["instance_id"], instance, "{by_label}");
    assert_eq!(served["stanza"], "stored", "{by_label}");
    let served_path = format!("{repos}/{}", served["repository_id"]);
    let created = create_stanza(&stack, &served_path).await;
    let prefix = format!("lasect-pgbackrest-{}-", created["id"]);
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .expect("temp dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "a config left behind: {left:?}");
    runs.push(created);
    let served_info = backup_run(&stack, &format!("{served_path}/info?wait=120"), None).await;
    assert_eq!(served_info["status"], "succeeded", "{served_info}");
    assert_eq!(served_info["summary"]["stanza"], "stored", "{served_info}");
    runs.push(served_info);
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

    // The right S3 key id with a wrong secret: moto's signature differs from pgBackRest's.
    let wrong_s3_body = || {
        let mut body = s3_body("s3wrong", "/lasect-s3wrong", None);
        body["secret_key"] = S3_WRONG_SECRET.into();
        body
    };
    let (status, wrong) = stack.api(Method::POST, &repos, Some(wrong_s3_body())).await;
    assert_eq!(status, 201, "{wrong}");
    let wrong_path = format!("{repos}/{}", wrong["id"]);
    let failed = backup_run(
        &stack,
        &format!("{wrong_path}/stanza?wait=120"),
        Some(json!({"action": "create"})),
    )
    .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("pgBackRest stanza-create failed") && error.contains("403 (FORBIDDEN)"),
        "{failed}"
    );
    runs.push(failed);
    // A backup reads backup.info first: moto's answer names the signature.
    let failed = backup_run(
        &stack,
        &format!("{wrong_path}/backups?wait=120"),
        Some(json!({"type": "full"})),
    )
    .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("pgBackRest backup failed") && error.contains("SignatureDoesNotMatch"),
        "{failed}"
    );
    runs.push(failed);
    // Nothing of it stored: no catalogue, no backup of it listed; removed, the stanza
    // registered again with the right key is created on the same path.
    let stored: i64 = store
        .query_one(
            "SELECT (SELECT count(*) FROM backup_catalogues WHERE repository_id = $1) + \
                    (SELECT count(*) FROM backup_catalogue_entries WHERE repository_id = $1)",
            &[&wrong["id"].as_i64().expect("id")],
        )
        .await
        .expect("catalogue rows")
        .get(0);
    assert_eq!(
        stored, 0,
        "a catalogue stored for a repository never reached"
    );
    let (status, body) = stack.api(Method::DELETE, &wrong_path, None).await;
    assert_eq!(status, 204, "{body}");
    let mut right_body = wrong_s3_body();
    right_body["secret_key"] = s3_secret.as_str().into();
    let (status, right) = stack.api(Method::POST, &repos, Some(right_body)).await;
    assert_eq!(status, 201, "{right}");
    runs.push(create_stanza(&stack, &format!("{repos}/{}", right["id"])).await);

    // A bucket or container that is not there: pgBackRest's account of the store's answer.
    let mut s3_missing = s3_body("s3missing", "/lasect", None);
    s3_missing["bucket"] = MISSING_BUCKET.into();
    let missing = [
        (s3_missing, "NoSuchBucket".to_owned()),
        (
            json!({
                "stanza": "azmissing", "repo_type": "azure", "path": "/lasect",
                "bucket": MISSING_BUCKET, "key_id": AZURE_ACCOUNT, "secret_key": AZURE_KEY,
                "endpoint": "localhost", "uri_style": "path", "storage_port": azure_port,
                "ca_file": ca_file.display().to_string(),
            }),
            "ContainerNotFound".to_owned(),
        ),
        (
            json!({
                "stanza": "gcsmissing", "repo_type": "gcs", "path": "/lasect",
                "bucket": MISSING_BUCKET, "endpoint": "localhost", "storage_port": gcs_port,
                "key_type": "token", "secret_key": GCS_TOKEN,
                "ca_file": ca_file.display().to_string(),
            }),
            // The emulator answers without a body: the request line names the bucket.
            format!("404 (Not Found): | GET /storage/v1/b/{MISSING_BUCKET}/o"),
        ),
    ];
    for (body, says) in missing {
        let (status, repository) = stack.api(Method::POST, &repos, Some(body)).await;
        assert_eq!(status, 201, "{repository}");
        let failed = backup_run(
            &stack,
            &format!("{repos}/{}/stanza?wait=120", repository["id"]),
            Some(json!({"action": "create"})),
        )
        .await;
        assert_eq!(failed["status"], "failed", "{failed}");
        let error = failed["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("pgBackRest stanza-create failed") && error.contains(says.as_str()),
            "{failed}"
        );
        runs.push(failed);
    }

    // A new key: every repository secret re-encrypted, and still handed to pgBackRest.
    let rotated = stack.rotate_secrets();
    assert!(rotated.contains("backup repository secret(s)"), "{rotated}");
    let info = backup_run(&stack, &format!("{azure_path}/info?wait=120"), None).await;
    assert_eq!(info["status"], "succeeded", "{info}");
    runs.push(info);

    // The secrets: in no answer, no stored run, no log.
    for run in &runs {
        assert_no_secret(&secrets, "a run", &run.to_string());
    }
    let (status, list) = stack.api(Method::GET, &repos, None).await;
    assert_eq!(status, 200, "{list}");
    assert_no_secret(&secrets, "the repository list", &list.to_string());
    for row in store
        .query(
            "SELECT params::text || coalesce(summary::text, '') || coalesce(error, '') FROM runs",
            &[],
        )
        .await
        .expect("runs")
    {
        assert_no_secret(&secrets, "the store's runs", &row.get::<_, String>(0));
    }
    for secret in secrets {
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
