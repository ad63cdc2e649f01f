/**
 * One load-generator process of the reconnect storm (bench/storm-bench.ts):
 * `count` real LonglinkClients (the SDK, with its backoff, jitter and GOAWAY
 * handling: what is measured is what users run), spread over source
 * addresses of their own. Every second it prints one JSON line: clients
 * open, WELCOMEs received in that second with each attempt's handshake
 * latency (dial to WELCOME), and attempts that failed, by code. Stops on
 * `quit` from stdin, when stdin ends, or after `maxMs`.
 */
import readline from 'node:readline';
import { LonglinkClient } from '../src/client/client.js';

interface Cfg {
  url: string;
  count: number;
  prefix: string;
  sources: number;
  sourceBase: number;
  intervalMs: number;
  maxMs: number;
}

const cfg = JSON.parse(process.argv[2]) as Cfg;
const source = (i: number) => {
  const n = cfg.sourceBase + (i % cfg.sources);
  return `127.0.${Math.floor(n / 254)}.${1 + (n % 254)}`;
};

let open = 0;
let opens = 0;
let failed = 0;
let lat: number[] = [];
let codes: Record<string, number> = {};
const clients: LonglinkClient[] = [];

for (let i = 0; i < cfg.count; i++) {
  const c = new LonglinkClient({ url: cfg.url, userId: `${cfg.prefix}${i}`, deviceId: 'd', localAddress: source(i), intervalMs: cfg.intervalMs });
  let attemptAt = 0;
  let isOpen = false;
  c.on('connecting', () => (attemptAt = performance.now()));
  c.on('open', () => {
    isOpen = true;
    open++;
    opens++;
    lat.push(Math.round((performance.now() - attemptAt) * 10) / 10);
  });
  c.on('close', (e) => {
    if (isOpen) {
      isOpen = false;
      open--;
      return;
    }
    failed++;
    codes[e.code] = (codes[e.code] ?? 0) + 1;
  });
  clients.push(c);
}

// The first connections go out in batches, so the initial ramp is not itself the storm.
(async () => {
  for (let i = 0; i < clients.length; i += 200) {
    for (const c of clients.slice(i, i + 200)) c.connect().catch(() => {});
    const target = Math.min(clients.length, i + 200);
    for (let k = 0; k < 200 && open < target * 0.95; k++) await new Promise((r) => setTimeout(r, 25));
  }
})();

const tick = setInterval(() => {
  process.stdout.write(JSON.stringify({ ev: 'tick', t: Date.now(), open, opens, failed, lat, codes }) + '\n');
  opens = 0;
  failed = 0;
  lat = [];
  codes = {};
}, 1000);

const quit = () => {
  clearInterval(tick);
  for (const c of clients) c.close();
  setTimeout(() => process.exit(0), 200);
};
readline.createInterface({ input: process.stdin }).on('line', (l) => l.trim() === 'quit' && quit()).on('close', quit);
setTimeout(quit, cfg.maxMs).unref();
