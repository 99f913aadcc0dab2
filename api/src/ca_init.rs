//! `lasect-api ca init`: lays out the TLS material directory (see `lasect_pki::init_dir`).
//! Prints paths and what happened to each pair, never key material.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use lasect_pki::{InitOptions, init_dir};

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
