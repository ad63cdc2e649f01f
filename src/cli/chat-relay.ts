import type { Gateway } from '../gateway/gateway.js';

/**
 * The CLI gateways' built-in application: a message "@user text" is pushed
 * to that user's devices (queued for those offline), anything else is
 * echoed back to the sender's devices.
 */
export function relayChat(gw: Gateway, onError: (err: unknown) => void): void {
  gw.on('message', (m) => {
    const text = Buffer.from(m.payload).toString('utf8');
    const relay = /^@(\S+)\s+([\s\S]*)$/.exec(text);
    const say = (userId: string, body: string) =>
      gw.push(userId, body).then((r) => {
        if (r.devices.length === 0) return gw.push(m.userId, `(${userId} has no known device)`);
      });
    void (relay ? say(relay[1], `${m.userId}: ${relay[2]}`) : say(m.userId, `echo: ${text}`)).catch(onError);
  });
}
