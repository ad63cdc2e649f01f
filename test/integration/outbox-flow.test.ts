import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LonglinkClient } from '../../src/client/client.js';
import { Gateway } from '../../src/gateway/gateway.js';
import type { GatewayOptions } from '../../src/gateway/options.js';
import type { UpstreamSink } from '../../src/gateway/upstream.js';

// A client's outbox, filled while it was offline (well within maxOutbox), against a real gateway
// with its default inbound limits over loopback TCP: it must drain, each message once and in order,
// without the gateway closing the link for a burst the SDK itself made on reconnecting.

async function gateway(opts: GatewayOptions = {}) {
  const gw = new Gateway({ tcp: { port: 0, host: '127.0.0.1' }, ws: false, ...opts });
  const got: string[] = [];
  gw.on('message', (e) => got.push(Buffer.from(e.payload).toString()));
  return { gw, got, port: (await gw.listen()).tcp!.port };
}

/** A client with `n` messages (`m0`, `m1`, ..., padded to `size` bytes) queued before it connects; resolves once they are all acknowledged (or `ms` passed). */
async function drain(port: number, n: number, ms: number, size = 0) {
  const c = new LonglinkClient({ url: `tcp://127.0.0.1:${port}`, userId: 'u', deviceId: 'd' });
  const closes: number[] = [];
  c.on('close', (e) => closes.push(e.code));
  const sent = Array.from({ length: n }, (_, i) => `m${i}`);
  for (const s of sent) c.send(s.padEnd(size));
  const t0 = Date.now();
  await c.connect();
  while (c.pendingCount > 0 && Date.now() - t0 < ms) await new Promise((r) => setTimeout(r, 50));
  const pending = c.pendingCount;
  const lost = [...closes];
  c.close();
  return { sent, closes: lost, pending, ms: Date.now() - t0 };
}

test('upstream: 1,000 messages queued offline reach a backend that takes 2 ms each, once and in order, without the gateway refusing the burst (4004)', async () => {
  const upstreamGot: string[] = [];
  const sink: UpstreamSink = {
    name: 'slow',
    send: async (m) => {
      await new Promise((r) => setTimeout(r, 2));
      upstreamGot.push(Buffer.from(m.payload).toString());
    },
  };
  const { gw, port } = await gateway({ upstream: { sink } });
  try {
    const r = await drain(port, 1000, 20_000);
    assert.deepEqual(r.closes, [], 'the link stays up');
    assert.equal(r.pending, 0, `all acknowledged (${upstreamGot.length} reached the backend in ${r.ms} ms)`);
    assert.deepEqual(upstreamGot, r.sent, 'the backend got each message once, in order');
  } finally {
    await gw.close();
  }
});

test('upstream: 100 messages of 60 KB queued offline (6 MB, over the 4 MiB a link may have waiting) reach a slow backend, once and in order, without 4004', async () => {
  const upstreamGot: string[] = [];
  const sink: UpstreamSink = {
    name: 'slow',
    send: async (m) => {
      await new Promise((r) => setTimeout(r, 2));
      upstreamGot.push(Buffer.from(m.payload.subarray(0, 8)).toString().trim());
    },
  };
  const { gw, port } = await gateway({ upstream: { sink } });
  try {
    const r = await drain(port, 100, 20_000, 60_000);
    assert.deepEqual(r.closes, [], 'the link stays up');
    assert.equal(r.pending, 0, `all acknowledged (${upstreamGot.length} reached the backend in ${r.ms} ms)`);
    assert.deepEqual(upstreamGot, r.sent, 'the backend got each message once, in order');
  } finally {
    await gw.close();
  }
});

test("5,000 messages queued offline go out within the gateway's default DATA pace (1,000 a second, bursts of 2,000): no 4009, each once and in order", async () => {
  const { gw, port, got } = await gateway();
  try {
    const r = await drain(port, 5000, 20_000);
    assert.deepEqual(r.closes, [], 'the link stays up');
    assert.equal(r.pending, 0, `all acknowledged (${got.length} in ${r.ms} ms)`);
    assert.deepEqual(got, r.sent, 'each message once, in order');
  } finally {
    await gw.close();
  }
});
