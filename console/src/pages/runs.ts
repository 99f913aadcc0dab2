// Runs as the API shows them (`RunView`), and following one to its end.

import { call, get } from '../api';

export interface Run {
  id: number;
  kind: string;
  instance_id: number;
  instance_name: string;
  agent_id: string;
  status: string;
  requested_by: string;
  params: Record<string, unknown> | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  duration_ms: number | null;
  rows: number | null;
  bytes: number | null;
  truncated: boolean;
  pages: number;
  error: string | null;
  error_detail: unknown;
  summary: Record<string, unknown> | null;
  migration_id: number | null;
  cancel_requested: boolean;
  details_hidden: boolean;
}

export interface ResultPage {
  run_id: number;
  page: number;
  pages: number;
  columns: { name: string; type: string }[];
  rows: unknown[][];
}

const TERMINAL = new Set(['succeeded', 'failed', 'timed_out', 'cancelled', 'expired']);

export const isTerminal = (r: Run) => TERMINAL.has(r.status);

/** Asks the API for the run until it has ended (each call waits up to 10 s server-side), or
 * `stop()` says to give up following it. */
export async function follow(run: Run, stop: () => boolean = () => false): Promise<Run> {
  let r = run;
  while (!isTerminal(r) && !stop()) r = await get<Run>(`/api/v1/runs/${r.id}?wait=10`);
  return r;
}

/** Starts a run and follows it to its end; `started` gets it at once (queued), so that it can
 * be shown and cancelled while it goes on. */
export async function runAndWait(
  path: string,
  body: unknown,
  stop?: () => boolean,
  started?: (r: Run) => void,
): Promise<Run> {
  const run = await call<Run>('POST', `${path}?wait=${started ? 0 : 30}`, body);
  started?.(run);
  return follow(run, stop);
}

export async function cancelRun(r: Run): Promise<Run> {
  return call<Run>('POST', `/api/v1/runs/${r.id}/cancel`);
}

export function statusClass(status: string): string {
  if (status === 'succeeded') return 'good';
  if (status === 'queued' || status === 'dispatched' || status === 'running') return 'warn';
  return 'bad';
}

/** The user behind `requested_by` (`user:NAME` or `token:ID:NAME`), as the API reads it. */
export function requester(requestedBy: string): string | null {
  const user = /^user:(.+)$/.exec(requestedBy);
  if (user) return user[1];
  const token = /^token:\d+:(.+)$/.exec(requestedBy);
  return token ? token[1] : null;
}
