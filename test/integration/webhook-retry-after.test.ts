import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { systemTimers } from '../../src/core/clock.js';
import { UpstreamRunner } from '../../src/gateway/upstream.js';
import { webhookSink } from '../../src/upstream/webhook.js';

// A backend that answers 429 or 503 with Retry-After says when it can take the message again; the
// capped backoff alone retried 50-100 ms later, so every device's message hammered a backend that
// had asked for a pause (a rate limiter, a deploy) at ten times a second.

/** A backend whose first answer is `status` with `retryAfter`, every later one 200; returns when each request came. */
async function backend(status: number, retryAfter: string) {
  const at: number[] = [];
  const server = http.createServer((req, res) => {
    req.resume();
    at.push(Date.now());
    if (at.length === 1) res.writeHead(status, { 'retry-after': retryAfter }).end();
    else res.writeHead(200).end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { at, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, close: () => (server.closeAllConnections(), server.close()) };
}

const msg = { userId: 'u', deviceId: 'd', connectionId: 'c', sessionId: 's', id: 'm1', seq: 1, payload: new Uint8Array([1]), receivedAt: 0 };

for (const [status, form, header] of [
  [429, 'seconds', () => '1'],
  [503, 'an HTTP date', () => new Date(Date.now() + 2000).toUTCString()],
] as const) {
  test(`a webhook ${status} with Retry-After (${form}) is retried after that time, not after the backoff's 100 ms`, async () => {
    const b = await backend(status, header());
    const sink = webhookSink({ url: b.url, timeoutMs: 2000 });
    const runner = new UpstreamRunner({ sink, retryMinMs: 100, retryMaxMs: 10_000 }, systemTimers, () => {});
    try {
      assert.deepEqual(await runner.deliver(msg, () => b.at.length < 5), {});
      assert.equal(b.at.length, 2);
      const gap = b.at[1]! - b.at[0]!;
      // The HTTP date has whole seconds: 2 s from now is at least 1 s.
      assert.ok(gap >= 900, `retried ${gap} ms after the ${status} that asked for Retry-After: ${header()}`);
    } finally {
      await sink.close?.();
      b.close();
    }
  });
}

test('a Retry-After beyond retryMaxMs waits retryMaxMs: a backend cannot hold a device\'s messages for an hour', async () => {
  const b = await backend(429, '3600');
  const sink = webhookSink({ url: b.url, timeoutMs: 2000 });
  const runner = new UpstreamRunner({ sink, retryMinMs: 100, retryMaxMs: 500 }, systemTimers, () => {});
  try {
    const t0 = Date.now();
    assert.deepEqual(await runner.deliver(msg, () => Date.now() - t0 < 5000), {});
    const gap = b.at[1]! - b.at[0]!;
    assert.ok(gap >= 450 && gap < 2000, `retried after ${gap} ms (retryMaxMs 500)`);
  } finally {
    await sink.close?.();
    b.close();
  }
});
