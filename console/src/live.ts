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

export function openLive(
  instances: number[],
  initialFamilies: string[],
  onSamples: (m: LiveSamples) => void,
  onState: (s: LiveState, why?: string) => void,
): LiveHandle {
  let wanted = [...new Set(initialFamilies)];
  let subscribed: string[] = [];
  let socket: WebSocket | null = null;
  let stopped = false;
  let pause = 1000;
  let timer: ReturnType<typeof setTimeout> | undefined;

  function send(type: 'subscribe' | 'unsubscribe', families: string[]) {
    if (families.length && socket?.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type, instances, families }));
    }
  }

  function sync() {
    send('unsubscribe', subscribed.filter((f) => !wanted.includes(f)));
    send('subscribe', wanted.filter((f) => !subscribed.includes(f)));
    subscribed = [...wanted];
  }

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
      subscribed = [];
      sync();
      onState('open');
    };
    ws.onmessage = (event) => {
      let message: { type?: string; error?: { message?: string } };
      try {
        message = JSON.parse(String(event.data));
      } catch {
        return;
      }
      if (message.type === 'samples') onSamples(message as LiveSamples);
      else if (message.type === 'error') onState('open', message.error?.message);
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
    families(families: string[]) {
      wanted = [...new Set(families)];
      sync();
    },
    close() {
      stopped = true;
      clearTimeout(timer);
      socket?.close(1000, 'page left');
      socket = null;
    },
  };
}
