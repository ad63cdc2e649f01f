/**
 * Webhook throughput against the backend's own request rate, in one run: the
 * same backend (a child process answering 200 to every POST) is first loaded
 * directly (keep-alive POSTs, `concurrency` in flight), then through the
 * gateway: `devices` SDK clients each send their share of the messages, each
 * POSTed by the gateway's webhook sink and acknowledged to the device only
 * after the 200. Both are timed until the backend has counted every request.
 */
import http from 'node:http';
import { spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Gateway } from '../src/gateway/gateway.js';
import { webhookSink } from '../src/upstream/webhook.js';

export interface WebhookBenchResult {
  messages: number;
  devices: number;
  concurrency: number;
  directPerSecond: number;
  viaGatewayPerSecond: number;
  ratio: number;
}

function child(script: string, arg: string, onLine: (m: Record<string, unknown>) => void): ChildProcess {
  const c = spawn(process.execPath, [fileURLToPath(new URL(script, import.meta.url)), arg], { stdio: ['pipe', 'pipe', 'inherit'] });
  c.stdin!.on('error', () => {});
  readline.createInterface({ input: c.stdout! }).on('line', (l) => onLine(JSON.parse(l) as Record<string, unknown>));
  return c;
}

export async function runWebhookBench(o: { messages: number; devices: number; concurrency: number; progress?: (l: string) => void }): Promise<WebhookBenchResult> {
  let count = 0;
  let port = 0;
  let acked = 0;
  let listening!: () => void;
  const backendUp = new Promise<void>((r) => (listening = r));
  const backend = child('./webhook-backend.js', '{}', (m) => {
    if (m.ev === 'listening') (port = m.port as number), listening();
    if (m.ev === 'count') count = m.n as number;
  });
  await backendUp;
  const until = async (want: () => boolean, what: string) => {
    const t0 = Date.now();
    while (!want()) {
      if (Date.now() - t0 > 300_000) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  let gw: Gateway | null = null;
  let devices: ChildProcess | null = null;
  try {
    // 1. The backend's own rate, loaded directly with the same body size.
    const agent = new http.Agent({ keepAlive: true, maxSockets: o.concurrency });
    const body = JSON.stringify({ type: 'message', user: 'hook0', device: 'd', connectionId: 'x'.repeat(16), sessionId: 'y'.repeat(16), id: 'z'.repeat(36), seq: 1, payload: 'cmVhZGluZyAx', text: 'reading 1', receivedAt: Date.now() });
    const post = () =>
      new Promise<void>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, path: '/hook', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
          res.resume();
          res.on('end', () => resolve());
        });
        req.on('error', reject);
        req.end(body);
      });
    let base = count;
    let t0 = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: o.concurrency }, async () => {
      while (next < o.messages) (next++, await post());
    }));
    await until(() => count >= base + o.messages, 'the direct load');
    const directPerSecond = Math.round(o.messages / ((performance.now() - t0) / 1000));
    agent.destroy();
    o.progress?.(`direct: ${directPerSecond} requests/s`);
    // 2. Through the gateway: devices send, the sink POSTs, the device is acknowledged after the 200.
    gw = new Gateway({ tcp: { port: 0 }, ws: false, stallGuard: false, limits: { maxDataPerSecond: 0 }, upstream: { sink: webhookSink({ url: `http://127.0.0.1:${port}/hook` }) } });
    const tcp = (await gw.listen()).tcp!.port;
    const each = Math.ceil(o.messages / o.devices);
    let ready!: () => void;
    const devicesUp = new Promise<void>((r) => (ready = r));
    devices = child('./webhook-devices.js', JSON.stringify({ url: `tcp://127.0.0.1:${tcp}`, count: o.devices, each, maxMs: 600_000 }), (m) => {
      if (m.ev === 'ready') ready();
      if (m.ev === 'acked') acked = m.n as number;
    });
    await devicesUp;
    base = count;
    t0 = performance.now();
    devices.stdin!.write('go\n');
    const total = each * o.devices;
    await until(() => count >= base + total && acked >= total, 'the messages through the gateway');
    const viaGatewayPerSecond = Math.round(total / ((performance.now() - t0) / 1000));
    o.progress?.(`through the gateway: ${viaGatewayPerSecond} messages/s`);
    return { messages: total, devices: o.devices, concurrency: o.concurrency, directPerSecond, viaGatewayPerSecond, ratio: Math.round((viaGatewayPerSecond / directPerSecond) * 100) / 100 };
  } finally {
    devices?.stdin!.end();
    await gw?.close();
    backend.stdin!.end();
  }
}

export function webhookBenchMarkdown(r: WebhookBenchResult, cmd: string, machine: string): string {
  return [
    `Command: \`${cmd}\`  `,
    `Machine: ${machine}`,
    '',
    '| load on the same backend | requests/s | ratio |',
    '|---|---|---|',
    `| direct: keep-alive POSTs, ${r.concurrency} in flight | ${r.directPerSecond} | 1.00 |`,
    `| through the gateway: ${r.devices} devices, each message POSTed then acknowledged | ${r.viaGatewayPerSecond} | ${r.ratio.toFixed(2)} |`,
  ].join('\n');
}
