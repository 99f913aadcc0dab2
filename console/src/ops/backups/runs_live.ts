// The runs of one instance on the live stream (`/api/v1/live`, `subscribe_runs`; docs/CONTRACTS.md
// "Live stream"): status changes and the progress agents report, as the store keeps them. Like
// `openLive` (../../live.ts) it takes a single-use ticket per connection (a browser cannot send
// its bearer on a WebSocket) and reconnects with a growing pause while the page wants it; after
// a reconnect the page reloads what it shows, since changes made meanwhile were not pushed.

import { call } from '../../api';
import type { LiveState } from '../../live';

export interface RunProgress {
  stage: string | null;
  percent: number | null;
  bytes_done: number | null;
  bytes_total: number | null;
}

/** The `run` message's body. */
export interface RunEvent {
  id: number;
  kind: string;
  instance_id: number;
  instance_name: string;
  status: string;
  /** `status` or `progress` (and, from APIs that announce creations, what they send). */
  change: string;
  progress: RunProgress | null;
  progress_at: string | null;
  at: string;
  cancel_requested: boolean;
  /** Only for callers who may read the run's details. */
  error?: string | null;
}

export interface RunsLiveHandle {
  close(): void;
}

/**
 * Subscribes to the runs of `kinds` on `instance`. `onOpen` is called on every (re)connection
 * once the subscription is confirmed, so the caller can reload what it may have missed.
 */
export function openRunsLive(
  instance: number,
  kinds: string[],
  onRun: (run: RunEvent) => void,
  onState: (s: LiveState, why?: string) => void,
  onOpen: () => void,
): RunsLiveHandle {
  let socket: WebSocket | null = null;
  let stopped = false;
  let pause = 1000;
  let timer: ReturnType<typeof setTimeout> | undefined;

  async function connect() {
    if (stopped) return;
    onState('connecting');
    let ticket: string;
    try {
      ({ ticket } = await call<{ ticket: string }>('POST', '/api/v1/live/ticket'));
    } catch (e) {
      retry((e as Error).message);
      return;
    }
    if (stopped) return;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${location.host}/api/v1/live?ticket=${encodeURIComponent(ticket)}`);
    socket = ws;
    ws.onopen = () => {
      pause = 1000;
      ws.send(JSON.stringify({ type: 'subscribe_runs', instances: [instance], kinds }));
    };
    ws.onmessage = (event) => {
      let message: { type?: string; run?: RunEvent; runs?: boolean; error?: { message?: string } };
      try {
        message = JSON.parse(String(event.data));
      } catch {
        return;
      }
      if (message.type === 'run' && message.run) onRun(message.run);
      else if (message.type === 'subscribed_runs' && message.runs) {
        onState('open');
        onOpen();
      } else if (message.type === 'error') onState('open', message.error?.message);
    };
    ws.onclose = (event) => {
      if (socket === ws) socket = null;
      retry(event.reason || `closed (${event.code})`);
    };
  }

  function retry(why: string) {
    if (stopped) return;
    onState('closed', why);
    timer = setTimeout(connect, pause);
    pause = Math.min(pause * 2, 30_000);
  }

  connect();
  return {
    close() {
      stopped = true;
      clearTimeout(timer);
      socket?.close(1000, 'page left');
      socket = null;
    },
  };
}
