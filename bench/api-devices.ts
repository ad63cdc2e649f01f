/**
 * The devices for the server-API benchmark: `count` SDK clients (users
 * api0..), each counting the messages it receives; prints the total every
 * 100 ms. Bounded: exits when stdin closes or after `maxMs`.
 */
import { LonglinkClient } from '../src/client/client.js';

const cfg = JSON.parse(process.argv[2] ?? '{}') as { url: string; count: number; maxMs: number };
const say = (ev: string, data: Record<string, unknown> = {}) => process.stdout.write(JSON.stringify({ ev, ...data }) + '\n');
const clients: LonglinkClient[] = [];
let received = 0;
const stop = () => {
  for (const c of clients) c.close();
  setTimeout(() => process.exit(0), 200);
};
process.stdin.on('end', stop);
process.stdin.resume();
setTimeout(stop, cfg.maxMs).unref();
for (let i = 0; i < cfg.count; i++) {
  const c = new LonglinkClient({ url: cfg.url, userId: `api${i}`, deviceId: 'd' });
  c.on('message', () => received++);
  clients.push(c);
}
await Promise.all(clients.map((c) => c.connect()));
say('ready', { open: clients.length });
setInterval(() => say('received', { n: received }), 100);
