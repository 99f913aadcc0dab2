//! The OpenAPI document is exactly as strict as the handlers: Schemathesis (an external
//! OpenAPI fuzzer, PyPI), run with its default checks against the real stack (store, ingest,
//! api, an agent collecting a monitored cluster), finds nothing. A request the document calls
//! valid is accepted, one it calls invalid is refused, every answer is documented, and no
//! request makes a server error.
//!
//! `make test` installs Schemathesis into `target/schemathesis-venv` (`scripts/deps.sh --test`);
//! `LASECT_SCHEMATHESIS` names another executable.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use lasect_e2e::{Stack, instance_toml, wait_listening};
use lasect_testkit::{PgCluster, PgOptions};

fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("LASECT_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/schemathesis-venv/bin/schemathesis");
    assert!(
        venv.exists(),
        "Schemathesis is not installed at {}: run `make test` (or `scripts/deps.sh --test`), \
         or set LASECT_SCHEMATHESIS",
        venv.display()
    );
    venv
}

/// An admin token whose id no fuzzer guesses: `DELETE /tokens/{id}` with small ids is among
/// what it sends, and revoking the token it runs with would stop the run.
async fn fuzzing_token(stack: &Stack) -> String {
    let token = lasect_pki::new_token(lasect_pki::API_TOKEN_PREFIX);
    stack
        .store()
        .await
        .execute(
            "INSERT INTO api_tokens (id, user_id, name, token_hash, role) OVERRIDING SYSTEM VALUE
             SELECT 987654321, id, 'schemathesis', $1, 'admin' FROM users WHERE username = 'admin'",
            &[&lasect_pki::hash_token(&token)],
        )
        .await
        .expect("insert the fuzzing token");
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_with_its_default_checks() {
    let _load = crate::support::heavy().await;
    let fuzzer = schemathesis();
    let stack = Stack::new("fuzz-agent").await;
    let monitored = PgCluster::start(PgOptions::default()).expect("monitored cluster");
    let _ingest = stack.start_ingest(&stack.secrets_toml());
    let mut api = stack.spawn_api();
    wait_listening(&mut api);
    let instance = instance_toml("main", &monitored, "postgres").await;
    stack.agent_config(
        stack.ingest_port,
        &format!("[collect]\ninterval_secs = 1\n{instance}"),
    );
    let _agent = stack.start_agent(&[]);
    // The instance is known before fuzzing, so instance routes find something to act on.
    let start = Instant::now();
    loop {
        let (status, list) = stack
            .api(reqwest::Method::GET, "api/v1/instances", None)
            .await;
        if status == 200 && list.to_string().contains("\"main\"") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the instance never showed up: {status} {list}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let token = fuzzing_token(&stack).await;
    let base = format!("https://127.0.0.1:{}", stack.api_port);
    let report = stack.path("schemathesis");
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(&fuzzer)
        .arg("--config-file")
        .arg(here.join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{base}/api/v1/openapi.json"))
        .arg("--url")
        .arg(&base)
        .arg("--header")
        .arg(format!("Authorization: Bearer {token}"))
        .arg("--tls-verify")
        .arg(stack.tls().join("ca.pem"))
        // Small enough for CI's 2 cores, large enough that every operation gets good and bad
        // bodies, parameters at their bounds, and the coverage phase's edge cases. A request
        // may wait up to 120 s for its run (`wait`): the timeout is above that.
        .args(["--max-examples", "15", "--workers", "2"])
        .args(["--request-timeout", "180"])
        // A network-level failure only (never an HTTP answer) is tried again: a POST sent on a
        // pooled keep-alive connection the server is closing at that moment fails with "EOF
        // occurred in violation of protocol", and the client does not resend a POST by itself.
        // A request that really breaks the server fails again and is still reported.
        .args(["--request-retries", "2"])
        // A WebSocket: OpenAPI cannot describe the upgrade, so a plain GET is refused (400).
        // `api/tests/live.rs` and `e2e/tests/live.rs` test it over real WebSockets.
        .args(["--exclude-path", "/api/v1/live"])
        .arg("--report-dir")
        .arg(&report)
        .current_dir(stack.path(""))
        .env("SCHEMATHESIS_HOOKS", here.join("schemathesis_hooks.py"))
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found failures (exit {:?}):\n{stdout}\n{stderr}",
        out.status.code()
    );
}
