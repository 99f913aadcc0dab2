-- What each agent's Control stream said in its last hello: the operation
-- classes its `[control] allow` list permits (so the API only schedules work
-- an agent accepts, e.g. periodic schema snapshots) and when it connected.
ALTER TABLE agents
    ADD COLUMN control_allowed      text[],
    ADD COLUMN control_connected_at timestamptz;
