-- A new run is announced on lasect_run_status like a status change
-- (payload "<run id> <status>", normally queued), so the live stream's run
-- subscribers see a run from its creation. Ingest's wake-up on lasect_runs
-- (runs_notify_queued) is a separate trigger and stays as it was.
CREATE TRIGGER runs_notify_created AFTER INSERT ON runs
    FOR EACH ROW EXECUTE FUNCTION lasect_runs_notify_status();
