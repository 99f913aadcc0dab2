// The live stream (`/api/v1/live`, docs/CONTRACTS.md "Live stream"). A browser cannot send its
// bearer on a WebSocket, so each connection first takes a single-use ticket with it
// (`POST /api/v1/live/ticket`). The stream reconnects with a growing pause while the page
// wants it, with a fresh ticket every time.

import { call } from './api';

export interface LiveSamples {
  type: 'samples';
  instance: number;
  family: string;
  columns: string[];
  rows: Record<string, unknown>[];
}

export type LiveState = 'connecting' | 'open' | 'closed';

export interface LiveHandle {
  /** Replaces the subscribed families (same instances). */
  families(families: string[]): void;
  close(): void;
}

/** A message of the live stream, parsed; each kind of subscriber reads its own fields. */
export interface LiveMessage {
  type?: string;
  error?: { message?: string };
  [field: string]: unknown;
}

/** What one kind of subscriber does with a connection. */
interface Subscriber {
  /** The connection is open: subscribe on it. */
  opened(ws: WebSocket): void;
  message(m: LiveMessage): void;
}

/**
 * Keeps one connection of the live stream open until `close`: a fresh ticket per attempt and a
 * growing pause between attempts (1 s, doubling to 30 s); `onState` hears of each change.
 */
function keepLive(subscriber: Subscriber, onState: (s: LiveState, why?: string) => void) {
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
      subscriber.opened(ws);
    };
    ws.onmessage = (event) => {
      let message: LiveMessage;
      try {
        message = JSON.parse(String(event.data));
      } catch {
        return;
      }
      subscriber.message(message);
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
    /** The open connection, if any. */
    socket: () => (socket?.readyState === WebSocket.OPEN ? socket : null),
    close() {
      stopped = true;
      clearTimeout(timer);
      socket?.close(1000, 'page left');
      socket = null;
    },
  };
}

/** Samples of `instances` for the wanted families. */
export function openLive(
  instances: number[],
  initialFamilies: string[],
  onSamples: (m: LiveSamples) => void,
  onState: (s: LiveState, why?: string) => void,
): LiveHandle {
  let wanted = [...new Set(initialFamilies)];
  let subscribed: string[] = [];

  function send(type: 'subscribe' | 'unsubscribe', families: string[]) {
    const ws = live.socket();
    if (families.length && ws) ws.send(JSON.stringify({ type, instances, families }));
  }

  function sync() {
    send('unsubscribe', subscribed.filter((f) => !wanted.includes(f)));
    send('subscribe', wanted.filter((f) => !subscribed.includes(f)));
    subscribed = [...wanted];
  }

  const live = keepLive(
    {
      opened() {
        subscribed = [];
        sync();
        onState('open');
      },
      message(m) {
        if (m.type === 'samples') onSamples(m as unknown as LiveSamples);
        else if (m.type === 'error') onState('open', m.error?.message);
      },
    },
    onState,
  );
  return {
    families(families: string[]) {
      wanted = [...new Set(families)];
      sync();
    },
    close: live.close,
  };
}

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
  /** `status` or `progress` (a run's creation is announced as a `status` change to `queued`). */
  change: string;
  progress: RunProgress | null;
  progress_at: string | null;
  at: string;
  cancel_requested: boolean;
  /** Only for callers who may read the run's details. */
  error?: string | null;
}

/**
 * The runs of `kinds` on `instance`: their creation, status changes and the progress agents
 * report. `onOpen` is called on every (re)connection once the subscription is confirmed, so the
 * caller can reload what it may have missed meanwhile (changes are not replayed).
 */
export function openRunsLive(
  instance: number,
  kinds: string[],
  onRun: (run: RunEvent) => void,
  onState: (s: LiveState, why?: string) => void,
  onOpen: () => void,
): { close(): void } {
  const live = keepLive(
    {
      opened(ws) {
        ws.send(JSON.stringify({ type: 'subscribe_runs', instances: [instance], kinds }));
      },
      message(m) {
        if (m.type === 'run' && m.run) onRun(m.run as RunEvent);
        else if (m.type === 'subscribed_runs' && m.runs) {
          onState('open');
          onOpen();
        } else if (m.type === 'error') onState('open', m.error?.message);
      },
    },
    onState,
  );
  return { close: live.close };
}
