-- Expiring queued runs nobody took in time, in one place: ingest's sweep and
-- the API's (which keeps runs expiring when no ingest runs) both call it.
-- Returns how many runs expired.
CREATE FUNCTION lasect_expire_queued_runs() RETURNS bigint LANGUAGE sql AS $$
    WITH expired AS (
        UPDATE runs r SET status = 'expired', finished_at = now(),
            error = format('agent %s did not pick the run up within %s s (last seen %s)',
                           r.agent_id,
                           round(extract(epoch FROM r.expires_at - r.created_at)),
                           coalesce(to_char(a.last_seen AT TIME ZONE 'UTC',
                                            'YYYY-MM-DD HH24:MI:SS UTC'), 'never'))
        FROM agents a
        WHERE a.id = r.agent_id AND r.status = 'queued' AND r.expires_at <= now()
        RETURNING 1
    )
    SELECT count(*) FROM expired
$$;
