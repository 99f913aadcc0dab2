-- Restores and restore drills with pgBackRest (issue 17, docs/BACKUPS.md): two run kinds.
-- A drill's result is its run (kind 'backup_drill', summary with passed/reason/rto/rpo), so
-- no table of its own: the index below answers "the latest drill of each instance".

-- The kinds are added to whatever the CHECK lists when this runs, so a migration adding
-- other kinds before or after it keeps them (runs/tests/store.rs compares the result with
-- RunKind::ALL).
DO $$
DECLARE
    kinds text[];
BEGIN
    SELECT array_agg(DISTINCT m[1] ORDER BY m[1]) INTO kinds
      FROM pg_constraint c,
           regexp_matches(pg_get_constraintdef(c.oid), '''([a-z_]+)''', 'g') AS m
     WHERE c.conrelid = 'runs'::regclass AND c.conname = 'runs_kind_check';
    kinds := kinds || ARRAY['backup_restore', 'backup_drill'];
    ALTER TABLE runs DROP CONSTRAINT runs_kind_check;
    EXECUTE format('ALTER TABLE runs ADD CONSTRAINT runs_kind_check CHECK (kind IN (%s))',
                   (SELECT string_agg(DISTINCT quote_literal(k), ', ') FROM unnest(kinds) k));
END
$$;

CREATE INDEX runs_backup_drills ON runs (instance_id, id DESC) WHERE kind = 'backup_drill';

-- The latest progress report of a running run (RunProgress: a pgBackRest backup's percent
-- done), written by ingest while the run is running and kept after it ends.
ALTER TABLE runs ADD COLUMN progress jsonb, ADD COLUMN progress_at timestamptz;
