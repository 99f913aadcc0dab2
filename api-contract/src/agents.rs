//! Agents (admin only): an agent as the API shows it ([`Agent`], [`AgentList`]), enrollment
//! tokens ([`CreateEnrollmentToken`] → [`EnrollmentToken`], then [`EnrollmentTokenInfo`],
//! [`EnrollmentTokenList`]) and the certificates ingest accepts for an agent
//! ([`AgentCertificate`], [`AgentCertificateList`]).

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Agent {
    pub id: String,
    pub hostname: Option<String>,
    pub version: Option<String>,
    pub last_seen: String,
    pub enrolled_at: Option<String>,
    pub cert_not_after: Option<String>,
    pub spool_backlog_batches: Option<i64>,
    pub spool_backlog_bytes: Option<i64>,
    pub disabled: bool,
    pub disabled_at: Option<String>,
    pub disabled_by: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentList {
    pub agents: Vec<Agent>,
}

#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollmentToken {
    /// Lifetime, 60 s to 30 days.
    #[cfg_attr(feature = "openapi", schema(minimum = 60, maximum = 2_592_000))]
    #[serde(deserialize_with = "crate::json_integer::required")]
    pub ttl_secs: u64,
    /// How many enrollments it allows, 1..=10000 (default 1).
    #[serde(default = "one", deserialize_with = "crate::json_integer::required")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10_000))]
    pub uses: u32,
    /// The only agent id it may enroll (default: any new id).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$"))]
    pub agent_id: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollmentToken {
    pub id: i64,
    /// The bearer secret, shown this once.
    pub token: String,
    pub agent_id: Option<String>,
    pub max_uses: u32,
    pub expires_at: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollmentTokenInfo {
    pub id: i64,
    /// The agent id the token is bound to; `null`: the enrolling agent chooses a new id.
    pub agent_id: Option<String>,
    pub max_uses: i32,
    pub uses: i32,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
    /// `active`, `used_up`, `expired` or `revoked`.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^(active|used_up|expired|revoked)$")
    )]
    pub state: String,
    /// The agents that enrolled with it.
    pub enrolled_agents: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollmentTokenList {
    pub tokens: Vec<EnrollmentTokenInfo>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentCertificate {
    /// Lowercase hex, as `openssl x509 -serial` prints it (case aside).
    pub serial: String,
    pub agent_id: String,
    /// `enroll`, `renew`, `ca_init` (registered by `lasect-api ca init --store-dsn`) or
    /// `first_use` (a `ca init` certificate recorded when it first connected).
    pub reason: String,
    pub issued_at: String,
    pub not_before: String,
    pub not_after: String,
    /// The serial ingest last recorded for the agent.
    pub current: bool,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
    /// `revoked` (by an operator), `superseded` (by a renewal) or `re-enrolled`.
    pub revoke_reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentCertificateList {
    pub certificates: Vec<AgentCertificate>,
}
