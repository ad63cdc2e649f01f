/**
 * One attack per finding of issue 20, written as an attacker with one laptop
 * would (raw sockets, no SDK). Each runs until `until` and reports what it did
 * and the checks particular to it; the runner measures the gateway.
 */
import net from 'node:net';
import { LonglinkClient } from '../../src/client/client.js';
import { CloseCodes } from '../../src/protocol/errors.js';
import { encodeDelimited } from '../../src/protocol/frame-codec.js';
import { FrameType, PROTOCOL_VERSION } from '../../src/protocol/frames.js';
import { AttackPeer, sleep, workers } from './peer.js';
import type { AdminAnswer } from './run.js';

export interface Check {
  what: string;
  ok: boolean;
}

export interface AttackContext {
  tcpPort: number;
  wsPort: number;
  adminPort: number;
  /** Epoch ms when the attack stops. */
  until: number;
  /** 1 = the sizes of the findings. */
  scale: number;
  admin(path: string, init?: { method?: string; host?: string; body?: string }): Promise<AdminAnswer>;
}

export interface Scenario {
  name: string;
  finding: string;
  title: string;
  /** Whether the attack itself holds connections open (the RSS-growth bound applies only where it does not). */
  holdsConnections: boolean;
  serveArgs?: string[];
  run(ctx: AttackContext): Promise<{ summary: string; checks: Check[] }>;
}

const n = (base: number, scale: number) => Math.max(1, Math.round(base * scale));
const big = (bytes: number) => 'x'.repeat(bytes);
let runId = 0;

/** A newcomer from another source address: does it get in (WELCOME) while the attack runs? */
async function newcomers(port: number, until: number, url?: string): Promise<{ tried: number; admitted: number }> {
  let tried = 0;
  let admitted = 0;
  while (Date.now() < until - 500) {
    tried++;
    const c = new LonglinkClient({ url: url ?? `tcp://127.0.0.1:${port}`, userId: `newcomer-${tried}`, deviceId: 'n', localAddress: '127.0.0.2', reconnect: { enabled: false }, handshakeTimeoutMs: 3000 });
    try {
      await c.connect();
      admitted++;
    } catch {
      /* refused */
    }
    c.close();
    await sleep(500);
  }
  return { tried, admitted };
}

export const SCENARIOS: Scenario[] = [
  {
    name: 'sessions',
    finding: '1',
    title: 'HELLO with a large clientInfo, then close, 50 at a time; and one identity reused',
    holdsConnections: false,
    async run(ctx) {
      const tag = `s${++runId}`;
      let made = 0;
      let bigRefused = 0;
      let bigTried = 0;
      let bigWelcomed = 0;
      await workers(n(50, ctx.scale), ctx.until, async (w, round) => {
        const p = new AttackPeer(ctx.tcpPort);
        const tooBig = round % 50 === 0;
        // Half the workers reuse one identity (a valid token reused for one device does the same).
        const [user, device] = w % 2 === 0 ? [`${tag}-u${w}-${round}`, 'd'] : ['victim', 'phone'];
        p.hello(user, device, { blob: big(tooBig ? 60_000 : 1000) });
        const welcomed = await p.welcome(3000);
        if (welcomed) made++;
        if (tooBig) {
          bigTried++;
          if (welcomed) bigWelcomed++;
          await p.closed;
          // Read and refused with its own code, or not read at all (refused at accept by the handshake rate).
          if (p.closeCode === CloseCodes['field-too-large'] || p.closeCode === CloseCodes['rate-limited']) bigRefused++;
        }
        p.destroy();
        await p.closed;
      });
      return {
        summary: `${made} sessions made (1 KB clientInfo, half of them for one user and device); ${bigTried} with 60 KB`,
        checks: [{ what: `a 60 KB clientInfo never makes a session: 4508, or 4008 at accept (${bigRefused}/${bigTried} refused, ${bigWelcomed} welcomed)`, ok: bigTried > 0 && bigWelcomed === 0 && bigRefused === bigTried }],
      };
    },
  },
  {
    name: 'ids',
    finding: '2',
    title: 'sequenced DATA with long unique ids, 4,096 per device, device after device',
    holdsConnections: true,
    async run(ctx) {
      const tag = `i${++runId}`;
      let sent = 0;
      let devices = 0;
      let longRefused = 0;
      let closedForPace = 0;
      await workers(n(20, ctx.scale), ctx.until, async (w, round) => {
        const p = new AttackPeer(ctx.tcpPort);
        devices++;
        p.hello(`${tag}-u${w}`, `d${round}`);
        if (!(await p.welcome(3000))) return void p.destroy();
        if (round === 0 && w === 0) {
          // One id far over the bound first, on a device of its own.
          p.send({ type: FrameType.DATA, seq: 1, id: big(60_000), payload: new Uint8Array(1) });
          await p.closed;
          if (p.closeCode === CloseCodes['field-too-large']) longRefused++;
          return;
        }
        // 4,096 ids of 128 bytes (the bound), paced below the DATA limit (1,000/s): 100 every 125 ms.
        for (let seq = 1; seq <= 4096 && Date.now() < ctx.until && !p.socket.destroyed; ) {
          for (let k = 0; k < 100 && seq <= 4096; k++, seq++) {
            p.send({ type: FrameType.DATA, seq, id: `${seq}`.padStart(128, 'i'), payload: new Uint8Array(8) });
            sent++;
          }
          await sleep(125);
        }
        if (p.closeCode === CloseCodes['too-many-messages']) closedForPace++;
        p.destroy();
        await p.closed;
      });
      return {
        summary: `${sent} DATA with 128-byte ids over ${devices} devices`,
        checks: [
          { what: `a 60 KB id is refused with 4508 (${longRefused})`, ok: longRefused === 1 },
          { what: `a sender within the DATA pace is not closed for it (${closedForPace})`, ok: closedForPace === 0 },
        ],
      };
    },
  },
  {
    name: 'state',
    finding: '3',
    title: 'piggybacked state: a new 1 KB key per PING on 100 connections, the connection list polled',
    holdsConnections: true,
    async run(ctx) {
      const tag = `st${++runId}`;
      let pings = 0;
      let refused = 0;
      let maxListBytes = 0;
      let maxListMs = 0;
      const poll = (async () => {
        while (Date.now() < ctx.until) {
          const r = await ctx.admin('/api/connections?limit=100000');
          maxListBytes = Math.max(maxListBytes, r.body.length);
          maxListMs = Math.max(maxListMs, r.ms);
          await sleep(2000);
        }
      })();
      await workers(n(100, ctx.scale), ctx.until, async (w, round) => {
        const p = new AttackPeer(ctx.tcpPort);
        p.hello(`${tag}-u${w}`, `d${round}`);
        if (!(await p.welcome(3000))) return void p.destroy();
        for (let k = 0; Date.now() < ctx.until && !p.socket.destroyed; k++) {
          p.send({ type: FrameType.PING, state: { [`k${k}`]: big(1000) } });
          pings++;
          await sleep(1000);
        }
        await Promise.race([p.closed, sleep(1000)]);
        if (p.closeCode === CloseCodes['field-too-large']) refused++;
        p.destroy();
        await p.closed;
      });
      await poll;
      return {
        summary: `${pings} PINGs with state; the largest /api/connections answer ${(maxListBytes / 1e3).toFixed(1)} KB in ${Math.round(maxListMs)} ms`,
        checks: [
          { what: `state past its bound closes with 4508 (${refused} closed)`, ok: refused > 0 },
          { what: 'a connection-list page stays under 3 MB', ok: maxListBytes < 3e6 },
        ],
      };
    },
  },
  {
    name: 'rebind',
    finding: '4',
    title: 'DNS rebinding: drain and kick through a Host that starts with 127.',
    holdsConnections: false,
    async run(ctx) {
      const host = '127.0.0.1.rebind.attacker.example';
      const statuses: number[] = [];
      let badPath = 0;
      while (Date.now() < ctx.until) {
        statuses.push((await ctx.admin('/api/drain', { method: 'POST', host, body: '{}' })).status);
        statuses.push((await ctx.admin('/api/kick', { method: 'POST', host: `${host}:80`, body: '{"userId":"healthy"}' })).status);
        badPath = (await ctx.admin('/api/presence/%E0%A4%A')).status;
        await sleep(100);
      }
      const alive = (await ctx.admin('/api/overview')).status;
      return {
        summary: `${statuses.length} drain and kick requests with a rebinding Host`,
        checks: [
          { what: `every one refused (statuses ${[...new Set(statuses)].join(',')})`, ok: statuses.length > 0 && statuses.every((s) => s === 403 || s === 421 || s === 400) },
          { what: `a malformed % escape in a path gets 400 (${badPath})`, ok: badPath === 400 },
          { what: `the gateway still serves its admin port (${alive})`, ok: alive === 200 },
        ],
      };
    },
  },
  {
    name: 'pending',
    finding: '5',
    title: '500 idle sockets from one address, reopened as they close; newcomers from another',
    holdsConnections: true,
    async run(ctx) {
      let opened = 0;
      const attack = workers(n(500, ctx.scale), ctx.until, async () => {
        const s = net.connect({ port: ctx.tcpPort, host: '127.0.0.1' });
        s.on('error', () => {});
        // Says nothing, but reads (and drops) what it is sent, so it sees its refusal and comes back.
        s.resume();
        opened++;
        await new Promise<void>((r) => {
          s.once('close', () => r());
          setTimeout(() => (s.destroy(), r()), Math.max(0, ctx.until - Date.now()));
        });
        // A refused socket is back at once, as an attacker's would be; a short pause keeps it from spinning.
        await sleep(20);
      });
      const nc = await newcomers(ctx.tcpPort, ctx.until);
      await attack;
      return {
        summary: `${opened} idle sockets opened from 127.0.0.1`,
        checks: [{ what: `newcomers from 127.0.0.2 get in (${nc.admitted}/${nc.tried})`, ok: nc.tried > 0 && nc.admitted === nc.tried }],
      };
    },
  },
  {
    name: 'flood',
    finding: '6',
    title: 'unsequenced DATA as fast as 4 never-reading connections can write, through the built-in relay',
    holdsConnections: true,
    async run(ctx) {
      return flood(ctx, false);
    },
  },
  {
    name: 'flood-seq',
    finding: '6',
    title: 'the same with sequenced DATA (closed as a slow consumer; its log lines)',
    holdsConnections: true,
    async run(ctx) {
      return flood(ctx, true);
    },
  },
  {
    name: 'ws-upgrade',
    finding: '7',
    title: '3,000 sockets to the WebSocket port that never finish the upgrade, from one address',
    holdsConnections: true,
    async run(ctx) {
      let opened = 0;
      let refused503 = 0;
      const attack = workers(n(3000, ctx.scale), ctx.until, async () => {
        const s = net.connect({ port: ctx.wsPort, host: '127.0.0.1' });
        s.on('error', () => {});
        opened++;
        let head = '';
        s.on('data', (d) => (head += d.toString('latin1').slice(0, 64)));
        await new Promise<void>((r) => {
          s.once('close', () => r());
          setTimeout(() => (s.destroy(), r()), Math.max(0, ctx.until - Date.now()));
        });
        if (head.startsWith('HTTP/1.1 503')) refused503++;
        await sleep(20);
      });
      const nc = await newcomers(ctx.tcpPort, ctx.until, `ws://127.0.0.1:${ctx.wsPort}/longlink`);
      await attack;
      const per = n(3000, ctx.scale);
      return {
        summary: `${opened} sockets opened from 127.0.0.1 (${refused503} refused with 503)`,
        checks: [
          { what: `beyond the per-source limit (1,000) sockets are refused with 503 (${refused503})`, ok: per <= 1000 || refused503 > 0 },
          { what: `newcomers from 127.0.0.2 get in over WebSocket (${nc.admitted}/${nc.tried})`, ok: nc.tried > 0 && nc.admitted === nc.tried },
        ],
      };
    },
  },
  {
    name: 'drip',
    finding: '8',
    title: '64 KB frames dripped in 64-byte pieces over 300 connections',
    holdsConnections: true,
    async run(ctx) {
      const tag = `dr${++runId}`;
      let bytes = 0;
      let frames = 0;
      const frame = encodeDelimited({ type: FrameType.DATA, payload: new Uint8Array(64_000 - 16) });
      await workers(n(300, ctx.scale), ctx.until, async (w, round) => {
        const p = new AttackPeer(ctx.tcpPort);
        p.hello(`${tag}-u${w}`, `d${round}`);
        if (!(await p.welcome(3000))) return void p.destroy();
        // 300 connections × 64 bytes every 12 ms: about 1.5 MB/s in all.
        while (Date.now() < ctx.until && !p.socket.destroyed) {
          for (let off = 0; off < frame.length && Date.now() < ctx.until && !p.socket.destroyed; off += 64) {
            p.socket.write(frame.subarray(off, off + 64));
            bytes += Math.min(64, frame.length - off);
            await sleep(12);
          }
          frames++;
        }
        p.destroy();
        await p.closed;
      });
      return { summary: `${(bytes / 1e6).toFixed(1)} MB in 64-byte pieces, ${frames} whole frames`, checks: [] };
    },
  },
];

/** Resolves when the socket drains or closes, leaving no listener behind. */
function writable(s: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      s.off('drain', done);
      s.off('close', done);
      resolve();
    };
    s.on('drain', done);
    s.on('close', done);
  });
}

async function flood(ctx: AttackContext, sequenced: boolean): Promise<{ summary: string; checks: Check[] }> {
  const tag = `f${++runId}`;
  let frames = 0;
  let closes = 0;
  const adminStatus: number[] = [];
  const poll = (async () => {
    while (Date.now() < ctx.until) {
      adminStatus.push((await ctx.admin('/api/overview')).status);
      await sleep(1000);
    }
  })();
  await workers(4, ctx.until, async (w, round) => {
    const p = new AttackPeer(ctx.tcpPort, { read: false });
    // Never reads: the HELLO is answered into a buffer nobody drains; give the gateway a moment.
    p.socket.write(encodeDelimited({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: `${tag}-u${w}`, deviceId: `d${round}` }));
    await sleep(100);
    const chunk = Buffer.concat(Array.from({ length: 64 }, (_, k) => encodeDelimited({ type: FrameType.DATA, payload: Buffer.from(`hello ${k}`), ...(sequenced ? { seq: 0 } : {}) })));
    let seq = 0;
    while (Date.now() < ctx.until && !p.socket.destroyed) {
      let buf = chunk;
      if (sequenced) buf = Buffer.concat(Array.from({ length: 64 }, (_, k) => encodeDelimited({ type: FrameType.DATA, payload: Buffer.from(`hello ${k}`), seq: ++seq, id: `${tag}-${w}-${round}-${seq}` })));
      frames += 64;
      if (!p.socket.write(buf)) await writable(p.socket);
    }
    closes++;
    p.destroy();
    await p.closed;
    await sleep(50);
  });
  await poll;
  return {
    summary: `${frames} ${sequenced ? 'sequenced' : 'unsequenced'} DATA written by 4 connections that never read (${closes} times closed by the gateway and reconnected)`,
    checks: [{ what: `the admin port answers throughout (${adminStatus.filter((x) => x === 200).length}/${adminStatus.length})`, ok: adminStatus.length > 0 && adminStatus.every((x) => x === 200) }],
  };
}
