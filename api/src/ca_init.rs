//! `lasect-api ca init`: lays out the TLS material directory (see `lasect_pki::init_dir`).
//! Prints paths and what happened to each pair, never key material. With `--store-dsn`, the
//! agent certificates are also registered in the store ([`register_agents`]); without it, ingest
//! records each one when it first connects (rules in `ingest/src/revocation.rs`).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use lasect_pki::{CertInfo, InitOptions, init_dir};

use crate::server::{connect_store, store_pool};
use crate::store_dsn::StoreDsn;

pub fn run_ca_init(
    dir: &Path,
    agent_ids: Vec<String>,
    ingest_sans: Vec<String>,
    api_sans: Vec<String>,
    validity_days: u32,
) -> anyhow::Result<String> {
    let options = InitOptions {
        agent_ids,
        ingest_sans,
        api_sans,
        validity: Duration::from_secs(u64::from(validity_days) * 24 * 3600),
    };
    let report = init_dir(dir, &options)
        .with_context(|| format!("initialise TLS material in {}", dir.display()))?;
    let ca_pem = dir.join("ca.pem");
    Ok(format!(
        "{report}CA certificate for agents and the CLI (LASECT_CA_FILE): {}\n",
        ca_pem.display()
    ))
}

/// `ca init --store-dsn`: records the agent certificates of `dir` in the store (`ca_init` rows
/// of `agent_certificates`, V21), so ingest knows them before they first connect: an unbound
/// enrollment token cannot claim their ids, and their serial is the one ingest accepts.
/// Idempotent; a certificate already recorded is left as it is.
pub async fn register_agents(
    dsn: &StoreDsn,
    dir: &Path,
    agent_ids: &[String],
) -> anyhow::Result<String> {
    let mut client = connect_store(dsn).await?;
    lasect_migrations::migrate(&mut client)
        .await
        .context("migrate the store")?;
    drop(client);
    let pool = store_pool(dsn, Duration::from_secs(10))?;
    let mut out = String::new();
    for id in agent_ids {
        let path = dir.join("agents").join(format!("{id}.pem"));
        let pem = std::fs::read_to_string(&path)
            .with_context(|| format!("read the certificate of agent {id} ({})", path.display()))?;
        let cert = CertInfo::from_pem(&pem)
            .with_context(|| format!("read the certificate {}", path.display()))?;
        let not_before = DateTime::<Utc>::from(cert.not_before);
        let not_after = DateTime::<Utc>::from(cert.not_after);
        let mut tx = pool.begin().await.context("begin")?;
        sqlx::query(
            "INSERT INTO agents (id, cert_serial, cert_not_after) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET cert_serial = coalesce(agents.cert_serial, $2), \
                 cert_not_after = coalesce(agents.cert_not_after, $3)",
        )
        .bind(id)
        .bind(&cert.serial_hex)
        .bind(not_after)
        .execute(&mut *tx)
        .await
        .with_context(|| format!("record agent {id}"))?;
        let recorded = sqlx::query(
            "INSERT INTO agent_certificates (serial, agent_id, not_before, not_after, reason) \
             VALUES ($1, $2, $3, $4, 'ca_init') ON CONFLICT (serial) DO NOTHING",
        )
        .bind(&cert.serial_hex)
        .bind(id)
        .bind(not_before)
        .bind(not_after)
        .execute(&mut *tx)
        .await
        .with_context(|| format!("record the certificate of agent {id}"))?
        .rows_affected();
        tx.commit().await.context("commit")?;
        out.push_str(&format!(
            "agent {id}: certificate {} {} in the store\n",
            cert.serial_hex,
            if recorded == 1 {
                "registered"
            } else {
                "already"
            }
        ));
    }
    Ok(out)
}
