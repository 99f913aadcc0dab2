//! The admin console (`console/`) in a real browser, over the real binaries: a monitored
//! cluster watched by `lasect-agent` through `lasect-ingest`, the console served by
//! `lasect-api` from its embedded assets, driven by Debian's chromium with playwright-core
//! (`console/tests/console.mjs`; both installed by `scripts/deps.sh --test`).
//!
//! - signing in (a wrong password first: the API's message is shown), the fleet with the
//!   instance (up, a recent sample, its version and role), search, the instance page with a
//!   chart whose lines are the API's answer for the same range, signing out (no token kept);
//! - a reload keeps the session (the refresh token); a viewer sees the instance but no action
//!   it may not take, changes its password and signs in with the new one;
//! - the CSP header is sent and the page causes no violation, no console error and no failed
//!   request (but the wrong password's 401);
//! - `console/dist`, committed and embedded, is exactly what the sources build.
//!
//! The same stack also runs the other scenarios: the pages of `console/src/pages` while the
//! agent serves runs (`console_pages.rs`, screenshots in `target/console-shots/`), and live
//! updates with the operations pages (`console_live.rs`).
//!
//! Screenshots of each page are kept in `target/console-e2e/`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lasect_e2e::{Stack, wait_listening};
use lasect_testkit::{LogFormat, PgCluster, PgOptions};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::browser::{chromium, console_dir, require_tools};

const AGENT_ID: &str = "e2e-console";
const INSTANCE: &str = "monitored";
const BOUND: Duration = Duration::from_secs(60);
const VIEWER_PASSWORD: &str = "a viewer's long password";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser() {
    let _load = crate::support::heavy().await;
    require_tools();
    let stack = Stack::new(AGENT_ID).await;
    // jsonlog: the statement page shows the auto_explain plans the agent reads from it.
    let monitored = PgCluster::start(PgOptions {
        stat_statements: true,
        log_format: Some(LogFormat::Json),
        ..PgOptions::default()
    })
    .expect("monitored cluster");
    crate::console_pages::prepare(&monitored).await;
    let mut ingest = stack.spawn_ingest("");
    let mut api = stack.spawn_api();
    wait_listening(&mut ingest);
    wait_listening(&mut api);
    stack.agent_config(
        stack.ingest_port,
        &format!(
            "[collect]\ninterval_secs = 1\nintervals = {{ activity = 1, lock = 1, statement = 1 }}\n\
             [control]\n{}\n{}",
            lasect_e2e::ALLOW_ALL,
            lasect_e2e::instance_toml(INSTANCE, &monitored, "postgres").await
        ),
    );
    let agent = stack.start_agent(&[]);

    let (status, created) = stack
        .api(
            Method::POST,
            "/api/v1/users",
            Some(json!({"username": "viewer", "password": VIEWER_PASSWORD, "role": "viewer"})),
        )
        .await;
    assert_eq!(status, 201, "create the viewer: {created}");

    // The script runs once the store has what it checks: the instance, its version, and a
    // database sample and an activity sample the charts and sections read.
    let start = Instant::now();
    let instance = loop {
        let (_, list) = stack.api(Method::GET, "/api/v1/instances", None).await;
        let found = list["instances"]
            .as_array()
            .and_then(|l| l.iter().find(|i| i["name"] == INSTANCE))
            .cloned();
        if let Some(i) = found.filter(|i| i["server_version_num"].is_i64()) {
            let id = i["id"].as_i64().expect("id");
            let (_, series) = stack
                .api(
                    Method::GET,
                    &format!("/api/v1/instances/{id}/metrics/database"),
                    None,
                )
                .await;
            let (_, activity) = stack
                .api(
                    Method::GET,
                    &format!("/api/v1/instances/{id}/samples/activity"),
                    None,
                )
                .await;
            let has_point = series["series"].as_array().is_some_and(|s| {
                s.iter().any(|s| {
                    s["points"]
                        .as_array()
                        .is_some_and(|p| p.iter().any(|p| p["numbackends"].is_number()))
                })
            });
            if has_point && activity["rows"].as_array().is_some_and(|r| !r.is_empty()) {
                break i;
            }
        }
        assert!(
            start.elapsed() < BOUND,
            "no samples of {INSTANCE} after {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // The other pages run SQL, EXPLAIN, snapshots and rows: while the agent still serves them.
    crate::console_pages::scenario(
        &stack,
        &monitored,
        instance["id"].as_i64().expect("id"),
        &console_dir(),
        &chromium(),
        ("viewer", VIEWER_PASSWORD),
    )
    .await;

    // No sample arrives from now on: the chart the browser draws and the API's answer for the
    // same range can be compared exactly.
    drop(agent);

    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-e2e");
    let mut script = crate::support::browser::console_script(
        &stack,
        &console_dir(),
        "tests/console.mjs",
        &chromium(),
        &artifacts,
    );
    script
        .env("VIEWER_USER", "viewer")
        .env("VIEWER_PASSWORD", VIEWER_PASSWORD)
        .env("INSTANCE", INSTANCE);
    let output = script.output().expect("run node");
    let facts = crate::support::browser::facts(&output, "the browser script");

    assert_eq!(facts["wrongPasswordMessage"], "wrong username or password");
    let row = facts["fleetRow"].as_str().expect("fleet row");
    // The short form of server_version_num, e.g. 150018 as 15.18.
    let num = instance["server_version_num"]
        .as_i64()
        .expect("server_version_num");
    let version = format!("{}.{}", num / 10000, num % 10000);
    for want in [INSTANCE, AGENT_ID, &version, "primary", "up"] {
        assert!(row.contains(want), "the fleet row shows {want:?}: {row}");
    }
    assert!(
        facts["chartPoints"].as_u64().is_some_and(|n| n > 0),
        "{facts}"
    );
    assert_chart_is_the_apis(
        &stack,
        instance["id"].as_i64().expect("id"),
        &facts["chart"],
    )
    .await;
    assert_eq!(
        facts["adminActions"],
        json!(["Test connection", "Remove instance"])
    );
    assert_eq!(facts["viewerActions"], json!([]));
    assert_eq!(facts["signedInAfterReload"], true, "{facts}");
    assert_eq!(facts["passwordChanged"], true, "{facts}");
    assert_eq!(facts["cspViolations"], json!([]));
    let csp = facts["csp"].as_str().expect("csp");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    for page in ["sign-in", "fleet", "instance", "instance-viewer"] {
        assert!(
            artifacts.join(format!("{page}.png")).is_file(),
            "screenshot of {page}"
        );
    }

    // Live updates and the operations pages, with the agent running again.
    crate::console_live::scenario(&stack, &monitored, INSTANCE, &console_dir(), &chromium()).await;
}

/// The lines the browser drew (label, points with a value, their sum) are those of the API's
/// answer for the same family, column, range and step.
async fn assert_chart_is_the_apis(stack: &Stack, id: i64, chart: &Value) {
    let field = |k: &str| {
        chart[k]
            .as_str()
            .unwrap_or_else(|| panic!("chart {k}: {chart}"))
    };
    let column = field("column");
    let query = format!(
        "from={}&to={}&step={}",
        field("from").replace('+', "%2B"),
        field("to").replace('+', "%2B"),
        chart["step"]
    );
    let (status, series) = stack
        .api(
            Method::GET,
            &format!("/api/v1/instances/{id}/metrics/{}?{query}", field("family")),
            None,
        )
        .await;
    assert_eq!(status, 200, "{series}");
    let mut want: Vec<(String, u64, f64)> = series["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|s| {
            let label = s["key"]
                .as_object()
                .expect("key")
                .values()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(" / ");
            let values: Vec<f64> = s["points"]
                .as_array()
                .expect("points")
                .iter()
                .filter_map(|p| p[column].as_f64())
                .collect();
            (label, values.len() as u64, values.iter().sum())
        })
        .collect();
    let mut drawn: Vec<(String, u64, f64)> = chart["digest"]
        .as_array()
        .expect("digest")
        .iter()
        .map(|l| {
            (
                l["label"].as_str().expect("label").to_owned(),
                l["n"].as_u64().expect("n"),
                l["sum"].as_f64().expect("sum"),
            )
        })
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    drawn.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        want.iter()
            .any(|(label, n, _)| label == "postgres" && *n > 0),
        "the API has points of postgres: {want:?}"
    );
    assert_eq!(
        want.len(),
        drawn.len(),
        "lines: {want:?} vs drawn {drawn:?}"
    );
    for (w, d) in want.iter().zip(&drawn) {
        assert_eq!((&w.0, w.1), (&d.0, d.1), "{want:?} vs drawn {drawn:?}");
        assert!(
            (w.2 - d.2).abs() <= 1e-9 * w.2.abs().max(1.0),
            "{want:?} vs drawn {drawn:?}"
        );
    }
}

/// Every file under `dir`, by relative path, with its bytes.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("below root");
                out.push((
                    rel.display().to_string(),
                    std::fs::read(&path).expect("read"),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn committed_dist_is_what_the_sources_build() {
    let _load = crate::support::heavy_blocking();
    require_tools();
    let out = tempfile::tempdir().expect("tempdir");
    let built = out.path().join("dist");
    let output = Command::new("node")
        .args([
            "node_modules/vite/bin/vite.js",
            "build",
            "--logLevel",
            "warn",
        ])
        .arg("--outDir")
        .arg(&built)
        .current_dir(console_dir())
        .output()
        .expect("run vite");
    assert!(
        output.status.success(),
        "vite build failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let committed = tree(&console_dir().join("dist"));
    let fresh = tree(&built);
    let names = |t: &[(String, Vec<u8>)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&committed),
        names(&fresh),
        "console/dist is stale: run `npm run build` in console/ and commit console/dist"
    );
    for ((name, a), (_, b)) in committed.iter().zip(&fresh) {
        assert!(
            a == b,
            "console/dist/{name} differs from what the sources build: run `npm run build` \
             in console/ and commit console/dist"
        );
    }
}
