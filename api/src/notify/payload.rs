//! The notification (what the outbox stores) and its rendering per channel kind.
//!
//! The webhook body is the [`Notification`] itself as JSON (`version` 1). Its signature:
//! header `X-Lasect-Timestamp` holds the Unix time in seconds of the send and
//! `X-Lasect-Signature` holds `v1=` and the lower-case hex HMAC-SHA256, keyed with the
//! channel's secret, of `<timestamp>.<body>` (the exact bytes received). A receiver recomputes
//! it, compares in constant time and refuses old timestamps (replays).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// One notification, as stored in the outbox and sent to webhooks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notification {
    /// Format version of this document: 1.
    pub version: u32,
    /// `firing`, `resolved`, `repeat` (still firing) or `test`.
    pub kind: String,
    /// Same on every retry of this notification to this channel.
    pub idempotency_key: String,
    pub alert_id: Option<i64>,
    pub rule: String,
    pub severity: String,
    /// The alert's state: `firing` or `resolved`.
    pub state: String,
    /// The alert's key within its rule (instance or agent, and key labels).
    pub key: String,
    pub instance_id: Option<i64>,
    pub agent_id: Option<String>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub labels: BTreeMap<String, String>,
    /// Rendered templates: `summary`, `runbook`, …
    pub annotations: BTreeMap<String, String>,
    /// When the alert started firing.
    pub starts_at: DateTime<Utc>,
    /// When it resolved (resolved notifications only).
    pub ends_at: Option<DateTime<Utc>>,
    /// API paths (relative to the API's URL) to the alert and its history.
    pub links: Links,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Links {
    pub alert: String,
    pub history: String,
}

impl Links {
    pub fn of(rule: &str, instance_id: Option<i64>) -> Links {
        let mut history = format!("/api/v1/alerts/history?rule={}", encode(rule));
        if let Some(i) = instance_id {
            history.push_str(&format!("&instance={i}"));
        }
        Links {
            alert: format!("/api/v1/alerts?rule={}&state=all", encode(rule)),
            history,
        }
    }
}

/// Rule names are `[a-z0-9_.-]`: nothing to escape, but stay safe for anything else.
fn encode(s: &str) -> String {
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

impl Notification {
    pub fn summary(&self) -> String {
        self.annotations
            .get("summary")
            .cloned()
            .unwrap_or_else(|| format!("{} on {}", self.rule, self.key))
    }

    fn title(&self) -> String {
        let what = match self.kind.as_str() {
            "resolved" => "RESOLVED",
            "test" => "TEST",
            _ => "FIRING",
        };
        format!("[{what}] {} ({})", self.rule, self.severity)
    }
}

/// `v1=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(3 + tag.len() * 2);
    out.push_str("v1=");
    for b in tag {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A Slack incoming-webhook message: `text` (notifications, fallback) and `blocks`.
pub fn slack(n: &Notification) -> serde_json::Value {
    let mut fields = vec![
        serde_json::json!({"type": "mrkdwn", "text": format!("*Severity*\n{}", n.severity)}),
        serde_json::json!({"type": "mrkdwn", "text": format!("*Alert*\n{}", slack_escape(&n.key))}),
    ];
    if let Some(v) = n.value {
        fields.push(serde_json::json!({"type": "mrkdwn", "text": format!("*Value*\n{v}")}));
    }
    let mut blocks = vec![
        serde_json::json!({"type": "header", "text": {"type": "plain_text", "text": n.title()}}),
        serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(&n.summary())}, "fields": fields}),
    ];
    if let Some(r) = n.annotations.get("runbook") {
        blocks.push(serde_json::json!({"type": "context", "elements": [{"type": "mrkdwn", "text": slack_escape(r)}]}));
    }
    serde_json::json!({
        "text": format!("{}: {}", n.title(), n.summary()),
        "blocks": blocks,
    })
}

/// Slack's mrkdwn gives `&`, `<` and `>` meaning (links, mentions): escape them.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The body of `POST /api/v2/alerts` of Alertmanager: one alert, labelled with the rule
/// (`alertname`), severity and the alert's labels. A firing alert has no `endsAt`:
/// Alertmanager resolves it after its `resolve_timeout` unless it is sent again, so a route
/// to Alertmanager wants a repeat interval below that timeout.
pub fn alertmanager(n: &Notification) -> serde_json::Value {
    let mut labels = n.labels.clone();
    labels.insert("alertname".into(), n.rule.clone());
    labels.insert("severity".into(), n.severity.clone());
    labels.insert("lasect_key".into(), n.key.clone());
    let mut alert = serde_json::json!({
        "labels": labels,
        "annotations": n.annotations,
        "startsAt": rfc3339(n.starts_at),
    });
    if let Some(end) = n.ends_at {
        alert["endsAt"] = serde_json::Value::String(rfc3339(end));
    }
    // Alertmanager wants a URL here: only once the channel made the links absolute.
    if n.links.alert.starts_with("http") {
        alert["generatorURL"] = serde_json::Value::String(n.links.alert.clone());
    }
    serde_json::json!([alert])
}

/// An email: subject, plain-text body and HTML body (every value HTML-escaped).
pub fn email(n: &Notification) -> (String, String, String) {
    let subject = format!("{}: {}", n.title(), n.summary());
    let mut rows: Vec<(&str, String)> = vec![
        ("Rule", n.rule.clone()),
        ("Severity", n.severity.clone()),
        ("State", n.state.clone()),
        ("Alert", n.key.clone()),
        ("Since", rfc3339(n.starts_at)),
    ];
    if let Some(end) = n.ends_at {
        rows.push(("Resolved at", rfc3339(end)));
    }
    if let Some(v) = n.value {
        rows.push(("Value", v.to_string()));
    }
    for (k, v) in &n.labels {
        rows.push(("Label", format!("{k}={v}")));
    }
    if let Some(r) = n.annotations.get("runbook") {
        rows.push(("Runbook", r.clone()));
    }
    rows.push(("History", n.links.history.clone()));
    let mut plain = format!("{}\n\n", n.summary());
    for (k, v) in &rows {
        plain.push_str(&format!("{k}: {v}\n"));
    }
    let mut html = format!(
        "<!DOCTYPE html><html><body><h2>{}</h2><p>{}</p><table>",
        html_escape(&n.title()),
        html_escape(&n.summary())
    );
    for (k, v) in &rows {
        html.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            html_escape(k),
            html_escape(v)
        ));
    }
    html.push_str("</table></body></html>");
    (subject, plain, html)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently (Python's hmac module).
        assert_eq!(
            signature(b"a webhook secret", 1_700_000_000, br#"{"a":1}"#),
            "v1=08a5d3af32dfeae96fd3a2a84e0dc2ab13f1b693c31aa4528d3a6e5f995388c3"
        );
    }

    #[test]
    fn slack_escapes_mrkdwn() {
        assert_eq!(slack_escape("<@here> & co"), "&lt;@here&gt; &amp; co");
    }
}
