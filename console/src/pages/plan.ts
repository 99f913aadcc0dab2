// An EXPLAIN (FORMAT JSON) plan as a tree with each node's own share of the work, so the
// costly nodes can be marked. With ANALYZE the share is of actual time (a node's time times its
// loops, less its children's); without, of estimated cost (total cost less the children's).

export interface PlanNode {
  type: string;
  detail: string;
  cost: number;
  rows: number;
  actualMs: number | null;
  actualRows: number | null;
  loops: number | null;
  /** This node's own part of the whole, 0..1. */
  share: number;
  children: PlanNode[];
}

type Raw = Record<string, unknown>;

const n = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

function detailOf(p: Raw): string {
  const parts: string[] = [];
  if (p['Relation Name']) {
    const rel = `${p['Schema'] ? p['Schema'] + '.' : ''}${p['Relation Name']}`;
    parts.push(p['Alias'] && p['Alias'] !== p['Relation Name'] ? `${rel} ${p['Alias']}` : rel);
  }
  if (p['Index Name']) parts.push(`using ${p['Index Name']}`);
  if (p['Join Type'] && p['Node Type'] !== 'Hash') parts.push(`${p['Join Type']} join`);
  for (const k of ['Hash Cond', 'Merge Cond', 'Index Cond', 'Recheck Cond', 'Join Filter', 'Filter']) {
    if (p[k]) parts.push(`${k.toLowerCase()}: ${p[k]}`);
  }
  if (Array.isArray(p['Sort Key'])) parts.push(`sort: ${(p['Sort Key'] as string[]).join(', ')}`);
  if (Array.isArray(p['Group Key'])) parts.push(`group: ${(p['Group Key'] as string[]).join(', ')}`);
  return parts.join(' · ');
}

function build(p: Raw): Omit<PlanNode, 'share'> & { own: number; children: PlanNode[] } {
  const kids = (Array.isArray(p['Plans']) ? (p['Plans'] as Raw[]) : []).map(build);
  const actual = n(p['Actual Total Time']);
  const loops = n(p['Actual Loops']);
  const cost = n(p['Total Cost']) ?? 0;
  const whole = actual !== null ? actual * (loops ?? 1) : cost;
  const kidsWhole = kids.reduce(
    (s, k) => s + (k.actualMs !== null ? k.actualMs * (k.loops ?? 1) : k.cost),
    0,
  );
  return {
    type: String(p['Node Type'] ?? '?') + (p['Strategy'] && p['Strategy'] !== 'Plain' ? ` (${p['Strategy']})` : ''),
    detail: detailOf(p),
    cost,
    rows: n(p['Plan Rows']) ?? 0,
    actualMs: actual,
    actualRows: n(p['Actual Rows']),
    loops,
    own: Math.max(0, whole - kidsWhole),
    children: kids as unknown as PlanNode[],
  };
}

/** The tree of `summary.plan` (the element of EXPLAIN's JSON array), or null when it is not one. */
export function planTree(summaryPlan: unknown): { root: PlanNode; planningMs: number | null; executionMs: number | null } | null {
  if (!summaryPlan || typeof summaryPlan !== 'object') return null;
  const top = summaryPlan as Raw;
  const rawRoot = top['Plan'];
  if (!rawRoot || typeof rawRoot !== 'object') return null;
  const root = build(rawRoot as Raw);
  let total = 0;
  const sum = (x: { own: number; children: unknown[] }) => {
    total += x.own;
    (x.children as { own: number; children: unknown[] }[]).forEach(sum);
  };
  sum(root);
  const finish = (x: ReturnType<typeof build>): PlanNode => ({
    type: x.type,
    detail: x.detail,
    cost: x.cost,
    rows: x.rows,
    actualMs: x.actualMs,
    actualRows: x.actualRows,
    loops: x.loops,
    share: total > 0 ? x.own / total : 0,
    children: (x.children as unknown as ReturnType<typeof build>[]).map(finish),
  });
  return { root: finish(root), planningMs: n(top['Planning Time']), executionMs: n(top['Execution Time']) };
}

/** A node doing this much of the work is marked hot, from `WARM` on warm. */
export const HOT = 0.3;
export const WARM = 0.1;
