//! `lasect-api secrets rotate`: a new key first in the key file (older keys stay, so every
//! ciphertext keeps decrypting), then every stored DSN re-encrypted with it in one
//! transaction. Ingest re-reads the key file when it changes; once this has run, the old key
//! lines may be removed from the file.

use std::path::Path;

use anyhow::Context;
use lasect_pki::secrets::Keyring;

use crate::routes::instances_admin::DSN_AAD;
use crate::server::store_pool;
use crate::store_dsn::StoreDsn;

/// Rotates the key in `key_file` and re-encrypts the store; returns a summary line.
pub async fn rotate(dsn: &StoreDsn, key_file: &Path) -> anyhow::Result<String> {
    let pool = store_pool(dsn, std::time::Duration::from_secs(10))?;
    // Everything must decrypt with the current file before anything changes.
    let before = Keyring::load(key_file)
        .with_context(|| format!("load the key file {}", key_file.display()))?;
    let rows: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT id, dsn_ciphertext FROM instances WHERE dsn_ciphertext IS NOT NULL")
            .fetch_all(&pool)
            .await
            .context("read the stored DSNs")?;
    let mut plain = Vec::with_capacity(rows.len());
    for (id, c) in &rows {
        let dsn = before.decrypt(c, DSN_AAD).with_context(|| {
            format!("instance {id}: its DSN does not decrypt with the key file")
        })?;
        plain.push((*id, dsn));
    }
    let after = Keyring::rotate_file(key_file)
        .with_context(|| format!("add a new key to {}", key_file.display()))?;
    let mut tx = pool.begin().await.context("begin")?;
    for (id, dsn) in &plain {
        let c = after.encrypt(dsn, DSN_AAD).context("encrypt")?;
        sqlx::query("UPDATE instances SET dsn_ciphertext = $2 WHERE id = $1")
            .bind(id)
            .bind(c)
            .execute(&mut *tx)
            .await
            .context("store a re-encrypted DSN")?;
    }
    tx.commit().await.context("commit")?;
    Ok(format!(
        "new key {} is first in {}; re-encrypted {} DSN(s). The older keys may now be removed from the file.\n",
        after.current_key_id(),
        key_file.display(),
        plain.len()
    ))
}
