/**
 * The webhook benchmark's devices: `count` SDK clients; on "go" each sends
 * `each` sequenced messages; prints acknowledgements every 100 ms. Not paced
 * (`maxDataPerSecond: 0`): the benchmark's gateway has no DATA pace either.
 * Bounded: exits when stdin closes or after `maxMs`.
 */
import readline from 'node:readline';
import { LonglinkClient } from '../src/client/client.js';

const cfg = JSON.parse(process.argv[2] ?? '{}') as { url: string; count: number; each: number; maxMs: number };
const say = (ev: string, data: Record<string, unknown> = {}) => process.stdout.write(JSON.stringify({ ev, ...data }) + '\n');
const clients = Array.from({ length: cfg.count }, (_, i) => new LonglinkClient({ url: cfg.url, userId: `hook${i}`, deviceId: 'd', maxOutbox: cfg.each + 10, maxDataPerSecond: 0 }));
let acked = 0;
for (const c of clients) c.on('acked', () => acked++);
setTimeout(() => process.exit(0), cfg.maxMs).unref();
readline.createInterface({ input: process.stdin }).on('line', (l) => {
  if (l.trim() === 'go') for (let k = 0; k < cfg.each; k++) for (const c of clients) c.send(`reading ${k}`);
}).on('close', () => process.exit(0));
await Promise.all(clients.map((c) => c.connect()));
say('ready');
setInterval(() => say('acked', { n: acked }), 100);
