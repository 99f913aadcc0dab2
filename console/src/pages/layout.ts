// The foreign-key diagram's layout, ours and deterministic (same graph, same picture, so
// screenshots and tests are stable): tables in columns by how deep they are in the reference
// chain (a table left of every table it references), ordered in a column by the mean row of
// the tables they reference (one sweep, ties by name), then tables with no foreign key either
// way in a grid below. Cycles are cut: a table's depth stops growing after as many rounds as
// there are tables.

export interface Box {
  id: string;
  x: number;
  y: number;
  w: number;
  h: number;
  isolated: boolean;
}

export interface Link {
  from: string;
  to: string;
  name: string;
  label: string;
  path: string;
}

export interface Layout {
  width: number;
  height: number;
  boxes: Box[];
  links: Link[];
}

const ROW_H = 30;
const GAP_X = 90;
const GAP_Y = 16;
const PAD = 20;
const CHAR_W = 7.2;

export function layout(
  nodes: { id: string }[],
  edges: { from: string; to: string; name: string; columns: string[]; ref_columns: string[] }[],
): Layout {
  const ids = [...new Set(nodes.map((n) => n.id))].sort();
  const known = new Set(ids);
  // A foreign key to a table outside the snapshot (another database's) still gets a box.
  for (const e of edges) for (const t of [e.from, e.to]) if (!known.has(t)) (known.add(t), ids.push(t));
  ids.sort();
  const refs = new Map<string, string[]>(ids.map((id) => [id, []]));
  const linked = new Set<string>();
  for (const e of edges) {
    if (e.from !== e.to) refs.get(e.from)!.push(e.to);
    linked.add(e.from);
    linked.add(e.to);
  }
  const depth = new Map<string, number>(ids.map((id) => [id, 0]));
  for (let round = 0; round < ids.length; round++) {
    let changed = false;
    for (const id of ids) {
      const want = Math.max(0, ...refs.get(id)!.map((r) => depth.get(r)! + 1));
      if (want > depth.get(id)! && want < ids.length) {
        depth.set(id, want);
        changed = true;
      }
    }
    if (!changed) break;
  }
  const width = (id: string) => Math.max(90, Math.ceil(id.length * CHAR_W) + 20);
  const columns: string[][] = [];
  for (const id of ids) {
    if (!linked.has(id)) continue;
    const d = depth.get(id)!;
    (columns[d] ??= []).push(id);
  }
  const row = new Map<string, number>();
  const boxes: Box[] = [];
  let x = PAD;
  let height = PAD;
  for (const col of columns.filter(Boolean)) {
    const mean = (id: string) => {
      const rs = refs.get(id)!.filter((r) => row.has(r));
      return rs.length ? rs.reduce((a, r) => a + row.get(r)!, 0) / rs.length : Number.POSITIVE_INFINITY;
    };
    col.sort((a, b) => mean(a) - mean(b) || (a < b ? -1 : a > b ? 1 : 0));
    const w = Math.max(...col.map(width));
    col.forEach((id, i) => {
      row.set(id, i);
      boxes.push({ id, x, y: PAD + i * (ROW_H + GAP_Y), w, h: ROW_H, isolated: false });
    });
    height = Math.max(height, PAD + col.length * (ROW_H + GAP_Y));
    x += w + GAP_X;
  }
  let right = Math.max(x - GAP_X + PAD, 400);
  const loose = ids.filter((id) => !linked.has(id));
  if (loose.length) {
    let lx = PAD;
    let ly = height + (boxes.length ? GAP_Y * 2 : 0);
    const limit = Math.max(right, 900);
    for (const id of loose) {
      const w = width(id);
      if (lx + w > limit - PAD && lx > PAD) {
        lx = PAD;
        ly += ROW_H + GAP_Y;
      }
      boxes.push({ id, x: lx, y: ly, w, h: ROW_H, isolated: true });
      lx += w + GAP_Y;
      right = Math.max(right, lx + PAD);
    }
    height = ly + ROW_H + GAP_Y;
  }
  const at = new Map(boxes.map((b) => [b.id, b]));
  const links: Link[] = edges.map((e) => {
    const a = at.get(e.from)!;
    const b = at.get(e.to)!;
    let path: string;
    if (e.from === e.to) {
      // A table referencing itself: a loop over its right end.
      const sx = a.x + a.w;
      const sy = a.y + a.h / 2;
      path = `M${sx - 20},${a.y} C${sx + 10},${a.y - 30} ${sx + 40},${sy} ${sx},${sy}`;
    } else {
      const sx = a.x;
      const sy = a.y + a.h / 2;
      const tx = b.x + b.w;
      const ty = b.y + b.h / 2;
      const bend = Math.max(30, Math.abs(sx - tx) / 2);
      path = `M${sx},${sy} C${sx - bend},${sy} ${tx + bend},${ty} ${tx},${ty}`;
    }
    return { from: e.from, to: e.to, name: e.name, label: `${e.columns.join(', ')} → ${e.ref_columns.join(', ')}`, path };
  });
  return { width: right, height: height + PAD, boxes, links };
}
