//! Channel secrets stay secret: the real `lasect-api` (logging at debug) notifies through a
//! channel of every kind whose receiver fails — a webhook and a Slack hook answering 500 or
//! not listening, an SMTP server refusing the login, an Alertmanager not listening — and
//! neither the API's log output, nor any API answer, nor the audit log holds the SMTP
//! password, the webhook's signing key or the Slack URL's secret path.

use std::time::{Duration, Instant};

use lasect_e2e::{ALERTS_EVERY_SECOND, Stack, wait_listening};
use lasect_testkit::ChildGuard;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const AGENT_ID: &str = "alerts-secrets-agent";
const BOUND: Duration = Duration::from_secs(120);
const WEBHOOK_KEY: &str = "hook-key-Z4m8Qw1rTy6pL";
const SMTP_PASSWORD: &str = "smtp-pass-7Hq2vB9xWc";
/// The secret part of a Slack incoming-webhook URL (its path).
const SLACK_PATH: &str = "/services/T0SEC/B0SEC/slackpathK3j9Vd";

/// An HTTP receiver that reads each request and answers 500.
async fn failing_http() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 13\r\n\
                          connection: close\r\n\r\nreceiver down",
                    )
                    .await;
            });
        }
    });
    port
}

/// An SMTP server (plain, no TLS) that refuses every login.
async fn refusing_smtp() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 mail.test ESMTP\r\n").await;
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
                    let answer: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250-mail.test\r\n250 AUTH PLAIN LOGIN\r\n",
                        "AUTH" => b"535 5.7.8 Authentication credentials invalid\r\n",
                        "QUIT" => b"221 bye\r\n",
                        _ => b"503 5.5.1 bad sequence\r\n",
                    };
                    if write.write_all(answer).await.is_err() || verb == "QUIT" {
                        break;
                    }
                }
            });
        }
    });
    port
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_channel_secret_in_logs_answers_or_audit() {
    let _guard = crate::support::fault_test().await;
    let stack = Stack::new(AGENT_ID).await;
    let mut command = stack.api_command(ALERTS_EVERY_SECOND);
    command
        // Everything the process logs, libraries' debug output included.
        .env("LASECT_LOG", "debug");
    let mut api = ChildGuard::spawn(command).expect("spawn api");
    wait_listening(&mut api);

    let http = failing_http().await;
    let smtp = refusing_smtp().await;
    let mut answers: Vec<Value> = Vec::new();
    let channels = [
        json!({"name": "hook-500", "kind": "webhook", "insecure_http": true,
               "url": format!("http://127.0.0.1:{http}/hook"), "secret": WEBHOOK_KEY}),
        json!({"name": "hook-gone", "kind": "webhook", "insecure_http": true,
               "url": format!("http://127.0.0.1:{}/hook", closed_port()), "secret": WEBHOOK_KEY}),
        json!({"name": "slack-500", "kind": "slack", "insecure_http": true,
               "url": format!("http://127.0.0.1:{http}{SLACK_PATH}")}),
        json!({"name": "slack-gone", "kind": "slack", "insecure_http": true,
               "url": format!("http://127.0.0.1:{}{SLACK_PATH}", closed_port())}),
        json!({"name": "mail", "kind": "email", "insecure_http": true,
               "url": format!("smtp://127.0.0.1:{smtp}"), "email_from": "lasect@example.com",
               "email_to": ["dba@example.com"], "smtp_username": "lasect",
               "secret": SMTP_PASSWORD}),
        json!({"name": "am-gone", "kind": "alertmanager", "insecure_http": true,
               "url": format!("http://127.0.0.1:{}", closed_port())}),
    ];
    let mut ids = Vec::new();
    for body in channels {
        let name = body["name"].as_str().expect("name").to_owned();
        let (status, created) = stack
            .api(Method::POST, "api/v1/alerts/channels", Some(body))
            .await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_i64().expect("id"));
        answers.push(created);
        let (status, route) = stack
            .api(
                Method::POST,
                "api/v1/alerts/routes",
                Some(json!({"channel": name})),
            )
            .await;
        assert_eq!(status, 201, "{route}");
        answers.push(route);
    }
    // Edits that replace each kind of secret go through the same paths.
    let (status, edited) = stack
        .api(
            Method::PATCH,
            &format!("api/v1/alerts/channels/{}", ids[0]),
            Some(json!({"secret": WEBHOOK_KEY, "timeout_secs": 5})),
        )
        .await;
    assert_eq!(status, 200, "{edited}");
    answers.push(edited);
    let (status, edited) = stack
        .api(
            Method::PATCH,
            &format!("api/v1/alerts/channels/{}", ids[2]),
            Some(json!({"url": format!("http://127.0.0.1:{http}{SLACK_PATH}")})),
        )
        .await;
    assert_eq!(status, 200, "{edited}");
    answers.push(edited);
    // The CLI: a new signing key on stdin and the channel's routing in one edit.
    let mut cli = stack.cli_command(&[
        "alert",
        "channel",
        "edit",
        "hook-500",
        "--new-secret",
        "--secret-stdin",
        "--min-severity",
        "warning",
        "--repeat",
        "1h",
    ]);
    cli.env("LASECT_TOKEN", &stack.admin_token);
    let out = lasect_testkit::run_with_stdin(&mut cli, &format!("{WEBHOOK_KEY}\n")).expect("cli");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("channel hook-500 changed"), "{printed}");
    answers.push(Value::String(printed));
    let (_, routes) = stack.api(Method::GET, "api/v1/alerts/routes", None).await;
    let route = routes["routes"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["channel"] == "hook-500"))
        .unwrap_or_else(|| panic!("{routes}"));
    assert_eq!(
        (&route["min_severity"], &route["repeat_secs"]),
        (&json!("warning"), &json!(3600)),
        "{route}"
    );
    // A refused edit: the answer names the problem, not the secret.
    let (status, refused) = stack
        .api(
            Method::PATCH,
            &format!("api/v1/alerts/channels/{}", ids[2]),
            Some(json!({"url": format!("ftp://127.0.0.1{SLACK_PATH}")})),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    answers.push(refused);
    for id in &ids {
        let (status, tested) = stack
            .api(
                Method::POST,
                &format!("api/v1/alerts/channels/{id}/test"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{tested}");
        assert_eq!(tested["ok"], false, "every receiver fails: {tested}");
        answers.push(tested);
    }

    // An alert fires: the notifier sends to every channel, each attempt fails.
    let store = stack.store().await;
    store
        .batch_execute(&format!(
            "INSERT INTO agents (id) VALUES ('{AGENT_ID}'); \
             INSERT INTO instances (name, agent_id) VALUES ('secret-test', '{AGENT_ID}')"
        ))
        .await
        .expect("instance");
    let instance: i64 = store
        .query_one("SELECT id FROM instances WHERE name = 'secret-test'", &[])
        .await
        .expect("id")
        .get(0);
    let (status, rule) = stack
        .api(
            Method::POST,
            "api/v1/alerts/rules",
            Some(json!({
                "name": "secret_test_conn", "severity": "critical",
                "scope": {"instance_id": instance},
                "condition": {"kind": "threshold", "family": "activity",
                              "column": "connection_use_percent", "agg": "last",
                              "window_secs": 300, "op": ">", "threshold": 80}
            })),
        )
        .await;
    assert_eq!(status, 201, "{rule}");
    answers.push(rule);
    store
        .execute(
            "INSERT INTO metric_activity (time, instance_id, max_connections, total_sessions, \
             connection_use_percent) VALUES (now(), $1, 100, 95, 95)",
            &[&instance],
        )
        .await
        .expect("activity");
    let start = Instant::now();
    loop {
        // Every channel tried the firing notification at least once.
        let tried: i64 = store
            .query_one(
                "SELECT count(DISTINCT d.channel_id) FROM alert_deliveries d \
                 JOIN alert_delivery_attempts a ON a.delivery_id = d.id WHERE d.kind = 'firing'",
                &[],
            )
            .await
            .expect("attempts")
            .get(0);
        if tried == ids.len() as i64 {
            break;
        }
        assert!(
            start.elapsed() < BOUND,
            "not every channel was tried: {tried}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    for path in [
        "api/v1/alerts/channels".to_owned(),
        "api/v1/alerts/routes".to_owned(),
        "api/v1/alerts/deliveries".to_owned(),
        "api/v1/alerts".to_owned(),
        "api/v1/alerts/history".to_owned(),
        "api/v1/alerts/rules".to_owned(),
        "api/v1/audit".to_owned(),
    ]
    .into_iter()
    .chain(ids.iter().map(|id| format!("api/v1/alerts/channels/{id}")))
    {
        let (status, body) = stack.api(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        answers.push(body);
    }
    let deliveries = answers
        .iter()
        .rev()
        .find(|a| a["deliveries"].is_array())
        .expect("deliveries");
    assert!(
        deliveries["deliveries"]
            .as_array()
            .expect("list")
            .iter()
            .any(|d| d["last_error"].as_str().is_some_and(|e| !e.is_empty())),
        "the failures are recorded: {deliveries}"
    );
    let audit: String = store
        .query_one(
            "SELECT coalesce(string_agg(audit_log::text, E'\\n'), '') FROM audit_log",
            &[],
        )
        .await
        .expect("audit")
        .get(0);
    assert!(
        audit.contains("/api/v1/alerts/channels"),
        "channel writes are audited"
    );
    let log = api.lines().join("\n");
    assert!(
        log.contains("DEBUG"),
        "the API logged at debug level: {log}"
    );

    let answers = answers
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    for secret in [WEBHOOK_KEY, SMTP_PASSWORD, SLACK_PATH, "slackpathK3j9Vd"] {
        for (what, text) in [
            ("the API's log", &log),
            ("an API answer", &answers),
            ("the audit log", &audit),
        ] {
            if let Some(at) = text.find(secret) {
                let from = at.saturating_sub(200);
                let end = (at + secret.len() + 100).min(text.len());
                panic!(
                    "{secret:?} in {what}: …{}…",
                    text.get(from..end).unwrap_or(secret)
                );
            }
        }
    }
}
