//! `lasect agent token list|revoke` and `lasect agent cert list|revoke` (admin): enrollment
//! tokens after their creation, and the certificate serials ingest accepts for an agent. The
//! answers are read as the API's own types (`lasect_api_contract::agents`).

use lasect_api_contract::agents::{
    AgentCertificate, AgentCertificateList, EnrollmentTokenInfo, EnrollmentTokenList,
};
use serde_json::{Value, json};

use crate::api_client::ApiClient;
use crate::args::{AgentCertCommand, OutputFormat};
use crate::json_table::{render, render_one};
use crate::{encode_segment, render as render_body};

const ENROLLMENT_TOKEN_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("state", "state"),
    ("bound to", "agent_id"),
    ("uses", "uses"),
    ("max", "max_uses"),
    ("enrolled", "enrolled_agents"),
    ("created by", "created_by"),
    ("created", "created_at"),
    ("expires", "expires_at"),
    ("revoked by", "revoked_by"),
];

const CERTIFICATE_COLUMNS: &[(&str, &str)] = &[
    ("serial", "serial"),
    ("current", "current"),
    ("reason", "reason"),
    ("issued", "issued_at"),
    ("not after", "not_after"),
    ("revoked", "revoke_reason"),
    ("revoked at", "revoked_at"),
    ("revoked by", "revoked_by"),
];

fn rows<'a>(body: &'a Value, key: &str) -> &'a [Value] {
    body[key].as_array().map(Vec::as_slice).unwrap_or_default()
}

pub async fn list_tokens(client: &ApiClient, output: OutputFormat) -> anyhow::Result<String> {
    let tokens: EnrollmentTokenList = client.get("api/v1/agents/enrollment-tokens").await?;
    let body = serde_json::to_value(&tokens)?;
    render_body(output, &body, |b| {
        Ok(render(rows(b, "tokens"), ENROLLMENT_TOKEN_COLUMNS))
    })
}

pub async fn revoke_token(
    client: &ApiClient,
    id: i64,
    output: OutputFormat,
) -> anyhow::Result<String> {
    let path = format!("api/v1/agents/enrollment-tokens/{id}/revoke");
    let token: EnrollmentTokenInfo = client.post(&path, &json!({})).await?;
    let body = serde_json::to_value(&token)?;
    render_body(output, &body, |b| {
        Ok(render_one(b, ENROLLMENT_TOKEN_COLUMNS))
    })
}

pub async fn cert(
    client: &ApiClient,
    command: AgentCertCommand,
    output: OutputFormat,
) -> anyhow::Result<String> {
    match command {
        AgentCertCommand::List { agent } => {
            let path = format!("api/v1/agents/{}/certificates", encode_segment(&agent));
            let certificates: AgentCertificateList = client.get(&path).await?;
            let body = serde_json::to_value(&certificates)?;
            render_body(output, &body, |b| {
                Ok(render(rows(b, "certificates"), CERTIFICATE_COLUMNS))
            })
        }
        AgentCertCommand::Revoke { agent, serial } => {
            let path = format!(
                "api/v1/agents/{}/certificates/{}/revoke",
                encode_segment(&agent),
                encode_segment(&serial)
            );
            let certificate: AgentCertificate = client.post(&path, &json!({})).await?;
            let body = serde_json::to_value(&certificate)?;
            render_body(output, &body, |b| Ok(render_one(b, CERTIFICATE_COLUMNS)))
        }
    }
}
