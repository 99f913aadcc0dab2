// The API's answers the backups page reads (api-contract: backups.rs, backup_restore.rs,
// backup_schedules.rs; api/src/routes/backups.rs, backup_label_repos.rs).

export interface CatalogueBackup {
  label: string;
  type: string;
  prior: string | null;
  started_at: string;
  stopped_at: string;
  duration_secs: number;
  database_size: number | null;
  delta_size: number | null;
  repo_size: number | null;
  repo_delta_size: number | null;
  wal_start: string | null;
  wal_stop: string | null;
  lsn_start: string | null;
  lsn_stop: string | null;
  error: boolean;
}

export interface RepositoryCatalogue {
  repository_id: number;
  stanza: string;
  refreshed_at: string | null;
  run_id: number | null;
  status_code: number | null;
  status_message: string | null;
  archive_id: string | null;
  archive_min: string | null;
  archive_max: string | null;
  earliest_restorable: string | null;
  latest_restorable: string | null;
  problem: string | null;
  backups: CatalogueBackup[];
}

export interface Catalogue {
  instance_id: number;
  repositories: RepositoryCatalogue[];
}

export interface RunningBackup {
  run_id: number;
  instance_id: number;
  kind: string;
  stanza: string | null;
  type: string | null;
  status: string;
  stage: string | null;
  percent: number | null;
  bytes_done: number | null;
  bytes_total: number | null;
  progress_at: string | null;
  started_at: string | null;
}

export interface Drill {
  run_id: number;
  instance_id: number;
  stanza: string | null;
  status: string;
  passed: boolean | null;
  reason: string | null;
  backup: string | null;
  rto_seconds: number | null;
  rpo_seconds: number | null;
  requested_at: string;
  finished_at: string | null;
}

export interface Schedule {
  id: number;
  repository_id: number | null;
  instance_id: number | null;
  label_key: string | null;
  label_value: string | null;
  stanza: string | null;
  cron: string;
  time_zone: string;
  kind: string;
  type: string | null;
  next_fire_at: string | null;
  created_at: string;
  created_by: string;
}

export interface Firing {
  schedule_id: number;
  kind: string;
  repository_id: number;
  instance_id: number;
  fire_time: string;
  outcome: 'started' | 'missed' | 'skipped';
  reason: string | null;
  run_id: number | null;
  recorded_at: string;
}

export interface Repository {
  id: number;
  stanza: string;
  repo_type: string;
  path: string;
  bucket: string | null;
  cipher_type: string | null;
  retention_full: number | null;
  retention_diff: number | null;
  retention_full_type: string | null;
  label_repository_id: number | null;
  created_at: string;
  created_by: string;
}

export interface LabelRepository {
  id: number;
  label_key: string;
  label_value: string;
  stanza: string | null;
  repo_type: string;
  path: string;
  bucket: string | null;
  cipher_type: string | null;
  instances: { instance_id: number; instance_name: string; stanza: string; repository_id: number }[];
}

/** What `POST …/backups`, `…/info`, `…/drills` and `…/restore` answer: the run. */
export interface StartedRun {
  id: number;
  kind: string;
  status: string;
  params: Record<string, unknown> | null;
  error: string | null;
  summary?: Record<string, unknown> | null;
}

/** Where a restore put the cluster (the `backup_restore` run's summary, agent ops/restore.rs). */
export interface RestoreSummary {
  data_directory: string;
  target_type: string;
  target: string | null;
  delta: boolean;
  restore_seconds: number | null;
  recovered_to: { lsn: string | null; last_transaction: string | null; timeline: number | null } | null;
  started: { port: number; socket_directory: string; connect: string; stop: string } | null;
}

/** A run this page saw end over the live stream. */
export interface EndedRun {
  id: number;
  kind: string;
  type: string | null;
  stanza: string | null;
  status: string;
  error: string | null;
  at: string;
  /** A succeeded restore's, read from the run once it ended. */
  restored?: RestoreSummary | null;
}

export const ACTIVE = ['queued', 'dispatched', 'running'];

/** `backup (incr)`, `restore`, `drill`, `catalogue read`: a run kind as the page names it. */
export function runName(kind: string, type: string | null): string {
  switch (kind) {
    case 'backup':
      return type ? `${type} backup` : 'backup';
    case 'backup_restore':
      return 'restore';
    case 'backup_drill':
      return 'restore drill';
    case 'backup_info':
      return 'catalogue read';
    default:
      return kind;
  }
}

/** Seconds as people read a duration: `42 s`, `3 min 5 s`, `2 h 10 min`. */
export function seconds(s: number | null | undefined): string {
  if (s === null || s === undefined || !Number.isFinite(s)) return '–';
  if (s < 90) return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
  const whole = Math.round(s);
  if (whole < 5400) return `${Math.floor(whole / 60)} min ${whole % 60} s`;
  return `${Math.floor(whole / 3600)} h ${Math.round((whole % 3600) / 60)} min`;
}
