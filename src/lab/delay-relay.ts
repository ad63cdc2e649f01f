#!/usr/bin/env node
/**
 * Delay and jitter for the lab, where the kernel has no netem: a TCP relay in
 * the router namespace that the NAT diverts client connections to
 * (nftables `redirect`). Each chunk read is forwarded after base + U(0,
 * jitter) ms, never before the chunk ahead of it (TCP keeps order), so a
 * late chunk holds back the ones behind it as head-of-line blocking does.
 *
 * What this is not: the relay terminates TCP, so the client's segments are
 * acknowledged by the relay without the delay; the delay applies to the
 * application's bytes end to end (what heartbeats and detectors see), not to
 * each segment's ACK clock. Loss is injected separately by nftables on the
 * client's link, so the client's TCP retransmits for real.
 *
 * Usage: delay-relay.js '{"routes":[{"listenPort":7101,"target":"10.0.2.2:7001"}],"baseMs":20,"jitterMs":200}'
 */
import net from 'node:net';

interface RelayConfig {
  /** Pairs of the port to listen on and the host:port to forward to. */
  routes: { listenPort: number; target: string }[];
  baseMs: number;
  jitterMs: number;
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as RelayConfig;
const delay = () => cfg.baseMs + Math.random() * cfg.jitterMs;

/**
 * Writes chunks to `to` after their delay, in order, then passes the end on. One queue and one
 * timer at a time: with a timer per chunk, the chunks held behind a later-drawn one (the same due
 * time, each timer's delay worked out from a clock the timers do not run on) fired in any order
 * and shuffled the stream, and the end could overtake the last of them.
 */
function delayedPipe(from: net.Socket, to: net.Socket): void {
  const queue: { at: number; chunk: Buffer | null }[] = [];
  let timer: NodeJS.Timeout | null = null;
  const flush = () => {
    timer = null;
    while (queue.length && queue[0].at <= performance.now()) {
      const { chunk } = queue.shift()!;
      if (chunk === null) to.end();
      else if (to.writable) to.write(chunk);
    }
    if (queue.length) timer = setTimeout(flush, Math.max(1, Math.ceil(queue[0].at - performance.now())));
  };
  const hold = (chunk: Buffer | null) => {
    const last = queue.length ? queue[queue.length - 1].at : 0;
    queue.push({ at: chunk === null ? Math.max(last, performance.now()) : Math.max(last, performance.now() + delay()), chunk });
    if (!timer) flush();
  };
  from.on('data', (chunk: Buffer) => hold(chunk));
  from.on('end', () => hold(null));
}

// Gone with the lab process, as the agents are: its stdin closes when that process dies (even by
// SIGKILL, with no teardown), and a relay that read nothing stayed running in the router for good.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

let listening = 0;
for (const r of cfg.routes) {
  const [host, port] = r.target.split(':');
  net
    .createServer((inbound) => {
      const outbound = net.connect({ host, port: Number(port), noDelay: true });
      inbound.setNoDelay(true);
      delayedPipe(inbound, outbound);
      delayedPipe(outbound, inbound);
      // A reset or error on one side resets the other: the relay must not hide a failure.
      inbound.on('error', () => outbound.resetAndDestroy());
      outbound.on('error', () => inbound.resetAndDestroy());
    })
    .listen(r.listenPort, '0.0.0.0', () => {
      if (++listening === cfg.routes.length) process.stdout.write(JSON.stringify({ ev: 'relay-ready', t: Date.now() }) + '\n');
    });
}
