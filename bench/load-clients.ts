/**
 * Opens `count` heartbeating clients to one gateway and keeps them open
 * until stdin closes; prints JSON progress lines. Bounded: it exits when
 * told, or after `maxMs`.
 *
 *   node dist/bench/load-clients.js '{"url":"tcp://127.0.0.1:7420","count":10000,"intervalMs":1000,"maxMs":600000}'
 */
import { LonglinkClient } from '../src/client/client.js';

const cfg = JSON.parse(process.argv[2] ?? '{}') as { url: string; count: number; intervalMs: number; maxMs: number; prefix?: string };
const say = (ev: string, data: Record<string, unknown> = {}) => process.stdout.write(JSON.stringify({ ev, ...data }) + '\n');
const clients: LonglinkClient[] = [];
let open = 0;
const stop = () => {
  for (const c of clients) c.close();
  setTimeout(() => process.exit(0), 200);
};
process.stdin.on('end', stop);
process.stdin.resume();
// Commands on stdin, one JSON line each: {"cmd":"send","n":N} (the first N clients each send one
// message and the answer comes once all are acknowledged), {"cmd":"close"} (every client closes).
let buffered = '';
process.stdin.on('data', (d) => {
  buffered += String(d);
  let nl: number;
  while ((nl = buffered.indexOf('\n')) >= 0) {
    const line = buffered.slice(0, nl);
    buffered = buffered.slice(nl + 1);
    const m = JSON.parse(line) as { cmd: 'send' | 'close'; n?: number };
    if (m.cmd === 'send') {
      const some = clients.slice(0, m.n ?? clients.length);
      let left = some.length;
      for (const c of some) {
        const id = c.send('x');
        const on = (a: { id: string }) => {
          if (a.id !== id) return;
          c.off('acked', on);
          if (--left === 0) say('sent', { n: some.length });
        };
        c.on('acked', on);
      }
    } else if (m.cmd === 'close') {
      for (const c of clients) c.close();
      say('closed', { n: clients.length });
    }
  }
});
setTimeout(stop, cfg.maxMs).unref();
setInterval(() => {}, 1 << 30);

for (let i = 0; i < cfg.count; i += 200) {
  const batch: Promise<unknown>[] = [];
  for (let j = i; j < Math.min(cfg.count, i + 200); j++) {
    const c = new LonglinkClient({ url: cfg.url, userId: `${cfg.prefix ?? 'load'}${j}`, deviceId: 'd', intervalMs: cfg.intervalMs });
    clients.push(c);
    batch.push(c.connect().then(() => open++));
  }
  await Promise.all(batch);
  if (open % 2000 === 0 || open === cfg.count) say('progress', { open });
}
say('ready', { open, pings: 0 });
setInterval(() => {
  let pings = 0;
  for (const c of clients) pings += c.stats.pingsSent;
  say('pings', { pings, open: clients.filter((c) => c.state === 'open').length });
}, 5000);
