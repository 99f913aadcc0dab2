// Reads of the instance page's sections: every one an existing API route.
import { get, type Samples, type SeriesResponse } from '../api';

export function samples(base: string, family: string, limit = 1): Promise<Samples> {
  return get<Samples>(`${base}/samples/${family}?limit=${limit}`);
}

export function series(base: string, family: string, from: Date, to: Date): Promise<SeriesResponse> {
  const q = new URLSearchParams({ from: from.toISOString(), to: to.toISOString() });
  return get<SeriesResponse>(`${base}/metrics/${family}?${q}`);
}

/** One line per series of `column`, on the union of their bucket times. */
export function lines(
  s: SeriesResponse,
  column: string,
  label: (key: Record<string, unknown>) => string = (k) => Object.values(k).map(String).join(' / ') || column,
  max = 12,
): { x: number[]; lines: { label: string; values: (number | null)[] }[] } {
  const times = new Set<number>();
  for (const one of s.series) for (const p of one.points) times.add(Date.parse(String(p.time)) / 1000);
  const x = [...times].sort((a, b) => a - b);
  const index = new Map(x.map((t, i) => [t, i]));
  const out = s.series.slice(0, max).map((one) => {
    const values: (number | null)[] = new Array(x.length).fill(null);
    for (const p of one.points) {
      const v = p[column];
      values[index.get(Date.parse(String(p.time)) / 1000) ?? 0] = typeof v === 'number' ? v : null;
    }
    return { label: label(one.key), values };
  });
  return { x, lines: out };
}

/** Series summed by a label of their key (e.g. the wait event), largest total first. */
export function grouped(
  s: SeriesResponse,
  column: string,
  by: (key: Record<string, unknown>) => string,
  max = 8,
): { x: number[]; lines: { label: string; values: number[] }[] } {
  const times = new Set<number>();
  for (const one of s.series) for (const p of one.points) times.add(Date.parse(String(p.time)) / 1000);
  const x = [...times].sort((a, b) => a - b);
  const index = new Map(x.map((t, i) => [t, i]));
  const groups = new Map<string, number[]>();
  for (const one of s.series) {
    const name = by(one.key);
    let values = groups.get(name);
    if (!values) groups.set(name, (values = new Array(x.length).fill(0)));
    for (const p of one.points) {
      const v = p[column];
      if (typeof v === 'number') values[index.get(Date.parse(String(p.time)) / 1000) ?? 0] += v;
    }
  }
  const total = (v: number[]) => v.reduce((a, b) => a + b, 0);
  const sorted = [...groups.entries()].sort((a, b) => total(b[1]) - total(a[1]));
  const top = sorted.slice(0, max).map(([label, values]) => ({ label, values }));
  if (sorted.length > max) {
    const rest = new Array(x.length).fill(0);
    for (const [, values] of sorted.slice(max)) values.forEach((v, i) => (rest[i] += v));
    top.push({ label: 'other', values: rest });
  }
  return { x, lines: top };
}
