/**
 * One gateway node of the fault run (bench/faults/run.ts), in a process of its
 * own so it can be SIGKILLed and restarted under the same node id:
 *
 *   node node.js <redisUrl> <nodeId>
 *
 * Logs as JSON lines everything the checker needs (listening, every message a
 * device sent as the application saw it, delivered, expired, dropped, faults)
 * and takes commands on stdin: {"cmd":"push","n","user","id","payload"} answers
 * {"ev":"push-result","n","result"} (or "error"); {"cmd":"presence","n","user"}
 * answers {"ev":"presence","n","devices"}.
 */
import readline from 'node:readline';
import { Gateway } from '../../src/gateway/gateway.js';
import { RedisStore } from '../../src/gateway/stores/redis-store.js';

const [redisUrl, nodeId] = process.argv.slice(2);
const say = (ev: string, d: Record<string, unknown> = {}) => process.stdout.write(JSON.stringify({ ev, t: Date.now(), ...d }) + '\n');

const store = new RedisStore({ url: redisUrl, leaseTtlMs: 2000, leaseRenewMs: 500 });
const gw = new Gateway({
  tcp: { host: '127.0.0.1', port: 0 },
  ws: { host: '127.0.0.1', port: 0 },
  nodeId,
  store,
  wheelTickMs: 10,
  heartbeat: { intervalMs: 500, minIntervalMs: 100, maxIntervalMs: 10_000, missBudget: 2, graceMs: 400 },
  sessionTtlMs: 30_000,
  delivery: { pushWaitMs: 1500, maxQueuedPerDevice: 5000 },
  limits: { maxConnectionsPerSource: 0, handshakesPerSecond: 0 },
});
gw.on('message', (m) => say('message', { user: m.userId, device: m.deviceId, id: m.id ?? null, seq: m.seq ?? null }));
gw.on('delivered', (e) => say('delivered', { user: e.userId, device: e.deviceId, id: e.id }));
gw.on('expired', (e) => say('expired', { user: e.userId, device: e.deviceId, id: e.id }));
gw.on('dropped', (e) => say('dropped', { user: e.userId, device: e.deviceId, id: e.id }));
gw.on('fault', (f) => say('fault', { kind: f.kind, op: f.op, err: f.error instanceof Error ? f.error.message : String(f.error) }));
gw.on('online', (e) => say('online', { user: e.userId, device: e.deviceId, resumed: e.resumed }));
gw.on('offline', (e) => say('offline', { user: e.userId, device: e.deviceId, reason: e.reason }));
process.on('unhandledRejection', (err) => say('crash', { err: String(err) }));
process.on('uncaughtException', (err) => {
  say('crash', { err: String(err) });
  process.exit(70);
});

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  let c: { cmd: string; n: number; user: string; id?: string; payload?: string };
  try {
    c = JSON.parse(line);
  } catch {
    return;
  }
  if (c.cmd === 'push') {
    gw.push(c.user, c.payload ?? '', { id: c.id }).then(
      (result) => say('push-result', { n: c.n, result }),
      (err) => say('push-result', { n: c.n, error: String(err) }),
    );
  } else if (c.cmd === 'presence') {
    gw.presence(c.user).then(
      (devices) => say('presence', { n: c.n, devices }),
      (err) => say('presence', { n: c.n, error: String(err) }),
    );
  }
});
process.stdin.on('end', () => void gw.close().finally(() => process.exit(0)));

const a = await gw.listen();
say('listening', { tcp: a.tcp!.port, ws: a.ws!.port });
