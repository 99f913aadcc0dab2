//! `lasect alert channel …`: where alert notifications go (webhook, Slack, Alertmanager) and
//! the routes that send alerts there. Secrets (the webhook's signing key, the Slack URL) are
//! read without echo or from stdin, never from the command line (shell history, `ps`).

use clap::Subcommand;
use lasect_api_contract::alert_channels::RouteList;
use serde_json::{Value, json};

use crate::api_client::ApiClient;
use crate::args::OutputFormat;
use crate::exit::Usage;
use crate::json_table::{parse_duration_secs, render};
use crate::render as render_body;

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Add a channel and route alerts to it (admin)
    Add {
        name: String,
        /// webhook, slack, alertmanager or email
        #[arg(long)]
        kind: String,
        /// Receiver URL (webhook; Alertmanager's base URL; email: smtp://host[:port] for
        /// STARTTLS, smtps://host[:port] for TLS). Slack's URL is a secret: it is read like
        /// --secret-stdin
        #[arg(long)]
        url: Option<String>,
        /// Read the webhook secret (or the Slack URL) from the first line of stdin; otherwise
        /// it is asked for without echo
        #[arg(long)]
        secret_stdin: bool,
        /// Allow plain http:// (a receiver on a trusted network); email: STARTTLS may be skipped
        #[arg(long)]
        insecure_http: bool,
        /// Email: the sender address
        #[arg(long)]
        from: Option<String>,
        /// Email: a recipient (repeat for several)
        #[arg(long)]
        to: Vec<String>,
        /// Email: the SMTP user; its password is read like --secret-stdin
        #[arg(long)]
        smtp_user: Option<String>,
        /// Email: a PEM CA file the SMTP server's certificate must chain to
        #[arg(long, value_name = "FILE")]
        ca_file: Option<std::path::PathBuf>,
        /// Only alerts of this severity and above: info, warning, critical
        #[arg(long, default_value = "info")]
        min_severity: String,
        /// Only alerts whose labels match, e.g. "env=prod, team=db"
        #[arg(long, default_value = "")]
        matchers: String,
        /// Notify a firing alert again after this long (0: never), e.g. 4h
        #[arg(long, default_value = "4h")]
        repeat: String,
        /// Do not notify when alerts resolve
        #[arg(long)]
        no_resolved: bool,
    },
    /// Change a channel: rename, switch on or off, a new URL or a new secret (admin)
    Edit {
        name: String,
        /// The channel's new name
        #[arg(long)]
        rename: Option<String>,
        /// Switch the channel on (it gets new notifications again)
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Switch the channel off: no new notifications, routes and secret kept
        #[arg(long)]
        disable: bool,
        /// A new receiver URL (not for Slack, whose URL is a secret: --new-secret)
        #[arg(long)]
        url: Option<String>,
        /// Replace the secret (webhook signing key, Slack URL, SMTP password): read like
        /// --secret-stdin or asked for without echo
        #[arg(long)]
        new_secret: bool,
        /// Read the new secret from the first line of stdin
        #[arg(long, requires = "new_secret")]
        secret_stdin: bool,
        /// Allow (true) or refuse (false) plain http:// / SMTP without TLS
        #[arg(long, value_name = "BOOL")]
        insecure_http: Option<bool>,
        /// Email: a new sender address
        #[arg(long)]
        from: Option<String>,
        /// Email: the recipients, replacing the old ones (repeat for several)
        #[arg(long)]
        to: Vec<String>,
        /// Per call, e.g. 10s
        #[arg(long)]
        timeout: Option<String>,
        /// The channel's routes: only alerts of this severity and above (info, warning,
        /// critical)
        #[arg(long)]
        min_severity: Option<String>,
        /// The channel's routes: only alerts whose labels match ("" for every alert)
        #[arg(long)]
        matchers: Option<String>,
        /// The channel's routes: notify a firing alert again after this long (0: never)
        #[arg(long)]
        repeat: Option<String>,
        /// The channel's routes: notify when alerts resolve (true or false)
        #[arg(long, value_name = "BOOL")]
        resolved: Option<bool>,
    },
    /// Channels (without secrets) and their routes
    List,
    /// Send a test notification now and show the receiver's answer (admin)
    Test { name: String },
    /// Remove a channel, its routes and pending notifications (admin)
    Remove { name: String },
    /// Notifications and their attempts, newest first
    Deliveries {
        /// Only this channel
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, value_name = "ID")]
        alert: Option<i64>,
        /// Since this long ago (15m, 1h, 7d) or an RFC 3339 time
        #[arg(long)]
        since: Option<String>,
    },
}

const CHANNEL_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("name", "name"),
    ("kind", "kind"),
    ("url", "url"),
    ("enabled", "enabled"),
    ("secret", "has_secret"),
    ("routes", "routes_text"),
];

const DELIVERY_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("created", "created_at"),
    ("channel", "channel_id"),
    ("alert", "alert_id"),
    ("rule", "rule"),
    ("kind", "kind"),
    ("state", "state"),
    ("attempts", "attempt_count"),
    ("last error", "last_error"),
];

async fn channel_id(client: &ApiClient, name: &str) -> anyhow::Result<i64> {
    let body = client.get_json("api/v1/alerts/channels").await?;
    body["channels"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .and_then(|c| c["id"].as_i64())
        .ok_or_else(|| {
            Usage(format!(
                "no channel named {name:?} (see lasect alert channel list)"
            ))
            .into()
        })
}

fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub async fn run(
    client: &ApiClient,
    command: ChannelCommand,
    output: OutputFormat,
) -> anyhow::Result<String> {
    match command {
        ChannelCommand::Add {
            name,
            kind,
            url,
            secret_stdin,
            insecure_http,
            from,
            to,
            smtp_user,
            ca_file,
            min_severity,
            matchers,
            repeat,
            no_resolved,
        } => {
            let repeat_secs = parse_duration_secs(&repeat)
                .or_else(|| (repeat == "0").then_some(0))
                .ok_or_else(|| {
                    Usage(format!(
                        "--repeat must be like 30m, 4h or 0, not {repeat:?}"
                    ))
                })?;
            let mut body = json!({"name": name, "kind": kind, "insecure_http": insecure_http});
            match kind.as_str() {
                "webhook" => {
                    let url = url.ok_or_else(|| Usage("--url is needed for a webhook".into()))?;
                    body["url"] = json!(url);
                    body["secret"] = json!(
                        crate::password::read("webhook signing secret: ", secret_stdin)?
                            .expose_secret()
                    );
                }
                "slack" => {
                    if url.is_some() {
                        return Err(Usage(
                            "a Slack URL is a secret: give it on stdin (--secret-stdin) or at the prompt, not with --url".into(),
                        )
                        .into());
                    }
                    body["url"] = json!(
                        crate::password::read("Slack incoming-webhook URL: ", secret_stdin)?
                            .expose_secret()
                    );
                }
                "email" => {
                    let url = url.ok_or_else(|| {
                        Usage("--url smtp://host[:port] is needed for email".into())
                    })?;
                    let from = from.ok_or_else(|| Usage("--from is needed for email".into()))?;
                    if to.is_empty() {
                        return Err(Usage(
                            "--to is needed for email (repeat it for several)".into(),
                        )
                        .into());
                    }
                    body["url"] = json!(url);
                    body["email_from"] = json!(from);
                    body["email_to"] = json!(to);
                    if let Some(user) = smtp_user {
                        body["smtp_username"] = json!(user);
                        body["secret"] = json!(
                            crate::password::read("SMTP password: ", secret_stdin)?.expose_secret()
                        );
                    }
                    if let Some(path) = ca_file {
                        let pem = std::fs::read_to_string(&path).map_err(|e| {
                            Usage(format!("read --ca-file {}: {e}", path.display()))
                        })?;
                        body["ca_pem"] = json!(pem);
                    }
                }
                "alertmanager" => {
                    let url =
                        url.ok_or_else(|| Usage("--url is needed for Alertmanager".into()))?;
                    body["url"] = json!(url);
                }
                other => {
                    return Err(Usage(format!(
                        "--kind must be webhook, slack, alertmanager or email, not {other:?}"
                    ))
                    .into());
                }
            }
            let channel = client.post_json("api/v1/alerts/channels", &body).await?;
            let route = client
                .post_json(
                    "api/v1/alerts/routes",
                    &json!({"channel": name, "min_severity": min_severity, "matchers": matchers,
                            "repeat_secs": repeat_secs, "send_resolved": !no_resolved}),
                )
                .await;
            let route = match route {
                Ok(r) => r,
                Err(e) => {
                    // A channel nothing routes to would look configured and stay silent.
                    if let Some(id) = channel["id"].as_i64() {
                        let _ = client
                            .delete_json(&format!("api/v1/alerts/channels/{id}"))
                            .await;
                    }
                    return Err(e);
                }
            };
            let both = json!({"channel": channel, "route": route});
            render_body(output, &both, |b| {
                Ok(format!(
                    "channel {} ({}) added, route {}\n",
                    b["channel"]["name"].as_str().unwrap_or_default(),
                    b["channel"]["kind"].as_str().unwrap_or_default(),
                    b["route"]["id"]
                ))
            })
        }
        ChannelCommand::Edit {
            name,
            rename,
            enable,
            disable,
            url,
            new_secret,
            secret_stdin,
            insecure_http,
            from,
            to,
            timeout,
            min_severity,
            matchers,
            repeat,
            resolved,
        } => {
            let mut routing = json!({});
            if let Some(m) = min_severity {
                routing["min_severity"] = json!(m);
            }
            if let Some(m) = matchers {
                routing["matchers"] = json!(m);
            }
            if let Some(r) = repeat {
                let secs = parse_duration_secs(&r)
                    .or_else(|| (r == "0").then_some(0))
                    .ok_or_else(|| {
                        Usage(format!("--repeat must be like 30m, 4h or 0, not {r:?}"))
                    })?;
                routing["repeat_secs"] = json!(secs);
            }
            if let Some(r) = resolved {
                routing["send_resolved"] = json!(r);
            }
            let routing_asked = routing.as_object().is_some_and(|o| !o.is_empty());
            let mut body = json!({});
            if let Some(n) = rename {
                body["name"] = json!(n);
            }
            if enable || disable {
                body["enabled"] = json!(enable);
            }
            if let Some(b) = insecure_http {
                body["insecure_http"] = json!(b);
            }
            if let Some(f) = from {
                body["email_from"] = json!(f);
            }
            if !to.is_empty() {
                body["email_to"] = json!(to);
            }
            if let Some(t) = timeout {
                let secs = parse_duration_secs(&t)
                    .ok_or_else(|| Usage(format!("--timeout must be like 10s, not {t:?}")))?;
                body["timeout_secs"] = json!(secs);
            }
            let none_asked = body.as_object().is_some_and(|o| o.is_empty());
            if none_asked && url.is_none() && !new_secret && !routing_asked {
                return Err(Usage(
                    "nothing to change: give --rename, --enable, --disable, --url, --new-secret, \
                     --insecure-http, --from, --to, --timeout, --min-severity, --matchers, \
                     --repeat or --resolved"
                        .into(),
                )
                .into());
            }
            let id = channel_id(client, &name).await?;
            let kind = client
                .get_json(&format!("api/v1/alerts/channels/{id}"))
                .await?["kind"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if let Some(u) = url {
                if kind == "slack" {
                    return Err(Usage(
                        "a Slack URL is a secret: give it with --new-secret (stdin or prompt), \
                         not --url"
                            .into(),
                    )
                    .into());
                }
                body["url"] = json!(u);
            }
            if new_secret {
                let (field, prompt) = match kind.as_str() {
                    "slack" => ("url", "new Slack incoming-webhook URL: "),
                    "email" => ("secret", "new SMTP password: "),
                    "webhook" => ("secret", "new webhook signing secret: "),
                    other => {
                        return Err(Usage(format!("{other} channels have no secret")).into());
                    }
                };
                body[field] = json!(crate::password::read(prompt, secret_stdin)?.expose_secret());
            }
            let channel = if body.as_object().is_some_and(|o| o.is_empty()) {
                client
                    .get_json(&format!("api/v1/alerts/channels/{id}"))
                    .await?
            } else {
                client
                    .patch_json(&format!("api/v1/alerts/channels/{id}"), &body)
                    .await?
            };
            if routing_asked {
                let routes: RouteList = client.get("api/v1/alerts/routes").await?;
                let mine: Vec<i64> = routes
                    .routes
                    .iter()
                    .filter(|r| r.channel_id == id)
                    .map(|r| r.id)
                    .collect();
                if mine.is_empty() {
                    return Err(Usage(format!(
                        "channel {name:?} has no route to change (lasect alert channel list)"
                    ))
                    .into());
                }
                for route in mine {
                    client
                        .patch_json(&format!("api/v1/alerts/routes/{route}"), &routing)
                        .await?;
                }
            }
            render_body(output, &channel, |c| {
                Ok(format!(
                    "channel {} changed ({})\n",
                    c["name"].as_str().unwrap_or_default(),
                    if c["enabled"] == false {
                        "disabled"
                    } else {
                        "enabled"
                    }
                ))
            })
        }
        ChannelCommand::List => {
            let mut channels = client.get_json("api/v1/alerts/channels").await?;
            let routes: RouteList = client.get("api/v1/alerts/routes").await?;
            if let Some(list) = channels["channels"].as_array_mut() {
                for c in list {
                    let text: Vec<String> = routes
                        .routes
                        .iter()
                        .filter(|r| c["id"] == r.channel_id)
                        .map(|r| {
                            format!(
                                ">={}{}{}",
                                r.min_severity,
                                if r.matchers.is_empty() {
                                    String::new()
                                } else {
                                    format!(" {}", r.matchers)
                                },
                                match r.repeat_secs {
                                    0 => String::new(),
                                    s => format!(" every {s}s"),
                                }
                            )
                        })
                        .collect();
                    c["routes_text"] = Value::String(text.join("; "));
                }
            }
            render_body(output, &channels, |b| {
                let rows = b["channels"].as_array().cloned().unwrap_or_default();
                Ok(render(&rows, CHANNEL_COLUMNS))
            })
        }
        ChannelCommand::Test { name } => {
            let id = channel_id(client, &name).await?;
            let body = client
                .post_json(&format!("api/v1/alerts/channels/{id}/test"), &json!({}))
                .await?;
            render_body(output, &body, |b| {
                Ok(format!(
                    "{}: {} {}\n",
                    if b["ok"] == true {
                        "delivered"
                    } else {
                        "failed"
                    },
                    b["status"],
                    crate::printable::escape(b["message"].as_str().unwrap_or_default())
                ))
            })
        }
        ChannelCommand::Remove { name } => {
            let id = channel_id(client, &name).await?;
            let body = client
                .delete_json(&format!("api/v1/alerts/channels/{id}"))
                .await?;
            render_body(output, &body, |_| Ok(format!("channel {name} removed\n")))
        }
        ChannelCommand::Deliveries {
            channel,
            alert,
            since,
        } => {
            let mut query = Vec::new();
            if let Some(name) = channel {
                query.push(format!("channel_id={}", channel_id(client, &name).await?));
            }
            if let Some(a) = alert {
                query.push(format!("alert_id={a}"));
            }
            if let Some(s) = since {
                query.push(format!("since={}", query_value(&s)));
            }
            let mut path = "api/v1/alerts/deliveries".to_owned();
            if !query.is_empty() {
                path.push('?');
                path.push_str(&query.join("&"));
            }
            let mut body = client.get_json(&path).await?;
            if let Some(list) = body["deliveries"].as_array_mut() {
                for d in list {
                    d["attempt_count"] = json!(d["attempts"].as_array().map_or(0, Vec::len));
                }
            }
            render_body(output, &body, |b| {
                let rows = b["deliveries"].as_array().cloned().unwrap_or_default();
                Ok(render(&rows, DELIVERY_COLUMNS))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api_client::ClientEnv;

    fn add(kind: &str, url: Option<&str>) -> ChannelCommand {
        ChannelCommand::Add {
            name: "c".into(),
            kind: kind.into(),
            url: url.map(str::to_owned),
            secret_stdin: true,
            insecure_http: false,
            from: None,
            to: Vec::new(),
            smtp_user: None,
            ca_file: None,
            min_severity: "info".into(),
            matchers: String::new(),
            repeat: "4h".into(),
            no_resolved: false,
        }
    }

    fn edit(timeout: Option<&str>) -> ChannelCommand {
        ChannelCommand::Edit {
            name: "c".into(),
            rename: None,
            enable: false,
            disable: false,
            url: None,
            new_secret: false,
            secret_stdin: false,
            insecure_http: None,
            from: None,
            to: Vec::new(),
            timeout: timeout.map(str::to_owned),
            min_severity: None,
            matchers: None,
            repeat: None,
            resolved: None,
        }
    }

    /// Refused before anything is read or sent (the API URL is never contacted).
    #[tokio::test]
    async fn bad_arguments_are_usage_errors() {
        let client = ApiClient::from_env(ClientEnv {
            url: Some("http://127.0.0.1:9".into()),
            ..ClientEnv::default()
        })
        .expect("client");
        for (command, want) in [
            (add("slack", Some("https://hooks.slack.com/x")), "secret"),
            (add("webhook", None), "--url"),
            (add("email", Some("smtp://mail.example.com")), "--from"),
            (add("pagerduty", None), "--kind"),
            (edit(Some("soon")), "--timeout"),
            (edit(None), "nothing to change"),
        ] {
            let e = run(&client, command, OutputFormat::Table)
                .await
                .expect_err("refused");
            assert!(e.downcast_ref::<Usage>().is_some(), "{e:#}");
            assert!(e.to_string().contains(want), "{e:#}");
        }
    }
}
