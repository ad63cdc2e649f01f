/**
 * The `ws` peer's per-connection set-up, the heartbeat from ws's README:
 * each socket marked alive at open and at every pong. Shared by the peer
 * server (whose timer pings and terminates the unmarked) and setup-alloc
 * (which measures the set-up alone).
 */
import type { WebSocket, WebSocketServer } from 'ws';

export function markAlive(wss: WebSocketServer): WeakMap<WebSocket, boolean> {
  const alive = new WeakMap<WebSocket, boolean>();
  wss.on('connection', (ws) => {
    alive.set(ws, true);
    ws.on('pong', () => alive.set(ws, true));
    ws.on('error', () => {});
  });
  return alive;
}
