-- `host_network` (per interface) and `host_disk_io` (per block device) of
-- the agent's host, keyed by agent like the other host families.

SELECT lasect_create_metric_table('host_network', 'metric_host_network', $cols$
    time             timestamptz NOT NULL,
    agent_id         text NOT NULL,
    interface        text NOT NULL,
    rx_bytes         bigint NOT NULL,
    tx_bytes         bigint NOT NULL,
    rx_packets       bigint NOT NULL,
    tx_packets       bigint NOT NULL,
    rx_errors        bigint NOT NULL,
    tx_errors        bigint NOT NULL,
    rx_drops         bigint NOT NULL,
    tx_drops         bigint NOT NULL,
    rx_bytes_per_sec double precision,
    tx_bytes_per_sec double precision
$cols$, 'agent_id');

SELECT lasect_create_metric_table('host_disk_io', 'metric_host_disk_io', $cols$
    time                timestamptz NOT NULL,
    agent_id            text NOT NULL,
    device              text NOT NULL,
    reads               bigint NOT NULL,
    writes              bigint NOT NULL,
    read_bytes          bigint NOT NULL,
    write_bytes         bigint NOT NULL,
    io_time_ms          bigint NOT NULL,
    read_bytes_per_sec  double precision,
    write_bytes_per_sec double precision,
    util_percent        double precision
$cols$, 'agent_id');
