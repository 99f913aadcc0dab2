// What the uPlot charts (Chart, instance/StackedChart) share.

import type uPlot from 'uplot';

/** Series colours, in order. */
export const PALETTE = ['#2f6fdf', '#d9480f', '#2b8a3e', '#ae3ec9', '#e8590c', '#1098ad', '#5f3dc4', '#c2255c'];

/** The chart's width: its host's, but never under 300 px. */
export const hostWidth = (host: HTMLElement) => Math.max(300, host.clientWidth);

/**
 * The x axis in time and what a drag on it does: the drag does not zoom the drawn points but
 * calls `zoom(from, to)` (seconds), so the page asks the API for that range again and the step
 * shrinks with it.
 */
export function timeAxisWithZoom(zoom: (from: number, to: number) => void): Pick<uPlot.Options, 'scales' | 'cursor' | 'hooks'> {
  return {
    // One bucket alone would get a range of years around it: show ten minutes instead.
    scales: { x: { time: true, range: (_u, min, max) => (min === max ? [min - 300, max + 300] : [min, max]) } },
    cursor: { drag: { x: true, y: false, setScale: false } },
    hooks: {
      setSelect: [
        (u) => {
          if (u.select.width < 5) return;
          const from = u.posToVal(u.select.left, 'x');
          const to = u.posToVal(u.select.left + u.select.width, 'x');
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          zoom(from, to);
        },
      ],
    },
  };
}

/**
 * Resizes the current plot (`plot()`, it is redrawn as the data changes) to its host's width
 * whenever the host changes size; for `onMount`: the returned cleanup stops watching and
 * destroys the plot.
 */
export function fitToHost(host: HTMLElement, plot: () => uPlot | null, height: number): () => void {
  const observer = new ResizeObserver(() => plot()?.setSize({ width: hostWidth(host), height }));
  observer.observe(host);
  return () => {
    observer.disconnect();
    plot()?.destroy();
  };
}
