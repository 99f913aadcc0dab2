//! `lasect alert channel …`: where alert notifications go (webhook, Slack, Alertmanager) and
//! the routes that send alerts there. Secrets (the webhook's signing key, the Slack URL) are
//! read without echo or from stdin, never from the command line (shell history, `ps`).

use clap::Subcommand;
use lasect_api_contract::alert_channels::{
    Channel, ChannelList, ChannelPatch, DeliveryList, Kind, MinSeverity, NewChannel, NewRoute,
    Route, RouteList, RoutePatch, TestResult,
};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::api_client::{ApiClient, typed};
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
        /// --secret-stdin. (Not --url: that is the API's URL, for every command.)
        #[arg(long, value_name = "URL")]
        receiver_url: Option<String>,
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
        /// Email: a PEM CA file the SMTP server's certificate must chain to (not --ca-file:
        /// that is the CA the API's certificate chains to)
        #[arg(long, value_name = "FILE")]
        smtp_ca_file: Option<std::path::PathBuf>,
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
        #[arg(long, value_name = "URL")]
        receiver_url: Option<String>,
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
    let list: ChannelList = client.get("api/v1/alerts/channels").await?;
    list.channels
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.id)
        .ok_or_else(|| {
            Usage(format!(
                "no channel named {name:?} (see lasect alert channel list)"
            ))
            .into()
        })
}

/// `--min-severity`, checked before anything is sent (a channel added without its route would
/// stay silent).
fn min_severity(text: &str) -> Result<MinSeverity, Usage> {
    MinSeverity::parse(text).ok_or_else(|| {
        Usage(format!(
            "--min-severity must be info, warning or critical, not {text:?}"
        ))
    })
}

/// `--repeat`: a duration or 0 (never).
fn repeat_secs(text: &str) -> Result<u32, Usage> {
    parse_duration_secs(text)
        .or_else(|| (text == "0").then_some(0))
        // Beyond u32 is far beyond the API's range: it is the API that says what it is.
        .map(|s| u32::try_from(s).unwrap_or(u32::MAX))
        .ok_or_else(|| Usage(format!("--repeat must be like 30m, 4h or 0, not {text:?}")))
}

/// PATCHes `body` to `path` and reads the answer as `T`.
async fn patch<B: serde::Serialize, T: serde::de::DeserializeOwned>(
    client: &ApiClient,
    path: &str,
    body: &B,
) -> anyhow::Result<T> {
    let body = serde_json::to_value(body)?;
    typed(client.patch_json(path, &body).await?, path)
}

/// How a channel's routes read in the list: `>=warning env=prod every 3600s`.
fn routes_text(routes: &[Route], channel: i64) -> String {
    let text: Vec<String> = routes
        .iter()
        .filter(|r| r.channel_id == channel)
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
    text.join("; ")
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
            receiver_url: url,
            secret_stdin,
            insecure_http,
            from,
            to,
            smtp_user,
            smtp_ca_file: ca_file,
            min_severity: severity,
            matchers,
            repeat,
            no_resolved,
        } => {
            let repeat_secs = repeat_secs(&repeat)?;
            let severity = min_severity(&severity)?;
            let kind = Kind::parse(&kind).ok_or_else(|| {
                Usage(format!(
                    "--kind must be webhook, slack, alertmanager or email, not {kind:?}"
                ))
            })?;
            // The body's copies of the secret are zeroed when it drops, also on an error.
            let mut body = Zeroizing::new(NewChannel::new(name.clone(), kind, String::new()));
            body.insecure_http = insecure_http;
            match kind {
                Kind::Webhook => {
                    body.url =
                        url.ok_or_else(|| Usage("--receiver-url is needed for a webhook".into()))?;
                    body.secret = Some(
                        crate::password::read("webhook signing secret: ", secret_stdin)?
                            .expose_secret()
                            .to_owned(),
                    );
                }
                Kind::Slack => {
                    if url.is_some() {
                        return Err(Usage(
                            "a Slack URL is a secret: give it on stdin (--secret-stdin) or at the prompt, not with --receiver-url".into(),
                        )
                        .into());
                    }
                    body.url = crate::password::read("Slack incoming-webhook URL: ", secret_stdin)?
                        .expose_secret()
                        .to_owned();
                }
                Kind::Email => {
                    body.url = url.ok_or_else(|| {
                        Usage("--receiver-url smtp://host[:port] is needed for email".into())
                    })?;
                    let from = from.ok_or_else(|| Usage("--from is needed for email".into()))?;
                    if to.is_empty() {
                        return Err(Usage(
                            "--to is needed for email (repeat it for several)".into(),
                        )
                        .into());
                    }
                    body.email_from = Some(from);
                    body.email_to = Some(to);
                    if let Some(user) = smtp_user {
                        body.smtp_username = Some(user);
                        body.secret = Some(
                            crate::password::read("SMTP password: ", secret_stdin)?
                                .expose_secret()
                                .to_owned(),
                        );
                    }
                    if let Some(path) = ca_file {
                        let pem = std::fs::read_to_string(&path).map_err(|e| {
                            Usage(format!("read --smtp-ca-file {}: {e}", path.display()))
                        })?;
                        body.ca_pem = Some(pem);
                    }
                }
                Kind::Alertmanager => {
                    body.url = url
                        .ok_or_else(|| Usage("--receiver-url is needed for Alertmanager".into()))?;
                }
            }
            let channel: Channel = client.post("api/v1/alerts/channels", &*body).await?;
            let route = NewRoute {
                channel: name,
                min_severity: Some(severity),
                matchers: Some(matchers),
                repeat_secs: Some(repeat_secs),
                send_resolved: Some(!no_resolved),
            };
            let route: Route = match client.post("api/v1/alerts/routes", &route).await {
                Ok(r) => r,
                Err(e) => {
                    // A channel nothing routes to would look configured and stay silent.
                    let _ = client
                        .delete_json(&format!("api/v1/alerts/channels/{}", channel.id))
                        .await;
                    return Err(e);
                }
            };
            let text = format!(
                "channel {} ({}) added, route {}\n",
                channel.name,
                channel.kind.as_str(),
                route.id
            );
            let both = json!({"channel": channel, "route": route});
            render_body(output, &both, |_| Ok(text.clone()))
        }
        ChannelCommand::Edit {
            name,
            rename,
            enable,
            disable,
            receiver_url: url,
            new_secret,
            secret_stdin,
            insecure_http,
            from,
            to,
            timeout,
            min_severity: severity,
            matchers,
            repeat,
            resolved,
        } => {
            let routing = RoutePatch {
                min_severity: severity.as_deref().map(min_severity).transpose()?,
                matchers,
                repeat_secs: repeat.as_deref().map(repeat_secs).transpose()?,
                send_resolved: resolved,
            };
            let mut body = Zeroizing::new(ChannelPatch {
                name: rename,
                enabled: (enable || disable).then_some(enable),
                insecure_http,
                email_from: from,
                email_to: (!to.is_empty()).then_some(to),
                ..ChannelPatch::default()
            });
            if let Some(t) = timeout {
                let secs = parse_duration_secs(&t)
                    .ok_or_else(|| Usage(format!("--timeout must be like 10s, not {t:?}")))?;
                // Beyond u32 is far beyond the API's range: it is the API that says what it is.
                body.timeout_secs = Some(u32::try_from(secs).unwrap_or(u32::MAX));
            }
            if body.is_empty() && url.is_none() && !new_secret && routing.is_empty() {
                return Err(Usage(
                    "nothing to change: give --rename, --enable, --disable, --receiver-url, --new-secret, \
                     --insecure-http, --from, --to, --timeout, --min-severity, --matchers, \
                     --repeat or --resolved"
                        .into(),
                )
                .into());
            }
            let id = channel_id(client, &name).await?;
            let path = format!("api/v1/alerts/channels/{id}");
            let kind = client.get::<Channel>(&path).await?.kind;
            if let Some(u) = url {
                if kind == Kind::Slack {
                    return Err(Usage(
                        "a Slack URL is a secret: give it with --new-secret (stdin or prompt), \
                         not --receiver-url"
                            .into(),
                    )
                    .into());
                }
                body.url = Some(u);
            }
            if new_secret {
                let prompt = match kind {
                    Kind::Slack => "new Slack incoming-webhook URL: ",
                    Kind::Email => "new SMTP password: ",
                    Kind::Webhook => "new webhook signing secret: ",
                    Kind::Alertmanager => {
                        return Err(
                            Usage(format!("{} channels have no secret", kind.as_str())).into()
                        );
                    }
                };
                let secret = crate::password::read(prompt, secret_stdin)?
                    .expose_secret()
                    .to_owned();
                // A Slack channel's URL is its secret.
                if kind == Kind::Slack {
                    body.url = Some(secret);
                } else {
                    body.secret = Some(secret);
                }
            }
            let channel: Channel = if body.is_empty() {
                client.get(&path).await?
            } else {
                patch(client, &path, &*body).await?
            };
            if !routing.is_empty() {
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
                    let _: Route =
                        patch(client, &format!("api/v1/alerts/routes/{route}"), &routing).await?;
                }
            }
            let text = format!(
                "channel {} changed ({})\n",
                channel.name,
                if channel.enabled {
                    "enabled"
                } else {
                    "disabled"
                }
            );
            render_body(output, &serde_json::to_value(&channel)?, |_| {
                Ok(text.clone())
            })
        }
        ChannelCommand::List => {
            let channels: ChannelList = client.get("api/v1/alerts/channels").await?;
            let routes: RouteList = client.get("api/v1/alerts/routes").await?;
            // The table's routes column is in the JSON too (`routes_text`), as it always was.
            let rows: Vec<Value> = channels
                .channels
                .iter()
                .map(|c| {
                    let mut row = serde_json::to_value(c)?;
                    row["routes_text"] = Value::String(routes_text(&routes.routes, c.id));
                    Ok(row)
                })
                .collect::<serde_json::Result<_>>()?;
            render_body(output, &json!({ "channels": rows }), |_| {
                Ok(render(&rows, CHANNEL_COLUMNS))
            })
        }
        ChannelCommand::Test { name } => {
            let id = channel_id(client, &name).await?;
            let result: TestResult = client
                .post(&format!("api/v1/alerts/channels/{id}/test"), &json!({}))
                .await?;
            let text = format!(
                "{}: {} {}\n",
                if result.ok { "delivered" } else { "failed" },
                result
                    .status
                    .map_or_else(|| "null".to_owned(), |s| s.to_string()),
                crate::printable::escape(&result.message)
            );
            render_body(
                output,
                &serde_json::to_value(&result)?,
                |_| Ok(text.clone()),
            )
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
            let list: DeliveryList = client.get(&path).await?;
            // The attempts column counts them; the JSON carries the count too, as it always did.
            let rows: Vec<Value> = list
                .deliveries
                .iter()
                .map(|d| {
                    let mut row = serde_json::to_value(d)?;
                    row["attempt_count"] = json!(d.attempts.len());
                    Ok(row)
                })
                .collect::<serde_json::Result<_>>()?;
            render_body(output, &json!({ "deliveries": rows }), |_| {
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
            receiver_url: url.map(str::to_owned),
            secret_stdin: true,
            insecure_http: false,
            from: None,
            to: Vec::new(),
            smtp_user: None,
            smtp_ca_file: None,
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
            receiver_url: None,
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
        let mut bad_severity = add("webhook", Some("https://hooks.example.net/a"));
        if let ChannelCommand::Add { min_severity, .. } = &mut bad_severity {
            *min_severity = "fatal".into();
        }
        for (command, want) in [
            (add("slack", Some("https://hooks.slack.com/x")), "secret"),
            (add("webhook", None), "--receiver-url"),
            (add("email", Some("smtp://mail.example.com")), "--from"),
            (add("pagerduty", None), "--kind"),
            (edit(Some("soon")), "--timeout"),
            (edit(None), "nothing to change"),
            (bad_severity, "--min-severity"),
        ] {
            let e = run(&client, command, OutputFormat::Table)
                .await
                .expect_err("refused");
            assert!(e.downcast_ref::<Usage>().is_some(), "{e:#}");
            assert!(e.to_string().contains(want), "{e:#}");
        }
    }

    /// The receiver's URL and CA file are the channel's, not the API's: `--url` and
    /// `--ca-file` say where the CLI's requests (with the token) go.
    #[test]
    fn receiver_flags_do_not_redirect_the_api() {
        use clap::Parser;
        let cli = crate::args::Cli::try_parse_from([
            "lasect",
            "--url",
            "https://lasect.example.net",
            "alert",
            "channel",
            "add",
            "mail",
            "--kind",
            "email",
            "--receiver-url",
            "smtp://mail.example.net",
            "--smtp-ca-file",
            "/etc/ssl/smtp.pem",
        ])
        .expect("parses");
        assert_eq!(cli.url.as_deref(), Some("https://lasect.example.net"));
        assert_eq!(cli.ca_file, None);
        let crate::args::Command::Alert(crate::alert_cmd::AlertCommand::Channel(
            ChannelCommand::Add {
                receiver_url,
                smtp_ca_file,
                ..
            },
        )) = cli.command
        else {
            panic!("not channel add: {:?}", cli.command);
        };
        assert_eq!(receiver_url.as_deref(), Some("smtp://mail.example.net"));
        assert_eq!(
            smtp_ca_file,
            Some(std::path::PathBuf::from("/etc/ssl/smtp.pem"))
        );
    }
}
