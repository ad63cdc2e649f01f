import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Gateway, type FaultEvent } from '../../src/gateway/gateway.js';
import { keepaliveTuningAvailable } from '../../src/link/socket-tuning.js';
import { RawPeer } from '../helpers/raw-peer.js';

// A keepalive setting the kernel refuses (EINVAL from setsockopt) reaches the gateway whose socket
// it was, as a `fault`, not only process.emitWarning (stderr), and not another gateway's listeners.

test('a keepalive value the kernel refuses is a `fault` (config, keepalive) of the gateway whose socket it was, once, and not of another gateway in the process', { skip: !keepaliveTuningAvailable() && 'needs net-keepalive' }, async () => {
  const keepalive = { keepaliveIdleMs: 5000, keepaliveIntervalMs: 1000, keepaliveCount: 3 };
  const a = new Gateway({ tcp: { port: 0, host: '127.0.0.1' }, ws: false, keepalive });
  const b = new Gateway({ tcp: { port: 0, host: '127.0.0.1' }, ws: false, keepalive });
  // A kernel with lower limits than Linux's, stood in for by a value past Linux's own (TCP_KEEPINTVL at
  // most 32,767 s): the options' check cannot know the running kernel's limits.
  a.options.keepalive.keepaliveIntervalMs = 40_000_000;
  const faults: Record<'a' | 'b', FaultEvent[]> = { a: [], b: [] };
  a.on('fault', (e) => e.op === 'keepalive' && faults.a.push(e));
  b.on('fault', (e) => e.op === 'keepalive' && faults.b.push(e));
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on('warning', onWarning);
  const peers: RawPeer[] = [];
  try {
    const [pa, pb] = [(await a.listen()).tcp!.port, (await b.listen()).tcp!.port];
    for (const port of [pa, pa, pb]) {
      const p = new RawPeer(port);
      peers.push(p);
      p.hello('u', `d${peers.length}`);
      await p.welcome();
    }
    await new Promise((r) => setImmediate(r));
    assert.equal(faults.a.length, 1, "the kernel's refusal is a fault of the gateway whose socket it was (once for two sockets)");
    assert.equal(faults.a[0].kind, 'config');
    assert.match(String((faults.a[0].error as Error).message), /TCP keepalive tuning failed .*EINVAL|TCP keepalive tuning failed .*Invalid argument/);
    assert.equal(faults.b.length, 0, "another gateway's listeners hear nothing of it");
    assert.deepEqual(warnings.filter((w) => /keepalive/i.test(w.message)).map((w) => w.message), [], 'told to the fault listener, not (also) to stderr');
  } finally {
    process.off('warning', onWarning);
    for (const p of peers) p.destroy();
    await a.close();
    await b.close();
  }
});

test('without a fault listener the refusal still reaches process warnings', { skip: !keepaliveTuningAvailable() && 'needs net-keepalive' }, async () => {
  const gw = new Gateway({ tcp: { port: 0, host: '127.0.0.1' }, ws: false, keepalive: { keepaliveIdleMs: 5000, keepaliveCount: 3 } });
  gw.options.keepalive.keepaliveCount = 200; // TCP_KEEPCNT: at most 127 on Linux
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on('warning', onWarning);
  const p = new RawPeer((await gw.listen()).tcp!.port);
  try {
    p.hello('u', 'd');
    await p.welcome();
    for (let i = 0; i < 50 && warnings.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(warnings.filter((w) => /TCP keepalive tuning failed/.test(w.message)).length, 1);
  } finally {
    process.off('warning', onWarning);
    p.destroy();
    await gw.close();
  }
});
