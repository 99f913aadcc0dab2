//! `lasect-api secrets rotate`: a new key first in the key file (older keys stay, so every
//! ciphertext keeps decrypting), then every stored DSN re-encrypted with it in one
//! transaction, and every backup repository secret (object store keys, cipher passphrases, of
//! instances' and of label repositories) in another. Ingest re-reads the key file when it changes; once this has run, the old key
//! lines may be removed from the file.
//!
//! Every instance secret (`dsn`, `run_dsn`) is bound to its row: instance id, serving agent and
//! column are its associated data (`lasect_pki::secrets::encrypt_instance_secret`). DSNs stored
//! before that binding (associated data `instance-dsn`) are re-encrypted bound by
//! [`rebind_legacy`] when the API starts, and by every rotation; until then they still decrypt.

use std::path::Path;

use anyhow::Context;
use lasect_pki::Secret;
use lasect_pki::secrets::{
    FIELD_DSN, FIELD_RUN_DSN, Keyring, decrypt_instance_secret, encrypt_instance_secret,
};
use sqlx::PgPool;

use crate::server::store_pool;
use crate::store_dsn::StoreDsn;

/// One instance's secrets, decrypted.
struct Plain {
    id: i64,
    agent: String,
    dsn: Option<Secret>,
    run_dsn: Option<Secret>,
    legacy: bool,
}

type Row = (i64, String, Option<Vec<u8>>, Option<Vec<u8>>);

async fn read_all(pool: &PgPool, keyring: &Keyring) -> anyhow::Result<Vec<Plain>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, agent_id, dsn_ciphertext, run_dsn_ciphertext FROM instances \
         WHERE dsn_ciphertext IS NOT NULL OR run_dsn_ciphertext IS NOT NULL ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .context("read the stored DSNs")?;
    let mut plain = Vec::with_capacity(rows.len());
    for (id, agent, dsn, run_dsn) in rows {
        let open = |field: &str, c: &Option<Vec<u8>>| -> anyhow::Result<Option<(Secret, bool)>> {
            c.as_deref()
                .map(|c| {
                    decrypt_instance_secret(keyring, id, &agent, field, c)
                        .map(|d| (d.plaintext, d.legacy))
                        .with_context(|| {
                            format!(
                                "instance {id}: its {field} does not decrypt with the key file \
                                 (a wrong key file, or a ciphertext copied from another row)"
                            )
                        })
                })
                .transpose()
        };
        let dsn = open(FIELD_DSN, &dsn)?;
        let run_dsn = open(FIELD_RUN_DSN, &run_dsn)?;
        let legacy = dsn.as_ref().is_some_and(|d| d.1) || run_dsn.as_ref().is_some_and(|d| d.1);
        plain.push(Plain {
            id,
            agent: agent.clone(),
            dsn: dsn.map(|d| d.0),
            run_dsn: run_dsn.map(|d| d.0),
            legacy,
        });
    }
    Ok(plain)
}

/// Writes `rows` encrypted with the first key of `keyring`, bound to their rows, in one
/// transaction. A row whose agent changed meanwhile is left alone (it would not decrypt).
async fn write_all(pool: &PgPool, keyring: &Keyring, rows: &[&Plain]) -> anyhow::Result<()> {
    let mut tx = pool.begin().await.context("begin")?;
    for p in rows {
        let seal = |field: &str, s: &Option<Secret>| {
            s.as_ref()
                .map(|s| {
                    let plain = s.expose_secret().as_bytes();
                    encrypt_instance_secret(keyring, p.id, &p.agent, field, plain)
                })
                .transpose()
                .context("encrypt")
        };
        sqlx::query(
            "UPDATE instances SET dsn_ciphertext = $3, run_dsn_ciphertext = $4 \
             WHERE id = $1 AND agent_id = $2",
        )
        .bind(p.id)
        .bind(&p.agent)
        .bind(seal(FIELD_DSN, &p.dsn)?)
        .bind(seal(FIELD_RUN_DSN, &p.run_dsn)?)
        .execute(&mut *tx)
        .await
        .context("store a re-encrypted DSN")?;
    }
    tx.commit().await.context("commit")?;
    Ok(())
}

/// Rotates the key in `key_file` and re-encrypts the store; returns a summary line.
pub async fn rotate(dsn: &StoreDsn, key_file: &Path) -> anyhow::Result<String> {
    let pool = store_pool(dsn, std::time::Duration::from_secs(10))?;
    // Everything must decrypt with the current file before anything changes.
    let before = Keyring::load(key_file)
        .with_context(|| format!("load the key file {}", key_file.display()))?;
    let plain = read_all(&pool, &before).await?;
    let repository_secrets = read_repository_secrets(&pool, &before).await?;
    let after = Keyring::rotate_file(key_file)
        .with_context(|| format!("add a new key to {}", key_file.display()))?;
    write_all(&pool, &after, &plain.iter().collect::<Vec<_>>()).await?;
    write_repository_secrets(&pool, &after, &repository_secrets).await?;
    Ok(format!(
        "new key {} is first in {}; re-encrypted {} instance(s) and {} backup repository \
         secret(s). The older keys may now be removed from the file.\n",
        after.current_key_id(),
        key_file.display(),
        plain.len(),
        repository_secrets.len()
    ))
}

/// What a backup repository secret is bound to (docs/BACKUPS.md): an instance's repository
/// (instance, agent, `backup:<stanza>:<field>`) or a label repository (the template row).
enum Binding {
    Instance {
        instance: i64,
        agent: String,
        field: String,
    },
    Template {
        id: i64,
        field: &'static str,
    },
}

/// One backup repository secret (object store key, cipher passphrase), decrypted, and where it
/// is stored.
struct RepositorySecret {
    /// `backup_label_repositories` rather than `backup_repositories`.
    template: bool,
    id: i64,
    /// `secret_key` or `cipher_pass` (its column is `<field>_ciphertext`).
    field: &'static str,
    binding: Binding,
    plain: Secret,
}

impl Binding {
    fn seal(&self, keyring: &Keyring, plain: &Secret) -> anyhow::Result<Vec<u8>> {
        let bytes = plain.expose_secret().as_bytes();
        match self {
            Binding::Instance {
                instance,
                agent,
                field,
            } => encrypt_instance_secret(keyring, *instance, agent, field, bytes),
            Binding::Template { id, field } => keyring.encrypt(
                bytes,
                &crate::routes::backup_label_repos::template_aad(*id, field),
            ),
        }
        .context("encrypt")
    }

    fn open(&self, keyring: &Keyring, ciphertext: &[u8]) -> anyhow::Result<Secret> {
        match self {
            Binding::Instance {
                instance,
                agent,
                field,
            } => decrypt_instance_secret(keyring, *instance, agent, field, ciphertext)
                .map(|d| d.plaintext),
            Binding::Template { id, field } => keyring
                .decrypt_string(
                    ciphertext,
                    &crate::routes::backup_label_repos::template_aad(*id, field),
                )
                .map(Secret::new),
        }
        .map_err(anyhow::Error::from)
    }
}

/// Every backup repository secret, decrypted with `keyring` (all or an error: a rotation
/// changes nothing unless everything decrypts).
async fn read_repository_secrets(
    pool: &PgPool,
    keyring: &Keyring,
) -> anyhow::Result<Vec<RepositorySecret>> {
    type RepoRow = (i64, i64, String, String, Option<Vec<u8>>, Option<Vec<u8>>);
    let rows: Vec<RepoRow> = sqlx::query_as(
        "SELECT b.id, b.instance_id, i.agent_id, b.stanza, b.secret_key_ciphertext, \
                b.cipher_pass_ciphertext \
         FROM backup_repositories b JOIN instances i ON i.id = b.instance_id \
         WHERE b.secret_key_ciphertext IS NOT NULL OR b.cipher_pass_ciphertext IS NOT NULL \
         ORDER BY b.id",
    )
    .fetch_all(pool)
    .await
    .context("read the backup repositories' secrets")?;
    let mut out = Vec::new();
    for (id, instance, agent, stanza, secret_key, cipher_pass) in rows {
        for (field, ciphertext) in [("secret_key", secret_key), ("cipher_pass", cipher_pass)] {
            let Some(ciphertext) = ciphertext else {
                continue;
            };
            let binding = Binding::Instance {
                instance,
                agent: agent.clone(),
                field: format!("backup:{stanza}:{field}"),
            };
            let plain = binding.open(keyring, &ciphertext).with_context(|| {
                format!(
                    "backup repository {id} (instance {instance}): its {field} does not \
                     decrypt with the key file"
                )
            })?;
            out.push(RepositorySecret {
                template: false,
                id,
                field,
                binding,
                plain,
            });
        }
    }
    type TemplateRow = (i64, Option<Vec<u8>>, Option<Vec<u8>>);
    let templates: Vec<TemplateRow> = sqlx::query_as(
        "SELECT id, secret_key_ciphertext, cipher_pass_ciphertext FROM backup_label_repositories \
         WHERE secret_key_ciphertext IS NOT NULL OR cipher_pass_ciphertext IS NOT NULL \
         ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .context("read the label repositories' secrets")?;
    for (id, secret_key, cipher_pass) in templates {
        for (field, ciphertext) in [("secret_key", secret_key), ("cipher_pass", cipher_pass)] {
            let Some(ciphertext) = ciphertext else {
                continue;
            };
            let binding = Binding::Template { id, field };
            let plain = binding.open(keyring, &ciphertext).with_context(|| {
                format!("label repository {id}: its {field} does not decrypt with the key file")
            })?;
            out.push(RepositorySecret {
                template: true,
                id,
                field,
                binding,
                plain,
            });
        }
    }
    Ok(out)
}

/// Writes `secrets` encrypted with the first key of `keyring`, in one transaction.
async fn write_repository_secrets(
    pool: &PgPool,
    keyring: &Keyring,
    secrets: &[RepositorySecret],
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await.context("begin")?;
    for s in secrets {
        let sql = match (s.template, s.field) {
            (false, "secret_key") => {
                "UPDATE backup_repositories SET secret_key_ciphertext = $2 WHERE id = $1"
            }
            (false, _) => {
                "UPDATE backup_repositories SET cipher_pass_ciphertext = $2 WHERE id = $1"
            }
            (true, "secret_key") => {
                "UPDATE backup_label_repositories SET secret_key_ciphertext = $2 WHERE id = $1"
            }
            (true, _) => {
                "UPDATE backup_label_repositories SET cipher_pass_ciphertext = $2 WHERE id = $1"
            }
        };
        sqlx::query(sql)
            .bind(s.id)
            .bind(s.binding.seal(keyring, &s.plain)?)
            .execute(&mut *tx)
            .await
            .context("store a re-encrypted backup repository secret")?;
    }
    tx.commit().await.context("commit")?;
    Ok(())
}

/// Re-encrypts, bound to their rows, the DSNs stored before the binding; returns how many.
/// A row that does not decrypt at all is left as it is (ingest reports it when it would be
/// assigned) and does not stop the others.
pub async fn rebind_legacy(pool: &PgPool, keyring: &Keyring) -> anyhow::Result<usize> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, agent_id, dsn_ciphertext, run_dsn_ciphertext FROM instances \
         WHERE dsn_ciphertext IS NOT NULL ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .context("read the stored DSNs")?;
    let mut legacy = Vec::new();
    for (id, agent, dsn, run_dsn) in rows {
        let Some(Ok(d)) = dsn
            .as_deref()
            .map(|c| decrypt_instance_secret(keyring, id, &agent, FIELD_DSN, c))
        else {
            continue;
        };
        if !d.legacy {
            continue;
        }
        let run_dsn = match run_dsn.as_deref() {
            Some(c) => match decrypt_instance_secret(keyring, id, &agent, FIELD_RUN_DSN, c) {
                Ok(r) => Some(r.plaintext),
                Err(_) => continue,
            },
            None => None,
        };
        legacy.push(Plain {
            id,
            agent,
            dsn: Some(d.plaintext),
            run_dsn,
            legacy: true,
        });
    }
    let chosen: Vec<&Plain> = legacy.iter().filter(|p| p.legacy).collect();
    if !chosen.is_empty() {
        write_all(pool, keyring, &chosen).await?;
    }
    Ok(chosen.len())
}
