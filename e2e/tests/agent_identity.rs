//! Agent identity through the real binaries: `lasect-api ca init --store-dsn` registers an
//! agent so no unbound enrollment token can claim its id; enrollment tokens are listed without
//! their secret and revoked with the `lasect` CLI; an operator revokes one certificate with the
//! CLI and ingest cuts the running agent off; all of it admin only and audited. A DSN stored
//! before ciphertexts were bound to their row is re-encrypted bound when the API starts.

use std::process::Command;
use std::time::{Duration, Instant};

use lasect_e2e::{Stack, run_ok, wait_listening};
use lasect_pki::secrets::{FIELD_DSN, Keyring, LEGACY_DSN_AAD, decrypt_instance_secret};
use lasect_testkit::{ChildGuard, binary_path};
use reqwest::Method;

/// Deadline of each wait (not a timing assertion).
const BOUND: Duration = Duration::from_secs(60);

fn lines_with(child: &ChildGuard, needle: &str) -> usize {
    child.lines().iter().filter(|l| l.contains(needle)).count()
}

async fn batches(store: &tokio_postgres::Client, agent: &str) -> i64 {
    store
        .query_one(
            "SELECT count(*) FROM ingest_batches WHERE agent_id = $1",
            &[&agent],
        )
        .await
        .expect("count batches")
        .get(0)
}

async fn dsn_of(store: &tokio_postgres::Client, id: i64) -> Vec<u8> {
    store
        .query_one("SELECT dsn_ciphertext FROM instances WHERE id = $1", &[&id])
        .await
        .expect("instance")
        .get(0)
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < BOUND, "{what} not within {BOUND:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_ids_revoked_tokens_and_revoked_certificates() {
    let stack = Stack::new("ca-agent").await;
    let store = stack.store().await;

    // An agent issued by `ca init` with the store at hand: registered before it ever connects.
    let registered = run_ok(
        Command::new(binary_path("lasect-api"))
            .args(["ca", "init", "--dir"])
            .arg(stack.tls())
            .args([
                "--agent",
                "db-registered",
                "--store-dsn",
                &stack.store_dsn(),
            ]),
    );
    assert!(
        registered.contains("agent db-registered: certificate")
            && registered.contains("registered"),
        "{registered}"
    );

    // A DSN stored before ciphertexts were bound to their row: the API re-encrypts it bound
    // when it starts, and `secrets rotate` keeps it bound.
    let keyring = Keyring::load_or_create(&stack.secrets_key()).expect("key file");
    store
        .execute("INSERT INTO agents (id) VALUES ('ca-agent')", &[])
        .await
        .expect("agent row");
    let legacy = keyring
        .encrypt(b"host=/tmp dbname=old", LEGACY_DSN_AAD)
        .expect("encrypt");
    let instance: i64 = store
        .query_one(
            "INSERT INTO instances (name, agent_id, source, state, dsn_ciphertext)
             VALUES ('old', 'ca-agent', 'api', 'active', $1) RETURNING id",
            &[&legacy],
        )
        .await
        .expect("legacy instance")
        .get(0);

    let mut ingest = stack.spawn_ingest(&format!(
        "{}[agents]\nrefresh_interval_secs = 1\n",
        stack.enrollment_toml(7 * 86_400)
    ));
    let mut api = stack.spawn_api();
    wait_listening(&mut ingest);
    wait_listening(&mut api);
    let bound = |c: &[u8], keyring: &Keyring| {
        let d = decrypt_instance_secret(keyring, instance, "ca-agent", FIELD_DSN, c)
            .expect("decrypts for its own row");
        assert_eq!(d.plaintext.expose_secret(), "host=/tmp dbname=old");
        assert!(!d.legacy, "re-encrypted bound to its row");
        assert!(decrypt_instance_secret(keyring, instance + 1, "ca-agent", FIELD_DSN, c).is_err());
    };
    bound(&dsn_of(&store, instance).await, &keyring);
    let rotated = stack.rotate_secrets();
    assert!(rotated.contains("re-encrypted 1 instance"), "{rotated}");
    let keyring = Keyring::load(&stack.secrets_key()).expect("rotated keys");
    bound(&dsn_of(&store, instance).await, &keyring);

    // An unbound token cannot take the registered id (nor any existing one).
    let token = stack.enrollment_token(None, 5, "1 hour").await;
    let out = stack.enroll(&token, "db-registered", &stack.path("thief"));
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already taken"),
        "{out:?}"
    );

    // Tokens: created, listed without their secret, revoked with the CLI.
    let created = stack.cli(&["agent", "token", "create", "--ttl", "1h", "--uses", "2"]);
    let secret = created
        .lines()
        .find_map(|l| l.strip_prefix("enrollment token (shown once): "))
        .expect("token printed")
        .trim()
        .to_owned();
    let (status, list) = stack
        .api(Method::GET, "api/v1/agents/enrollment-tokens", None)
        .await;
    assert_eq!(status, 200, "{list}");
    assert!(!list.to_string().contains(&secret), "a secret in {list}");
    let tokens = list["tokens"].as_array().expect("tokens");
    let newest = &tokens[0];
    assert_eq!(newest["state"], "active", "{list}");
    assert_eq!(newest["created_by"], "admin", "{list}");
    let id = newest["id"].as_i64().expect("id").to_string();
    let table = stack.cli(&["agent", "token", "list"]);
    assert!(
        table.contains("active") && table.contains("admin"),
        "{table}"
    );
    let revoked = stack.cli(&["agent", "token", "revoke", &id]);
    assert!(revoked.contains("revoked"), "{revoked}");
    let out = stack.enroll(&secret, "db-new", &stack.path("new"));
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("revoked"),
        "{out:?}"
    );

    // A viewer can do none of it.
    run_ok(Command::new(binary_path("lasect-api")).args([
        "admin",
        "create",
        "--store-dsn",
        &stack.store_dsn(),
        "--username",
        "watcher",
        "--role",
        "viewer",
    ]));
    let viewer = run_ok(Command::new(binary_path("lasect-api")).args([
        "admin",
        "token",
        "--store-dsn",
        &stack.store_dsn(),
        "--username",
        "watcher",
        "--name",
        "v",
    ]));
    for (method, path) in [
        (Method::GET, "api/v1/agents/enrollment-tokens".to_owned()),
        (
            Method::POST,
            format!("api/v1/agents/enrollment-tokens/{id}/revoke"),
        ),
        (
            Method::GET,
            "api/v1/agents/ca-agent/certificates".to_owned(),
        ),
        (
            Method::POST,
            "api/v1/agents/ca-agent/certificates/01/revoke".to_owned(),
        ),
    ] {
        let (status, body) = stack
            .api_as(viewer.trim(), method, &path, Some(serde_json::json!({})))
            .await;
        assert_eq!(status, 403, "{path}: {body}");
    }

    // The `ca init` agent pushes; its certificate is recorded at first use; revoking it with
    // the CLI cuts the running agent off.
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 1\n[[instances]]\nname = \"main\"\ndsn = \"{}\"\n",
            stack.store_pg.dsn("postgres")
        ),
    );
    let agent = stack.start_agent(&[]);
    wait_until("the agent pushes", async || {
        batches(&store, "ca-agent").await >= 2
    })
    .await;
    let certs = stack.cli(&["agent", "cert", "list", "ca-agent"]);
    assert!(certs.contains("first_use"), "{certs}");
    let (_, listed) = stack
        .api(Method::GET, "api/v1/agents/ca-agent/certificates", None)
        .await;
    let serial = listed["certificates"][0]["serial"]
        .as_str()
        .expect("serial")
        .to_owned();
    assert_eq!(listed["certificates"][0]["current"], true, "{listed}");
    let out = stack.cli(&[
        "agent",
        "cert",
        "revoke",
        "ca-agent",
        &serial.to_uppercase(),
    ]);
    assert!(out.contains("revoked"), "{out}");
    wait_until("ingest refuses the revoked certificate", async || {
        lines_with(&ingest, "refused a handshake with a revoked certificate") > 0
    })
    .await;
    // A push committed just before the cut may still be finishing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stored = batches(&store, "ca-agent").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        batches(&store, "ca-agent").await,
        stored,
        "nothing stored with a revoked certificate"
    );
    drop(agent);

    let audited: i64 = store
        .query_one(
            "SELECT count(*) FROM audit_log WHERE actor = 'admin' AND outcome = 'success'
               AND (action LIKE 'POST %/certificates/%/revoke'
                    OR action LIKE 'POST %/enrollment-tokens/%/revoke')",
            &[],
        )
        .await
        .expect("audit")
        .get(0);
    assert_eq!(audited, 2, "both revocations are audited");
}
