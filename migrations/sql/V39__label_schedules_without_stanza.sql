-- A label schedule without a stanza (issue 17, docs/BACKUPS.md "Schedules"): it fires for
-- every repository of the instances carrying the label, so it covers a label repository
-- whose stanza is derived per instance from the instance's name. A repository schedule still
-- takes no stanza (its repository has one).
ALTER TABLE backup_schedules DROP CONSTRAINT backup_schedules_check;
ALTER TABLE backup_schedules ADD CONSTRAINT backup_schedules_target_check
    CHECK ((repository_id IS NOT NULL AND label_key IS NULL AND label_value IS NULL
            AND stanza IS NULL)
        OR (repository_id IS NULL AND label_key IS NOT NULL AND label_value IS NOT NULL));
