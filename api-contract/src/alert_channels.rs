//! Where alert notifications go, as the API shows and takes it: channels ([`NewChannel`] →
//! [`Channel`], [`ChannelList`], [`ChannelPatch`], a test notification's [`TestResult`]), the
//! routes from alerts to channels ([`NewRoute`] → [`Route`], [`RouteList`], [`RoutePatch`]) and
//! the notifications sent ([`Delivery`] with its [`Attempt`]s, [`DeliveryList`]).
//!
//! Secrets (a webhook's signing key, a Slack URL, an SMTP password) are only ever sent to the
//! API: no answer carries one, and the request bodies holding one are zeroed on drop (through
//! `Zeroizing`) and keep it out of `Debug`.

use serde::{Deserialize, Serialize};

/// The kinds of channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// JSON POST signed with HMAC-SHA256.
    Webhook,
    /// A Slack incoming webhook (its URL is the secret).
    Slack,
    /// Prometheus Alertmanager (`POST <url>/api/v2/alerts`).
    Alertmanager,
    /// SMTP with STARTTLS (or implicit TLS), plain-text and HTML bodies.
    Email,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Slack => "slack",
            Kind::Alertmanager => "alertmanager",
            Kind::Email => "email",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "webhook" => Some(Kind::Webhook),
            "slack" => Some(Kind::Slack),
            "alertmanager" => Some(Kind::Alertmanager),
            "email" => Some(Kind::Email),
            _ => None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Channel {
    pub id: i64,
    pub name: String,
    pub kind: Kind,
    /// The receiver's URL; for Slack only its scheme and host (the URL is the secret).
    pub url: String,
    pub insecure_http: bool,
    /// A disabled channel gets no new notifications (its routes and secret are kept).
    pub enabled: bool,
    /// Whether a secret is stored (it is never returned).
    pub has_secret: bool,
    pub timeout_secs: i32,
    pub give_up_secs: i32,
    /// Email channels: sender, recipients and SMTP user (never the password).
    pub email_from: Option<String>,
    pub email_to: Option<Vec<String>>,
    pub smtp_username: Option<String>,
    pub created_at: String,
    pub created_by: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelList {
    pub channels: Vec<Channel>,
}

#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewChannel {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9][a-z0-9_.-]{0,62}$"))]
    pub name: String,
    pub kind: Kind,
    /// http(s) URL of the receiver (Alertmanager: its base URL; Slack: the incoming-webhook
    /// URL, kept encrypted as a secret); email: `smtp://host[:port]` (STARTTLS required,
    /// default port 587) or `smtps://host[:port]` (TLS, 465).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 2000))]
    pub url: String,
    /// Webhook, required (at least 16 characters): the HMAC-SHA256 key receivers verify the
    /// signature with. Email: the SMTP password (with `smtp_username`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 1000))]
    pub secret: Option<String>,
    /// Allow plain http:// (default false: https only); for email, STARTTLS may be skipped.
    #[serde(default)]
    pub insecure_http: bool,
    /// Email, required: the sender address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 320))]
    pub email_from: Option<String>,
    /// Email, required: recipient addresses (1 to 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 50))]
    pub email_to: Option<Vec<String>>,
    /// Email: the SMTP user name (the password is `secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 320))]
    pub smtp_username: Option<String>,
    /// Email: a PEM CA certificate the SMTP server's certificate must chain to, instead of
    /// the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 20000))]
    pub ca_pem: Option<String>,
    /// The API's (or console's) external http(s) URL: links in notifications become absolute
    /// under it, and Alertmanager gets a `generatorURL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 2000))]
    pub links_base_url: Option<String>,
    /// Per call, default 10.
    #[serde(
        default,
        deserialize_with = "crate::json_integer::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 120))]
    pub timeout_secs: Option<u32>,
    /// A notification still failing this long after it was due is given up; default 86400.
    #[serde(
        default,
        deserialize_with = "crate::json_integer::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 60, maximum = 604_800))]
    pub give_up_secs: Option<u32>,
}

impl NewChannel {
    /// A channel of `kind` named `name` sending to `url`, nothing else set (the kind decides
    /// what else it needs).
    pub fn new(name: String, kind: Kind, url: String) -> Self {
        NewChannel {
            name,
            kind,
            url,
            secret: None,
            insecure_http: false,
            email_from: None,
            email_to: None,
            smtp_username: None,
            ca_pem: None,
            links_base_url: None,
            timeout_secs: None,
            give_up_secs: None,
        }
    }
}

// The secret, and a Slack channel's URL (its secret), stay out of logs.
impl std::fmt::Debug for NewChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewChannel")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl zeroize::Zeroize for NewChannel {
    fn zeroize(&mut self) {
        self.secret.zeroize();
        self.url.zeroize();
    }
}

/// Changes to a channel; absent fields stay as they are. Its kind cannot change.
#[derive(Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChannelPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9][a-z0-9_.-]{0,62}$"))]
    pub name: Option<String>,
    /// false: no new notifications go to the channel (routes and secret are kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Where notifications go (as when adding; for Slack this replaces the secret URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 2000))]
    pub url: Option<String>,
    /// Replaces the secret (webhook HMAC key, SMTP password); never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 1000))]
    pub secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_http: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 320))]
    pub email_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 50))]
    pub email_to: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 320))]
    pub smtp_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 20000))]
    pub ca_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 2000))]
    pub links_base_url: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::json_integer::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 120))]
    pub timeout_secs: Option<u32>,
    #[serde(
        default,
        deserialize_with = "crate::json_integer::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 60, maximum = 604_800))]
    pub give_up_secs: Option<u32>,
}

impl ChannelPatch {
    /// Nothing would change.
    pub fn is_empty(&self) -> bool {
        let ChannelPatch {
            name,
            enabled,
            url,
            secret,
            insecure_http,
            email_from,
            email_to,
            smtp_username,
            ca_pem,
            links_base_url,
            timeout_secs,
            give_up_secs,
        } = self;
        name.is_none()
            && enabled.is_none()
            && url.is_none()
            && secret.is_none()
            && insecure_http.is_none()
            && email_from.is_none()
            && email_to.is_none()
            && smtp_username.is_none()
            && ca_pem.is_none()
            && links_base_url.is_none()
            && timeout_secs.is_none()
            && give_up_secs.is_none()
    }
}

impl std::fmt::Debug for ChannelPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelPatch")
            .field("name", &self.name)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl zeroize::Zeroize for ChannelPatch {
    fn zeroize(&mut self) {
        self.secret.zeroize();
        self.url.zeroize();
    }
}

/// What the receiver said to a test notification.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestResult {
    /// The receiver accepted it (2xx).
    pub ok: bool,
    pub status: Option<u16>,
    /// The start of the receiver's answer, or why it could not be reached.
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Route {
    pub id: i64,
    pub channel_id: i64,
    pub channel: String,
    pub min_severity: String,
    pub matchers: String,
    pub repeat_secs: i32,
    pub send_resolved: bool,
    pub created_at: String,
    pub created_by: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteList {
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum MinSeverity {
    Info,
    Warning,
    Critical,
}

impl MinSeverity {
    /// As `alert_routes.min_severity` stores it.
    pub const fn as_str(self) -> &'static str {
        match self {
            MinSeverity::Info => "info",
            MinSeverity::Warning => "warning",
            MinSeverity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "info" => Some(MinSeverity::Info),
            "warning" => Some(MinSeverity::Warning),
            "critical" => Some(MinSeverity::Critical),
            _ => None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewRoute {
    /// The channel, by name.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 63))]
    pub channel: String,
    /// Alerts of this severity and above; default info (all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<MinSeverity>,
    /// Label matchers (`env=prod, team!=batch`); empty or absent: every alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 1000))]
    pub matchers: Option<String>,
    /// Notify a firing alert again after this long; 0: never. Default 14400 (4 h).
    #[serde(
        default,
        deserialize_with = "crate::json_integer::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 604_800))]
    pub repeat_secs: Option<u32>,
    /// Notify when the alert resolves; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_resolved: Option<bool>,
}

/// Changes to a route; absent fields stay as they are (its channel cannot change).
#[derive(Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RoutePatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<MinSeverity>,
    /// Label matchers (`env=prod, team!=batch`); empty: every alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 1000))]
    pub matchers: Option<String>,
    /// 0: never repeat; else at least 60.
    #[serde(
        default,
        deserialize_with = "crate::json_integer::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 604_800))]
    pub repeat_secs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_resolved: Option<bool>,
}

impl RoutePatch {
    /// Nothing would change.
    pub fn is_empty(&self) -> bool {
        self.min_severity.is_none()
            && self.matchers.is_none()
            && self.repeat_secs.is_none()
            && self.send_resolved.is_none()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attempt {
    pub attempt: i32,
    pub at: String,
    pub ok: bool,
    pub status: Option<i32>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delivery {
    pub id: i64,
    pub idempotency_key: String,
    pub channel_id: i64,
    pub alert_id: Option<i64>,
    /// `firing`, `resolved`, `repeat` or `test`.
    pub kind: String,
    pub rule: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub created_at: String,
    pub next_attempt_at: Option<String>,
    pub finished_at: Option<String>,
    pub last_error: Option<String>,
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What the CLI sends is what the API reads: unset fields are left out (the API's
    /// defaults apply), integers may be written as JSON Schema allows (`10.0`).
    #[test]
    fn request_bodies_leave_out_what_is_unset_and_read_back() {
        let mut new = NewChannel::new(
            "ops".into(),
            Kind::Webhook,
            "https://hooks.example.net/a".into(),
        );
        new.secret = Some("a signing secret of some length".into());
        let sent = serde_json::to_value(&new).expect("json");
        assert_eq!(
            sent,
            json!({"name": "ops", "kind": "webhook", "url": "https://hooks.example.net/a",
                   "secret": "a signing secret of some length", "insecure_http": false})
        );
        let back: NewChannel = serde_json::from_value(sent).expect("read back");
        assert_eq!(back.kind, Kind::Webhook);
        assert!(!format!("{back:?}").contains("signing"), "{back:?}");

        assert!(ChannelPatch::default().is_empty());
        let patch: ChannelPatch =
            serde_json::from_value(json!({"timeout_secs": 10.0})).expect("patch");
        assert_eq!(patch.timeout_secs, Some(10));
        assert!(!patch.is_empty());
        assert!(serde_json::from_value::<ChannelPatch>(json!({"kind": "slack"})).is_err());

        let route = NewRoute {
            channel: "ops".into(),
            min_severity: MinSeverity::parse("warning"),
            matchers: None,
            repeat_secs: Some(0),
            send_resolved: None,
        };
        assert_eq!(
            serde_json::to_value(&route).expect("json"),
            json!({"channel": "ops", "min_severity": "warning", "repeat_secs": 0})
        );
        assert!(RoutePatch::default().is_empty());
        assert_eq!(MinSeverity::parse("fatal"), None);
        for k in [Kind::Webhook, Kind::Slack, Kind::Alertmanager, Kind::Email] {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
    }
}
