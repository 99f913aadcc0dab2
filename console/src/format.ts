// How numbers and times are shown.

export function ago(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) return 'never';
  const secs = Math.round((now - Date.parse(iso)) / 1000);
  if (!Number.isFinite(secs)) return '?';
  if (secs < 0) return 'just now';
  if (secs < 90) return `${secs} s ago`;
  if (secs < 5400) return `${Math.round(secs / 60)} min ago`;
  if (secs < 172800) return `${Math.round(secs / 3600)} h ago`;
  return `${Math.round(secs / 86400)} d ago`;
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function num(v: unknown): string {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'number') {
    if (Number.isInteger(v)) return v.toLocaleString('en');
    return v.toLocaleString('en', { maximumFractionDigits: 2 });
  }
  return String(v);
}

/** An agent that has not reported for this long is shown as stale. */
export const STALE_SECS = 120;

export function isStale(iso: string | null | undefined, now: number = Date.now()): boolean {
  return !iso || now - Date.parse(iso) > STALE_SECS * 1000;
}

export function labelText(labels: Record<string, unknown>): string[] {
  return Object.entries(labels ?? {}).map(([k, v]) => `${k}=${String(v)}`);
}

/** `150018` → `15.18` (server_version_num of PostgreSQL 10 and later). */
export function pgVersion(num: number | null | undefined): string | null {
  if (!num) return null;
  return `${Math.floor(num / 10000)}.${num % 10000}`;
}
