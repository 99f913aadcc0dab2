-- Backup schedules, their firings, and the central backup catalogue (issue 17,
-- docs/BACKUPS.md "Schedules" and "Catalogue").

-- Time-based retention: `repo1-retention-full-type` (`count`, pgBackRest's default, or `time`:
-- then retention_full is in days). Applied by the expire pgBackRest runs after each backup.
ALTER TABLE backup_repositories
    ADD COLUMN retention_full_type text CHECK (retention_full_type IN ('count', 'time'));

-- A cron schedule of backups: either of one repository (one instance's stanza) or of every
-- repository of `stanza` on the instances whose labels hold `label_key` = `label_value`.
CREATE TABLE backup_schedules (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repository_id bigint REFERENCES backup_repositories (id) ON DELETE CASCADE,
    label_key     text,
    label_value   text,
    stanza        text CHECK (stanza ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    -- croner syntax: 5 fields, or 6 with seconds first; checked by the API.
    cron          text NOT NULL CHECK (length(cron) BETWEEN 1 AND 200),
    -- An IANA time zone name (chrono-tz), checked by the API.
    time_zone     text NOT NULL CHECK (length(time_zone) BETWEEN 1 AND 64),
    backup_type   text NOT NULL CHECK (backup_type IN ('full', 'diff', 'incr')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    CHECK ((repository_id IS NOT NULL AND label_key IS NULL AND label_value IS NULL
            AND stanza IS NULL)
        OR (repository_id IS NULL AND label_key IS NOT NULL AND label_value IS NOT NULL
            AND stanza IS NOT NULL))
);

-- One row per firing of a schedule for one repository. The primary key is what makes a firing
-- happen once however many API processes look: the process whose INSERT wins creates the run
-- in the same transaction; the others insert nothing.
-- outcome: started (run_id is the backup run), missed (no run: the API was down at the time,
-- or the agent was offline or disabled), skipped (a backup of the stanza was still running).
CREATE TABLE backup_schedule_firings (
    schedule_id   bigint NOT NULL REFERENCES backup_schedules (id) ON DELETE CASCADE,
    repository_id bigint NOT NULL REFERENCES backup_repositories (id) ON DELETE CASCADE,
    fire_time     timestamptz NOT NULL,
    instance_id   bigint NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    outcome       text NOT NULL CHECK (outcome IN ('started', 'missed', 'skipped')),
    reason        text,
    run_id        bigint REFERENCES runs (id) ON DELETE SET NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, repository_id, fire_time),
    CHECK (outcome = 'started' OR run_id IS NULL)
);

CREATE INDEX backup_schedule_firings_instance ON backup_schedule_firings (instance_id, fire_time);
CREATE INDEX backup_schedule_firings_missed ON backup_schedule_firings (fire_time)
    WHERE outcome <> 'started';

-- The latest `pgbackrest info` of each repository, stored so the API answers without asking
-- the agent. Refreshed from every succeeded `backup` and `backup_info` run (newer runs only).
CREATE TABLE backup_catalogues (
    repository_id       bigint PRIMARY KEY REFERENCES backup_repositories (id) ON DELETE CASCADE,
    instance_id         bigint NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    stanza              text NOT NULL,
    run_id              bigint NOT NULL,
    refreshed_at        timestamptz NOT NULL,
    status_code         integer,
    status_message      text,
    -- The WAL archive range of the current database (pgBackRest's archive id, e.g. "16-1").
    archive_id          text,
    archive_min         text,
    archive_max         text,
    -- The recovery window: the stop of the oldest backup without error, and the latest point
    -- known restorable (the newest backup's stop, or later when the archiver has archived the
    -- archive's newest segment since: docs/BACKUPS.md).
    earliest_restorable timestamptz,
    latest_restorable   timestamptz,
    -- Why the last run's catalogue could not be read (its shape), when it could not.
    problem             text
);

CREATE TABLE backup_catalogue_entries (
    repository_id   bigint NOT NULL REFERENCES backup_catalogues (repository_id) ON DELETE CASCADE,
    label           text NOT NULL,
    backup_type     text NOT NULL,
    prior           text,
    started_at      timestamptz NOT NULL,
    stopped_at      timestamptz NOT NULL,
    database_size   bigint,
    delta_size      bigint,
    repo_size       bigint,
    repo_delta_size bigint,
    wal_start       text,
    wal_stop        text,
    lsn_start       text,
    lsn_stop        text,
    error           boolean NOT NULL DEFAULT false,
    PRIMARY KEY (repository_id, label)
);

-- The `backup` family (lasect-families BACKUP): written by the API once a minute per stanza
-- (api/src/backup_catalogue/samples.rs), read by alert rules and dashboards like any family.
SELECT lasect_create_metric_table('backup', 'metric_backup', $cols$
    time                  timestamptz NOT NULL,
    instance_id           bigint NOT NULL,
    stanza                text NOT NULL,
    age_seconds           double precision,
    last_type             text,
    last_duration_seconds double precision,
    last_size_bytes       bigint,
    last_repo_size_bytes  bigint,
    last_run_failed       integer,
    archive_lag_seconds   double precision,
    missed_firings        integer NOT NULL,
    drill_failed          integer
$cols$, 'instance_id, stanza', segment_by => ARRAY['instance_id', 'stanza']);

SELECT lasect_grafana_grant();

-- A stanza not backed up for 36 hours (a nightly schedule missed once, and then some).
INSERT INTO alert_rules (name, severity, source, condition, for_secs, hysteresis, annotations) VALUES
('backup_age', 'warning', 'default',
 '{"kind": "threshold", "family": "backup", "column": "age_seconds", "agg": "last", "by": ["stanza"], "window_secs": 600, "op": ">", "threshold": 129600}', 0, 3600,
 '{"summary": "the newest backup of stanza {{ labels.stanza }} on {{ instance }} is {{ value | duration }} old", "runbook": "Are its schedule firings missed (lasect backup schedule firings --missed)? Did the last backup run fail (lasect run list --kind backup)? Take one now: lasect backup run."}');

-- The scheduler looks for succeeded backup runs newer than each catalogue.
CREATE INDEX runs_succeeded_backups ON runs (id)
    WHERE kind IN ('backup', 'backup_info') AND status = 'succeeded';
