-- Restore drills on a schedule of their own (issue 17, docs/BACKUPS.md "Schedules"): a
-- schedule fires either a backup or a restore drill of its repositories, through the same
-- firings (one row per firing decides which API process starts the run; missed and skipped
-- firings are recorded with the reason).
ALTER TABLE backup_schedules
    ADD COLUMN kind text NOT NULL DEFAULT 'backup' CHECK (kind IN ('backup', 'drill')),
    -- A drill's options, as `POST …/drills` takes them.
    ADD COLUMN drill_check_sql text CHECK (length(drill_check_sql) BETWEEN 1 AND 65536),
    ADD COLUMN drill_amcheck boolean,
    ADD COLUMN drill_scratch_dir text CHECK (drill_scratch_dir ~ '^/'
                                             AND length(drill_scratch_dir) <= 4096),
    ALTER COLUMN backup_type DROP NOT NULL;

-- A backup schedule says which backup; a drill schedule has none, and only a drill has drill
-- options.
ALTER TABLE backup_schedules
    ADD CONSTRAINT backup_schedules_kind_fields CHECK (
        (kind = 'backup' AND backup_type IS NOT NULL AND drill_check_sql IS NULL
         AND drill_amcheck IS NULL AND drill_scratch_dir IS NULL)
        OR (kind = 'drill' AND backup_type IS NULL AND drill_amcheck IS NOT NULL));
