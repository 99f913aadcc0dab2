// What the pages of console/src/pages share: their hash routes, the instance picker's list,
// how an API error reads, the caller's effective global role, CSV.

import { ApiError, atLeast, get, type Instance, type Me, type Role } from '../api';

/** `#/sql?instance=3` → path `sql`, parts `['sql']`, query `{instance: '3'}`. */
export interface PageRoute {
  parts: string[];
  query: URLSearchParams;
}

export const PAGES = ['statements', 'sql', 'schema', 'runs', 'migrations', 'agents', 'users', 'tokens', 'audit'] as const;

export function parseRoute(hash: string): PageRoute | null {
  const m = /^#\/([^?]*)(?:\?(.*))?$/.exec(hash);
  if (!m) return null;
  const parts = m[1].split('/').filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0 || !(PAGES as readonly string[]).includes(parts[0])) return null;
  return { parts, query: new URLSearchParams(m[2] ?? '') };
}

/** A hash link to a page with query parameters (empty values left out). */
export function href(path: string, query: Record<string, string | number | null | undefined> = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== null && v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return `#/${path}${s ? '?' + s : ''}`;
}

/** The global role as the API applies it: a token's role caps the user's. */
export function globalRole(me: Me): Role | null {
  if (me.role && me.token_role && !atLeast(me.token_role, me.role)) return me.token_role;
  return me.role;
}

export function isAdmin(me: Me): boolean {
  return atLeast(globalRole(me), 'admin');
}

/** What to show for a failed call: the API's own message, with what the status means. */
export function describe(e: unknown): string {
  if (e instanceof ApiError) {
    const why: Record<number, string> = {
      0: 'Cannot reach the API',
      400: 'Refused as malformed',
      403: 'Not allowed for your role',
      404: 'Not found',
      409: 'Conflict',
      422: 'Cannot be carried out',
      503: 'The store is unavailable',
    };
    const head = why[e.status] ?? `Error ${e.status}`;
    return `${head}: ${e.message}`;
  }
  return (e as Error)?.message ?? String(e);
}

/** The instances the caller sees (read on each page's mount: a cache would outlive a
 * sign-out and show the next user another's list). */
export async function instances(): Promise<Instance[]> {
  const r = await get<{ instances: Instance[] }>('/api/v1/instances');
  return r.instances.filter((i) => i.state !== 'removed');
}

/** RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled. */
export function csv(header: string[], rows: unknown[][]): string {
  const field = (v: unknown) => {
    const s = v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [header, ...rows].map((r) => r.map(field).join(',')).join('\r\n') + '\r\n';
}

/** Saves text as a file through a blob URL (allowed by the CSP: no network, no inline). */
export function download(name: string, text: string, type = 'text/csv;charset=utf-8') {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export const RANGES: [string, number][] = [
  ['1 h', 3600],
  ['6 h', 6 * 3600],
  ['24 h', 86400],
  ['7 d', 7 * 86400],
  ['30 d', 30 * 86400],
];

export function rangeQuery(seconds: number): string {
  const to = new Date();
  const from = new Date(to.getTime() - seconds * 1000);
  return `from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;
}

export function fmtTime(iso: string | null | undefined): string {
  if (!iso) return '–';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}
