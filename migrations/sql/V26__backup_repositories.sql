-- Backups with pgBackRest (issue 17, docs/BACKUPS.md): the repository of each instance's
-- stanza, and the run kinds the agent executes with it.

-- One pgBackRest stanza of one instance and the repository that keeps its backups. Secrets
-- (the cipher passphrase, an object store's secret key) are AES-256-GCM ciphertexts bound to
-- the instance, its agent and the stanza (lasect_pki::secrets, like instances.dsn_ciphertext);
-- the API never returns them.
CREATE TABLE backup_repositories (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id            bigint NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    stanza                 text NOT NULL CHECK (stanza ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    repo_type              text NOT NULL DEFAULT 'posix'
                               CHECK (repo_type IN ('posix', 's3', 'gcs', 'azure')),
    -- repo1-path: the directory (posix) or the prefix inside the bucket.
    path                   text NOT NULL CHECK (path LIKE '/%'),
    -- A persistent pgBackRest config the agent keeps (what archive_command names); NULL: a
    -- temporary config per command.
    config_path            text CHECK (config_path LIKE '/%.conf'),
    bucket                 text,
    endpoint               text,
    region                 text,
    key_id                 text,
    secret_key_ciphertext  bytea,
    cipher_type            text CHECK (cipher_type IN ('aes-256-cbc')),
    cipher_pass_ciphertext bytea,
    retention_full         integer CHECK (retention_full BETWEEN 1 AND 9999999),
    retention_diff         integer CHECK (retention_diff BETWEEN 1 AND 9999999),
    created_at             timestamptz NOT NULL DEFAULT now(),
    created_by             text NOT NULL,
    UNIQUE (instance_id, stanza),
    CHECK ((cipher_type IS NULL) = (cipher_pass_ciphertext IS NULL)),
    CHECK (repo_type = 'posix' OR (bucket IS NOT NULL AND region IS NOT NULL))
);

ALTER TABLE runs DROP CONSTRAINT runs_kind_check;
ALTER TABLE runs ADD CONSTRAINT runs_kind_check CHECK (kind IN (
    'sql', 'explain', 'instance_check', 'instance_metadata',
    'schema_snapshot', 'table_data', 'export_csv', 'import_csv',
    'dump_sql', 'extension_list', 'extension_action', 'migration',
    'backup_stanza', 'backup', 'backup_info'));

-- One backup of a stanza at a time, whichever API process asks: the store decides.
CREATE UNIQUE INDEX runs_one_backup_per_stanza ON runs (instance_id, (params ->> 'stanza'))
    WHERE kind = 'backup' AND status IN ('queued', 'dispatched', 'running');
