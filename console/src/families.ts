// The metric families the API serves as series (`GET …/metrics/{family}`), as declared in
// lasect-families; the response names each family's columns, so only the names live here.
export const FAMILIES = [
  'database',
  'activity',
  'activity_sessions',
  'lock',
  'lock_waits',
  'wait',
  'statement',
  'table',
  'index',
  'wal',
  'bgwriter',
  'archiver',
  'replication',
  'replication_slot',
  'standby',
  'progress',
  'subscription',
  'custom',
  'host_cpu',
  'host_memory',
  'host_network',
  'host_disk_io',
  'host_filesystem',
] as const;

/** What a family's chart shows first. */
export const DEFAULT_COLUMN: Record<string, string> = {
  database: 'xact_commit',
  activity: 'total_sessions',
  wal: 'wal_bytes',
  host_cpu: 'usage_percent',
};

export const RANGES: { label: string; secs: number }[] = [
  { label: '1 h', secs: 3600 },
  { label: '6 h', secs: 6 * 3600 },
  { label: '24 h', secs: 86400 },
  { label: '7 d', secs: 7 * 86400 },
  { label: '30 d', secs: 30 * 86400 },
];
