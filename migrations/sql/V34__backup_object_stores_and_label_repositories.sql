-- Backups (issue 17, docs/BACKUPS.md "Repositories"): object-store options pgBackRest needs
-- beyond bucket, endpoint, region and key id, and repositories registered for a label.

-- How the object store is reached. key_type: s3 shared|auto|web-id, azure shared|sas,
-- gcs service|token|auto (NULL: pgBackRest's default, shared for S3 and Azure, service for
-- GCS). uri_style: host|path (S3 and Azure). storage_port, verify_tls and ca_file:
-- repo1-storage-port, -verify-tls, -ca-file (a CA file on the database host).
ALTER TABLE backup_repositories
    ADD COLUMN key_type     text CHECK (key_type IN ('shared', 'auto', 'web-id', 'sas', 'service', 'token')),
    ADD COLUMN uri_style    text CHECK (uri_style IN ('host', 'path')),
    ADD COLUMN storage_port integer CHECK (storage_port BETWEEN 1 AND 65535),
    ADD COLUMN verify_tls   boolean,
    ADD COLUMN ca_file      text CHECK (ca_file LIKE '/%');

-- A region is S3's alone: Azure and GCS repositories have none.
ALTER TABLE backup_repositories DROP CONSTRAINT backup_repositories_check1;
ALTER TABLE backup_repositories ADD CONSTRAINT backup_repositories_object_store_check
    CHECK (repo_type = 'posix' OR bucket IS NOT NULL);
ALTER TABLE backup_repositories ADD CONSTRAINT backup_repositories_s3_region_check
    CHECK (repo_type <> 's3' OR region IS NOT NULL);

-- A repository registered for the instances whose labels hold label_key = label_value: the
-- API keeps one backup_repositories row per matching instance (label_repository_id), with its
-- stanza (`stanza`, or derived from the instance's name when NULL) and its own copies of the
-- secrets, encrypted bound to that instance (so ingest hands them to its agent only). The
-- template's secrets are bound to the template (lasect_pki::secrets, "label repository").
CREATE TABLE backup_label_repositories (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    label_key              text NOT NULL CHECK (length(label_key) BETWEEN 1 AND 63),
    label_value            text NOT NULL CHECK (length(label_value) BETWEEN 1 AND 255),
    stanza                 text CHECK (stanza ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    repo_type              text NOT NULL DEFAULT 'posix'
                               CHECK (repo_type IN ('posix', 's3', 'gcs', 'azure')),
    path                   text NOT NULL CHECK (path LIKE '/%'),
    config_path            text CHECK (config_path LIKE '/%.conf'),
    bucket                 text,
    endpoint               text,
    region                 text,
    key_id                 text,
    key_type               text CHECK (key_type IN ('shared', 'auto', 'web-id', 'sas', 'service', 'token')),
    uri_style              text CHECK (uri_style IN ('host', 'path')),
    storage_port           integer CHECK (storage_port BETWEEN 1 AND 65535),
    verify_tls             boolean,
    ca_file                text CHECK (ca_file LIKE '/%'),
    secret_key_ciphertext  bytea,
    cipher_type            text CHECK (cipher_type IN ('aes-256-cbc')),
    cipher_pass_ciphertext bytea,
    retention_full         integer CHECK (retention_full BETWEEN 1 AND 9999999),
    retention_diff         integer CHECK (retention_diff BETWEEN 1 AND 9999999),
    retention_full_type    text CHECK (retention_full_type IN ('count', 'time')),
    created_at             timestamptz NOT NULL DEFAULT now(),
    created_by             text NOT NULL,
    CHECK ((cipher_type IS NULL) = (cipher_pass_ciphertext IS NULL)),
    CHECK (repo_type = 'posix' OR bucket IS NOT NULL),
    CHECK (repo_type <> 's3' OR region IS NOT NULL)
);

-- The instance rows of a label repository go with it (their backups stay in the repository).
ALTER TABLE backup_repositories
    ADD COLUMN label_repository_id bigint
        REFERENCES backup_label_repositories (id) ON DELETE CASCADE;
CREATE INDEX backup_repositories_label ON backup_repositories (label_repository_id)
    WHERE label_repository_id IS NOT NULL;
