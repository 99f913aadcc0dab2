// The one way the console talks to lasect-api: JSON over fetch, with the session's access token,
// refreshed once on a 401 with the rotating refresh token.

export type Role = 'viewer' | 'user' | 'admin';

export interface TokenPair {
  access_token: string;
  expires_in: number;
  refresh_token: string;
  username: string;
  role: Role | null;
  password_change_required: boolean;
}

export interface LabelGrant {
  key: string;
  value: string;
  role: Role;
}

export interface Me {
  username: string;
  role: Role | null;
  grants: LabelGrant[];
  token_role: Role | null;
}

export interface Instance {
  id: number;
  name: string;
  agent_id: string;
  server_version_num: number | null;
  version: string | null;
  in_recovery: boolean | null;
  labels: Record<string, unknown>;
  created_at: string;
  last_seen: string | null;
  source: string;
  state: string;
  health: { up?: boolean; error?: string | null; checked_at?: string } | null;
  health_at: string | null;
  /** In the list only: figures of the last hour's samples. */
  figures?: KeyFigures | null;
}

export interface KeyFigures {
  connections: number | null;
  max_connections: number | null;
  tps: number | null;
  cache_hit_percent: number | null;
  replication_lag_seconds: number | null;
  replication_lag_bytes: number | null;
  disk_used_percent: number | null;
  database_size_bytes: number | null;
  sampled_at: string | null;
}

export interface Agent {
  id: string;
  hostname: string | null;
  version: string | null;
  last_seen: string;
  spool_backlog_batches: number | null;
  spool_backlog_bytes: number | null;
  disabled: boolean;
}

export interface SeriesResponse {
  from: string;
  to: string;
  step_seconds: number;
  keys: string[];
  columns: { name: string; aggregate: string }[];
  series: { key: Record<string, unknown>; points: Record<string, unknown>[] }[];
}

export interface Samples {
  columns: string[];
  rows: Record<string, unknown>[];
}

/** An error the API answered (`{error: {code, message}}`) or a failure to reach it. */
export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
  ) {
    super(message);
  }
}

// The refresh token survives a reload of the tab (sessionStorage), never the tab itself; the
// access token lives in memory only.
const REFRESH_KEY = 'lasect.refresh';
let access: string | null = null;
let refreshing: Promise<boolean> | null = null;
let onSignedOut: () => void = () => {};

export function setSignedOutHandler(f: () => void) {
  onSignedOut = f;
}

export function hasSession(): boolean {
  return access !== null || sessionStorage.getItem(REFRESH_KEY) !== null;
}

function keep(pair: TokenPair) {
  access = pair.access_token;
  sessionStorage.setItem(REFRESH_KEY, pair.refresh_token);
}

function forget() {
  access = null;
  sessionStorage.removeItem(REFRESH_KEY);
}

async function errorOf(response: Response): Promise<ApiError> {
  let code = 'http_' + response.status;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = String(body.error.code ?? code);
      message = String(body.error.message ?? message);
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, code, message);
}

async function send(method: string, path: string, body?: unknown, token?: string | null) {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  try {
    return await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, 'unreachable', `the API cannot be reached: ${(e as Error).message}`);
  }
}

async function refresh(): Promise<boolean> {
  const token = sessionStorage.getItem(REFRESH_KEY);
  if (!token) return false;
  // Concurrent 401s share one refresh: a refresh token is good for one use only.
  refreshing ??= (async () => {
    const response = await send('POST', '/api/v1/auth/refresh', { refresh_token: token });
    if (!response.ok) {
      forget();
      return false;
    }
    keep((await response.json()) as TokenPair);
    return true;
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/** The answer of an API call with the session's bearer (refreshed once on a 401); an
 * ApiError when it is not a success. */
async function authorized(method: string, path: string, body?: unknown): Promise<Response> {
  if (access === null && !(await refresh())) {
    onSignedOut();
    throw new ApiError(401, 'unauthenticated', 'signed out');
  }
  let response = await send(method, path, body, access);
  if (response.status === 401 && (await refresh())) {
    response = await send(method, path, body, access);
  }
  if (response.status === 401) {
    forget();
    onSignedOut();
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  return (await (await authorized(method, path, body)).json()) as T;
}

/** A file the API serves (a run's result): its bytes and the name its Content-Disposition
 * gives. */
export async function file(path: string): Promise<{ name: string | null; blob: Blob }> {
  const response = await authorized('GET', path);
  const disposition = response.headers.get('content-disposition') ?? '';
  const name = /filename="([^"]+)"/.exec(disposition)?.[1] ?? null;
  return { name, blob: await response.blob() };
}

export const get = <T>(path: string) => call<T>('GET', path);

/** `get` for answers holding 64-bit ids (query ids): an integer past JavaScript's safe range
 * comes back as its exact text instead of a rounded number, so it can be shown, linked and sent
 * back as it is (the browser's JSON.parse hands a reviver each value's source text). */
export async function getExact<T>(path: string): Promise<T> {
  const text = await (await authorized('GET', path)).text();
  const exact = (_key: string, value: unknown, context?: { source?: string }) =>
    typeof value === 'number' && !Number.isSafeInteger(value) && context?.source && /^-?\d+$/.test(context.source)
      ? context.source
      : value;
  return JSON.parse(text, exact as (key: string, value: unknown) => unknown) as T;
}

export async function login(username: string, password: string): Promise<TokenPair> {
  const response = await send('POST', '/api/v1/auth/login', { username, password });
  if (!response.ok) throw await errorOf(response);
  const pair = (await response.json()) as TokenPair;
  keep(pair);
  return pair;
}

export async function logout(): Promise<void> {
  const refresh_token = sessionStorage.getItem(REFRESH_KEY);
  try {
    if (access) await send('POST', '/api/v1/auth/logout', refresh_token ? { refresh_token } : {}, access);
  } finally {
    forget();
  }
}

/** Answers a new session (every other one ends). A wrong old password is a 401 too, so this
 * does not go through `call`, which would take it for an expired token. */
export async function changePassword(old_password: string, new_password: string): Promise<void> {
  if (access === null) await refresh();
  const response = await send('POST', '/api/v1/auth/password', { old_password, new_password }, access);
  if (!response.ok) throw await errorOf(response);
  keep((await response.json()) as TokenPair);
}

const RANK: Record<Role, number> = { viewer: 1, user: 2, admin: 3 };

/** The caller's role on an instance: the global role or the best grant of its labels, capped by
 * an API token's role (the API decides; this only hides what would be refused). */
export function roleOn(me: Me, labels: Record<string, unknown> | null): Role | null {
  let best: Role | null = me.role;
  for (const g of me.grants) {
    if (labels && labels[g.key] === g.value && (best === null || RANK[g.role] > RANK[best])) {
      best = g.role;
    }
  }
  if (best && me.token_role && RANK[me.token_role] < RANK[best]) best = me.token_role;
  return best;
}

export function atLeast(role: Role | null, needed: Role): boolean {
  return role !== null && RANK[role] >= RANK[needed];
}
