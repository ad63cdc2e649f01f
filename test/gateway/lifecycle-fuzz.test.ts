import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { FrameType, PROTOCOL_VERSION } from '../../src/protocol/frames.js';
import { flush, memoryLinkPair, type MemoryLink } from '../helpers/memory-link.js';

// Random sequences of one node's link events (handshakes, sync or async authentication, resumes, frames,
// write backlogs, kicks, disconnects, time) against the lifecycle's invariants: each device's online and
// offline alternate and end offline, no event of a link after its offline or replaced, and a gateway whose
// links are all gone holds no connection, registry entry, wheel timer, admission slot or presence entry.

const POLICY = { intervalMs: 1000, minIntervalMs: 200, maxIntervalMs: 10_000, missBudget: 2, graceMs: 500 };
let seed = 1;
const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
const pick = <T,>(a: readonly T[]) => a[Math.floor(rnd() * a.length)];

for (let run = 0; run < 200; run++) {
  test(`lifecycle invariants hold over a random sequence of link events (seed ${run})`, async () => {
    seed = run + 31337;
    const clock = new ManualClock(1_000_000);
    const direction = rnd() < 0.3 ? 'server' : 'client';
    const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock, wallClock: clock, handshakeTimeoutMs: 3000, authenticate: (h) => { const id = { userId: h.userId, deviceId: h.deviceId }; return rnd() < 0.5 ? id : new Promise((r) => setImmediate(() => r(id))); }, limits: { maxWriteBufferBytes: 1 << 20, minPingGapMs: 50, pingBurst: 3, maxDataPerSecond: 20, dataBurst: 3 } });
    const log: string[] = [];
    const names = new Map<string, string>();
    const nm = (id: string) => names.get(id) ?? (names.set(id, `c${names.size}`), names.get(id)!);
    for (const e of ['online', 'offline', 'replaced', 'message', 'state'] as const) gw.on(e, (x: { connectionId: string; deviceId: string; reason?: string }) => log.push(`${e} ${nm(x.connectionId)} ${x.deviceId}${x.reason ? ' ' + x.reason : ''}`));
    if (rnd() < 0.3) gw.on('replaced', () => { if (rnd() < 0.5) gw.kick('u1', pick(['d1', 'd2'])); });
    const links: { client: MemoryLink; server: MemoryLink; buf: number; waitingDrain: boolean }[] = [];
    const tokens: string[] = [];
    const ops: string[] = [];
    for (let i = 0; i < 40; i++) {
      const op = pick(['connect', 'connect', 'ping', 'pingstate', 'data', 'dataseq', 'close', 'destroy', 'kick', 'disconnect', 'advance', 'advance', 'backlog', 'push', 'hello2', 'pingflood']);
      ops.push(op);
      const l = links.length ? pick(links) : undefined;
      switch (op) {
        case 'connect': {
          const [server, client] = memoryLinkPair();
          const rec = { client, server, buf: 0, waitingDrain: false };
          Object.defineProperty(server, 'bufferedBytes', { get: () => rec.buf });
          const orig = server.awaitDrain.bind(server);
          // A full buffer drains when the test empties it, not at once.
          server.awaitDrain = () => (rec.buf === 0 ? orig() : void (rec.waitingDrain = true));
          gw.accept(server);
          links.push(rec);
          if (rnd() < 0.9) client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u1', deviceId: pick(['d1', 'd2']), direction, ...(tokens.length && rnd() < 0.5 ? { resumeToken: pick(tokens) } : {}) });
          break;
        }
        case 'ping': l?.client.send({ type: FrameType.PING }); break;
        case 'pingflood': for (let k = 0; k < 6; k++) l?.client.send({ type: FrameType.PING }); break;
        case 'pingstate': l?.client.send({ type: FrameType.PING, state: { k: String(i) }, intervalMs: 500 }); break;
        case 'data': l?.client.send({ type: FrameType.DATA, payload: new Uint8Array([i]) }); break;
        case 'dataseq': l?.client.send({ type: FrameType.DATA, payload: new Uint8Array([i]), seq: i + 1, id: `m${i}` }); break;
        case 'close': l?.client.send({ type: FrameType.CLOSE, code: 1000, reason: 'bye' }); break;
        case 'destroy': l?.client.destroy(); break;
        case 'kick': gw.kick('u1', pick(['d1', 'd2'])); break;
        case 'disconnect': gw.disconnect('u1', pick(['d1', 'd2']), { reconnectAfterMs: 100 }); break;
        case 'advance': clock.advance(Math.floor(rnd() * 2000)); break;
        case 'backlog': if (l) { l.buf = l.buf ? 0 : rnd() < 0.5 ? 2 << 20 : 300_000; if (l.buf === 0 && l.waitingDrain) { l.waitingDrain = false; l.server.awaitDrain(); } } break;
        case 'push': void gw.push('u1', 'x'); break;
        case 'hello2': l?.client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u1', deviceId: 'd1' }); break;
      }
      if (rnd() < 0.6) await flush(); else await new Promise((r) => setImmediate(r));
      for (const x of links) for (const f of x.client.received) if (f.type === FrameType.WELCOME && !tokens.includes(f.resumeToken)) tokens.push(f.resumeToken);
    }
    for (const x of links) x.client.destroy();
    await flush();
    clock.advance(10_000);
    await flush();
    const problems: string[] = [];
    for (const d of ['d1', 'd2']) {
      const mine = log.filter((x) => x.split(' ')[2] === d && (x.startsWith('online') || x.startsWith('offline')));
      let on = false;
      for (const x of mine) {
        const isOn = x.startsWith('online');
        if (isOn === on) problems.push(`${d}: ${x} while ${on ? 'online' : 'offline'}`);
        on = isOn;
      }
      if (on) problems.push(`${d} left online`);
    }
    for (const [, n] of names) {
      const mine = log.filter((x) => x.split(' ')[1] === n);
      const endAt = mine.findIndex((x) => x.startsWith('offline') || x.startsWith('replaced'));
      if (endAt >= 0 && endAt < mine.length - 1) problems.push(`after end: ${mine}`);
    }
    if (gw.connectionCount) problems.push(`connections ${gw.connectionCount}`);
    if (gw.onlineDevices) problems.push(`registry ${gw.onlineDevices}`);
    if (gw.timerStats().wheelSize) problems.push(`wheel ${gw.timerStats().wheelSize}`);
    const admission = (gw as unknown as { admission: { connections: number; pending: number } }).admission;
    if (admission.connections) problems.push(`admission slots ${admission.connections}`);
    if (admission.pending) problems.push(`pending handshakes ${admission.pending}`);
    const pres = await gw.presence('u1');
    if (pres.length) problems.push(`presence ${pres.map((p) => nm(p.connectionId))}`);
    assert.deepEqual(problems, [], `${ops.join(',')}\n${log.join('\n')}`);
    await gw.close();
  });
}
