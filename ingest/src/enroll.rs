//! `Enroll` and `Renew`: signing agents' CSRs with the Lasect CA.
//!
//! Enroll is the one call served without a client certificate. Its token is
//! checked and spent in the same transaction that records the certificate
//! (`SELECT … FOR UPDATE` on the token row), so concurrent enrollments with
//! a single-use token cannot both succeed, and a refused enrollment does not
//! spend a use. The CSR's Common Name is the agent id asked for: an id some
//! agent already has is refused unless the token is bound to exactly that id
//! (re-enrolling a host that lost its state); a re-enrollment revokes every
//! earlier certificate of that id (`re-enrolled`), ending their connections.
//! Renew needs the caller's certificate to be the agent's live one: its
//! serial recorded for that agent and not revoked, so a revoked or
//! superseded certificate cannot renew itself back to life. It issues one
//! for the same id and supersedes every older serial (refused from then on,
//! see [`crate::revocation`]); everything is in the store, so any ingest
//! replica, before or after a restart, can renew.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use deadpool_postgres::Pool;
use lasect_pki::{CertificateAuthority, ENROLLMENT_TOKEN_PREFIX, PkiError, SignedCert};
use lasect_proto::v1::{EnrollRequest, EnrollResponse, RenewRequest};
use tokio::sync::Semaphore;
use tonic::Status;

use crate::ErrorChain;
use crate::config::Enrollment;
use crate::identity::AgentId;
use crate::revocation::Revocations;

/// Largest CSR accepted (a P-256 or RSA-4096 CSR is well under it).
const MAX_CSR_BYTES: usize = 16 << 10;

#[derive(Debug, thiserror::Error)]
pub enum EnrollSetupError {
    #[error("cannot load the enrollment CA")]
    Ca(#[source] PkiError),
    #[error(
        "enrollment.ca_cert is not one of the CAs in tls.ca_file ({}): the certificates it \
         signs would be refused at the handshake",
        .0.display()
    )]
    CaNotTrusted(std::path::PathBuf),
}

/// The CA and the lifetime of what it signs, when `[enrollment]` is set.
pub struct Enroller {
    ca: Option<Arc<CertificateAuthority>>,
    validity: Duration,
    pool: Pool,
    revocations: Revocations,
    /// Enroll is served without a client certificate: bound how many run
    /// at once so anonymous callers cannot tie up the store pool.
    slots: Semaphore,
}

/// The CA of `[enrollment]`, loaded and checked at startup.
pub struct SigningCa {
    ca: Arc<CertificateAuthority>,
    validity: Duration,
}

impl SigningCa {
    /// Loads the CA of `[enrollment]` (if configured). `client_roots` are
    /// the DER certificates of `tls.ca_file` (at `client_roots_path`): the
    /// enrollment CA must be one of them, or what it signs would be refused.
    pub fn load(
        config: Option<&Enrollment>,
        client_roots: &[Vec<u8>],
        client_roots_path: &std::path::Path,
    ) -> Result<Option<Self>, EnrollSetupError> {
        let Some(e) = config else {
            return Ok(None);
        };
        let ca = CertificateAuthority::load_files(&e.ca_cert, &e.ca_key)
            .map_err(EnrollSetupError::Ca)?;
        if !client_roots.iter().any(|root| root == ca.cert_der()) {
            return Err(EnrollSetupError::CaNotTrusted(client_roots_path.to_owned()));
        }
        Ok(Some(Self {
            ca: Arc::new(ca),
            validity: Duration::from_secs(e.cert_validity_secs),
        }))
    }
}

/// Enrollments processed at once; more are refused (RESOURCE_EXHAUSTED).
const MAX_CONCURRENT_ENROLLMENTS: usize = 4;

impl Enroller {
    pub fn new(ca: Option<SigningCa>, pool: Pool, revocations: Revocations) -> Self {
        let (ca, validity) = match ca {
            Some(SigningCa { ca, validity }) => (Some(ca), validity),
            None => (None, Duration::ZERO),
        };
        Self {
            ca,
            validity,
            pool,
            revocations,
            slots: Semaphore::new(MAX_CONCURRENT_ENROLLMENTS),
        }
    }

    fn ca(&self) -> Result<&CertificateAuthority, Status> {
        self.ca
            .as_deref()
            .ok_or_else(|| Status::failed_precondition("enrollment is not configured"))
    }

    pub async fn enroll(&self, request: EnrollRequest) -> Result<EnrollResponse, Status> {
        let ca = self.ca()?;
        let token = request.token.trim();
        if !lasect_pki::looks_like_token(token, ENROLLMENT_TOKEN_PREFIX) {
            return Err(Status::unauthenticated(format!(
                "malformed enrollment token (expected {ENROLLMENT_TOKEN_PREFIX}_ followed by 43 characters)"
            )));
        }
        // Only the CSR's signature and name now; the (costlier) signing
        // waits until the token has passed.
        let agent = csr_agent_id(&request.csr_pem)?;
        let _slot = self.slots.try_acquire().map_err(|_| {
            Status::resource_exhausted("too many enrollments at once; retry in a few seconds")
        })?;
        if self.revocations.is_disabled(&agent) {
            return Err(disabled(&agent));
        }

        let mut client = self.pool.get().await.map_err(store("get a connection"))?;
        let tx = client
            .transaction()
            .await
            .map_err(store("begin enrollment"))?;
        let row = tx
            .query_opt(
                "SELECT id, agent_id, uses >= max_uses, expires_at <= now(), revoked_at IS NOT NULL
                 FROM enrollment_tokens WHERE token_hash = $1 FOR UPDATE",
                &[&lasect_pki::hash_token(token)],
            )
            .await
            .map_err(store("look up the enrollment token"))?;
        let Some(row) = row else {
            return Err(Status::unauthenticated("unknown enrollment token"));
        };
        let (token_id, bound, used_up, expired, revoked): (i64, Option<String>, bool, bool, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        if revoked {
            return Err(Status::permission_denied(
                "the enrollment token has been revoked",
            ));
        }
        if expired {
            return Err(Status::permission_denied(
                "the enrollment token has expired",
            ));
        }
        if used_up {
            return Err(Status::permission_denied(
                "the enrollment token has already been used up",
            ));
        }
        if let Some(bound) = &bound
            && *bound != agent
        {
            return Err(Status::permission_denied(format!(
                "the enrollment token is bound to agent {bound:?}, not {agent:?}"
            )));
        }

        let signed = sign(ca, &request.csr_pem, self.validity)?;
        let hostname = crate::reports::clean(&request.hostname);
        let version = crate::reports::clean(&request.agent_version);
        let not_after = signed.not_after;
        let serial = signed.serial_hex.clone();
        // Claims the id: a new id is inserted; an existing one only with a
        // token bound to it (checked above), never when disabled.
        let inserted = tx
            .query_opt(
                "INSERT INTO agents (id, hostname, version, enrolled_at, cert_serial, cert_not_after)
                 VALUES ($1, $2, $3, now(), $4, $5)
                 ON CONFLICT (id) DO NOTHING RETURNING id",
                &[&agent, &hostname, &version, &serial, &not_after],
            )
            .await
            .map_err(store("record the agent"))?;
        if inserted.is_none() {
            if bound.is_none() {
                return Err(Status::already_exists(format!(
                    "agent id {agent:?} is already taken by another agent; choose another id, or \
                     use a token bound to {agent:?} to enroll this host in its place"
                )));
            }
            let disabled_row = tx
                .query_one(
                    "SELECT disabled_at IS NOT NULL FROM agents WHERE id = $1 FOR UPDATE",
                    &[&agent],
                )
                .await
                .map_err(store("read the agent"))?;
            if disabled_row.get::<_, bool>(0) {
                return Err(disabled(&agent));
            }
            tx.execute(
                "UPDATE agents SET hostname = coalesce($2, hostname), version = coalesce($3, version),
                     enrolled_at = now(), cert_serial = $4, cert_not_after = $5, last_seen = now()
                 WHERE id = $1",
                &[&agent, &hostname, &version, &serial, &not_after],
            )
            .await
            .map_err(store("record the agent"))?;
        }
        tx.execute(
            "UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = $1",
            &[&token_id],
        )
        .await
        .map_err(store("spend the enrollment token"))?;
        record_certificate(&tx, &signed, "enroll", Some(token_id)).await?;
        let revoked = retire_others(&tx, &agent, &serial, "re-enrolled", "enrollment").await?;
        tx.commit().await.map_err(store("commit the enrollment"))?;
        if !revoked.is_empty() {
            tracing::info!(%agent, serials = ?revoked, "re-enrollment revoked the earlier certificates");
            self.revocations.revoke_serials(revoked);
        }
        tracing::info!(%agent, serial, token_id, "agent enrolled");
        Ok(response(ca, signed))
    }

    /// Renews the certificate `caller_serial` of `caller` (the one the call
    /// came with).
    pub async fn renew(
        &self,
        caller: &AgentId,
        caller_serial: &str,
        request: RenewRequest,
    ) -> Result<EnrollResponse, Status> {
        let ca = self.ca()?;
        if self.revocations.is_revoked(caller_serial) {
            return Err(not_live(caller, caller_serial, "revoked"));
        }
        let signed = sign(ca, &request.csr_pem, self.validity)?;
        if signed.agent_id != caller.as_str() {
            return Err(Status::permission_denied(format!(
                "a renewal must be for the caller's own id {caller}, not {:?}",
                signed.agent_id
            )));
        }
        let mut client = self.pool.get().await.map_err(store("get a connection"))?;
        let tx = client.transaction().await.map_err(store("begin renewal"))?;
        // Locked, so two renewals with one certificate cannot both succeed.
        let current = tx
            .query_opt(
                "SELECT agent_id, revoke_reason FROM agent_certificates WHERE serial = $1 FOR UPDATE",
                &[&caller_serial],
            )
            .await
            .map_err(store("read the caller's certificate"))?;
        match current {
            None => return Err(not_live(caller, caller_serial, "not registered")),
            Some(row) => {
                let (owner, revoked): (String, Option<String>) = (row.get(0), row.get(1));
                if owner != caller.as_str() {
                    return Err(not_live(
                        caller,
                        caller_serial,
                        "recorded for another agent",
                    ));
                }
                if let Some(reason) = revoked {
                    return Err(not_live(caller, caller_serial, &reason));
                }
            }
        }
        let row = tx
            .query_opt(
                "INSERT INTO agents (id, cert_serial, cert_not_after) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET cert_serial = excluded.cert_serial,
                     cert_not_after = excluded.cert_not_after
                 WHERE agents.disabled_at IS NULL
                 RETURNING id",
                &[&caller.as_str(), &signed.serial_hex, &signed.not_after],
            )
            .await
            .map_err(store("record the renewal"))?;
        if row.is_none() {
            return Err(disabled(caller.as_str()));
        }
        record_certificate(&tx, &signed, "renew", None).await?;
        retire_others(
            &tx,
            caller.as_str(),
            &signed.serial_hex,
            "superseded",
            "renewal",
        )
        .await?;
        tx.commit().await.map_err(store("commit the renewal"))?;
        tracing::info!(agent = %caller, serial = signed.serial_hex, "agent certificate renewed");
        Ok(response(ca, signed))
    }
}

fn not_live(agent: &AgentId, serial: &str, why: &str) -> Status {
    Status::permission_denied(format!(
        "certificate {serial} is not agent {agent}'s live certificate ({why}); it cannot be \
         renewed: enroll again with a token bound to {agent:?}"
    ))
}

/// Revokes every live certificate of `agent` but `keep`; returns their serials.
async fn retire_others(
    tx: &deadpool_postgres::Transaction<'_>,
    agent: &str,
    keep: &str,
    reason: &str,
    by: &str,
) -> Result<Vec<String>, Status> {
    let rows = tx
        .query(
            "UPDATE agent_certificates SET revoked_at = now(), revoked_by = $4, revoke_reason = $3
             WHERE agent_id = $1 AND serial <> $2 AND revoked_at IS NULL RETURNING serial",
            &[&agent, &keep, &reason, &by],
        )
        .await
        .map_err(store("revoke the earlier certificates"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub fn disabled(agent: &str) -> Status {
    Status::permission_denied(format!(
        "agent {agent:?} is disabled; an admin must enable it again before it can connect"
    ))
}

/// The agent id a CSR asks for, after checking its size and signature.
fn csr_agent_id(csr: &str) -> Result<String, Status> {
    if csr.len() > MAX_CSR_BYTES {
        return Err(Status::invalid_argument(format!(
            "the CSR is larger than {MAX_CSR_BYTES} bytes"
        )));
    }
    lasect_pki::csr_agent_id(csr).map_err(csr_status)
}

fn csr_status(e: PkiError) -> Status {
    match e {
        PkiError::Csr(_)
        | PkiError::InvalidCsr(_)
        | PkiError::MissingCommonName
        | PkiError::InvalidAgentId { .. } => {
            Status::invalid_argument(format!("unusable CSR: {}", ErrorChain(&e)))
        }
        other => {
            tracing::error!(error = %ErrorChain(&other), "cannot sign a CSR");
            Status::internal("cannot sign the certificate")
        }
    }
}

fn sign(ca: &CertificateAuthority, csr: &str, validity: Duration) -> Result<SignedCert, Status> {
    csr_agent_id(csr)?;
    ca.sign_agent_csr(csr, validity).map_err(csr_status)
}

async fn record_certificate(
    tx: &deadpool_postgres::Transaction<'_>,
    signed: &SignedCert,
    reason: &str,
    token_id: Option<i64>,
) -> Result<(), Status> {
    tx.execute(
        "INSERT INTO agent_certificates (serial, agent_id, not_before, not_after, reason, token_id)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &signed.serial_hex,
            &signed.agent_id,
            &signed.not_before,
            &signed.not_after,
            &reason,
            &token_id,
        ],
    )
    .await
    .map_err(store("record the certificate"))?;
    Ok(())
}

fn response(ca: &CertificateAuthority, signed: SignedCert) -> EnrollResponse {
    let not_after = signed
        .not_after
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    EnrollResponse {
        agent_id: signed.agent_id,
        certificate_pem: signed.cert_pem,
        ca_pem: ca.cert_pem().to_owned(),
        not_after_unix_secs: not_after,
        serial: signed.serial_hex,
    }
}

/// A store failure: logged in full, the client is told to retry.
fn store<E: std::error::Error + 'static>(action: &'static str) -> impl FnOnce(E) -> Status {
    move |e| {
        tracing::warn!(error = %ErrorChain(&e), action, "store error during enrollment");
        Status::unavailable("store unavailable, retry later")
    }
}
