/**
 * Pushes per second through the server API (one HTTP request per push, and
 * batches of 100) beside the library's own `push()`, on the same gateway and
 * the same devices, in one run. Each mode pushes `messages` messages round
 * robin to `devices` users (one device each, in a child process) and is timed
 * until every message has reached its device. waitMs 0: nothing waits for
 * acknowledgements, as a backend fanning out would not.
 */
import http from 'node:http';
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { AdminServer } from '../src/admin/admin-server.js';
import { Gateway } from '../src/gateway/gateway.js';

export interface ApiBenchResult {
  devices: number;
  messages: number;
  modes: { mode: string; perSecond: number; seconds: number; ratioToLibrary: number }[];
}

export async function runApiBench(o: { devices: number; messages: number; concurrency: number; batch: number; progress?: (l: string) => void }): Promise<ApiBenchResult> {
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, stallGuard: false });
  const tcp = (await gw.listen()).tcp!.port;
  const admin = new AdminServer(gw, { port: 0, apiKey: 'bench' });
  const adminPort = (await admin.listen()).port;
  const devices = spawn(process.execPath, [fileURLToPath(new URL('./api-devices.js', import.meta.url)), JSON.stringify({ url: `tcp://127.0.0.1:${tcp}`, count: o.devices, maxMs: 600_000 })], { stdio: ['pipe', 'pipe', 'inherit'] });
  devices.stdin!.on('error', () => {});
  let received = 0;
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  readline.createInterface({ input: devices.stdout! }).on('line', (l) => {
    const m = JSON.parse(l) as { ev: string; n?: number };
    if (m.ev === 'ready') ready();
    if (m.ev === 'received') received = m.n!;
  });
  await isReady;
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.concurrency });
  const post = (path: string, body: unknown) =>
    new Promise<void>((resolve, reject) => {
      const data = JSON.stringify(body);
      const req = http.request({ host: '127.0.0.1', port: adminPort, path, method: 'POST', agent, headers: { 'content-type': 'application/json', authorization: 'Bearer bench', 'content-length': Buffer.byteLength(data) } }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
      });
      req.on('error', reject);
      req.end(data);
    });
  const until = async (target: number, deadlineMs = 120_000) => {
    const t0 = Date.now();
    while (received < target) {
      if (Date.now() - t0 > deadlineMs) throw new Error(`only ${received} of ${target} messages arrived`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const modes: { mode: string; perSecond: number; seconds: number }[] = [];
  const run = async (mode: string, send: (from: number, to: number) => Promise<void>) => {
    const base = received;
    const t0 = performance.now();
    await send(0, o.messages);
    await until(base + o.messages);
    const seconds = (performance.now() - t0) / 1000;
    modes.push({ mode, perSecond: Math.round(o.messages / seconds), seconds: Math.round(seconds * 100) / 100 });
    o.progress?.(`${mode}: ${Math.round(o.messages / seconds)} pushes/s`);
  };
  const parallel = async (n: number, count: number, one: (i: number) => Promise<unknown>) => {
    let next = 0;
    await Promise.all(Array.from({ length: n }, async () => {
      while (next < count) await one(next++);
    }));
  };
  const user = (i: number) => `api${i % o.devices}`;
  try {
    // The library with as many pushes in flight as the batch mode has (4 requests of `batch`).
    const inFlight = Math.max(o.concurrency, 4 * o.batch);
    await run(`library push(), ${inFlight} in flight`, (_, n) => parallel(inFlight, n, (i) => gw.push(user(i), `m${i}`, { waitMs: 0 })));
    await run(`server API, one push per request, ${o.concurrency} in flight`, (_, n) => parallel(o.concurrency, n, (i) => post('/v1/push', { user: user(i), text: `m${i}`, waitMs: 0 })));
    await run(`server API, batches of ${o.batch}, 4 requests in flight`, (_, n) =>
      parallel(Math.max(1, Math.min(o.concurrency, 4)), Math.ceil(n / o.batch), (b) =>
        post('/v1/batch', { commands: Array.from({ length: Math.min(o.batch, n - b * o.batch) }, (_, k) => ({ op: 'push', args: { user: user(b * o.batch + k), text: `m${b * o.batch + k}`, waitMs: 0 } })) }),
      ),
    );
  } finally {
    devices.stdin!.end();
    agent.destroy();
    await admin.close();
    await gw.close();
  }
  const lib = modes[0].perSecond;
  return { devices: o.devices, messages: o.messages, modes: modes.map((m) => ({ ...m, ratioToLibrary: Math.round((m.perSecond / lib) * 100) / 100 })) };
}

export function apiBenchMarkdown(r: ApiBenchResult, cmd: string, machine: string): string {
  return [
    `Command: \`${cmd}\`  `,
    `Machine: ${machine}`,
    '',
    `${r.messages} pushes to ${r.devices} devices (one per user), timed until every one has arrived; waitMs 0.`,
    '',
    '| mode | pushes/s | seconds | ratio to the library |',
    '|---|---|---|---|',
    ...r.modes.map((m) => `| ${m.mode} | ${m.perSecond} | ${m.seconds} | ${m.ratioToLibrary.toFixed(2)} |`),
  ].join('\n');
}
