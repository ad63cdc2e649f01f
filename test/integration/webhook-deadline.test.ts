import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { webhookSink } from '../../src/upstream/webhook.js';

// The webhook's timeout is a deadline on the whole request: a backend that trickles its answer
// (a byte every 100 ms, so the socket is never idle) used to hold a request, and a socket, forever.

test('a webhook backend that trickles its answer fails the attempt at the deadline, not never', async () => {
  const open = new Set<http.ServerResponse>();
  const backend = http.createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    open.add(res);
    const t = setInterval(() => res.write(' '), 100);
    res.on('close', () => (clearInterval(t), open.delete(res)));
  });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  const sink = webhookSink({ url: `http://127.0.0.1:${(backend.address() as AddressInfo).port}/hook`, timeoutMs: 500 });
  try {
    const t0 = Date.now();
    await assert.rejects(sink.send({ userId: 'u', deviceId: 'd', connectionId: 'c', sessionId: 's', id: 'm1', seq: 1, payload: new Uint8Array([1]), receivedAt: 0 }), /no answer within 500 ms/);
    const took = Date.now() - t0;
    assert.ok(took >= 450 && took < 2000, `failed at the deadline: ${took} ms`);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(open.size, 0, 'the trickling answer was dropped');
  } finally {
    await sink.close?.();
    backend.closeAllConnections();
    backend.close();
  }
});

test('lifecycle events go on sockets of their own: a backend slow on events does not hold up devices\' messages', async () => {
  const held: http.ServerResponse[] = [];
  const backend = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      if ((JSON.parse(body) as { type: string }).type === 'message') return void res.writeHead(200).end();
      held.push(res); // events: never answered (until the end of the test)
    });
  });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  const sink = webhookSink({ url: `http://127.0.0.1:${(backend.address() as AddressInfo).port}/hook`, timeoutMs: 3000, maxSockets: 4 });
  try {
    const events = Array.from({ length: 20 }, (_, i) => sink.sendEvent!({ type: 'online', userId: `u${i}`, deviceId: 'd', connectionId: 'c', nodeId: 'n', at: 0 }).catch(() => {}));
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    await sink.send({ userId: 'u', deviceId: 'd', connectionId: 'c', sessionId: 's', id: 'm1', seq: 1, payload: new Uint8Array([1]), receivedAt: 0 });
    assert.ok(Date.now() - t0 < 1000, `the message went at once (${Date.now() - t0} ms), not behind 20 held events`);
    assert.equal(held.length, 1, 'events use a quarter of the sockets (one of four here)');
    await sink.close?.();
    await Promise.all(events);
  } finally {
    await sink.close?.();
    backend.closeAllConnections();
    backend.close();
  }
});

test('a webhook 4xx refuses the message for good (UpstreamRejectedError, not retried); 401, 403, 404, 407 (the backend misconfigured), 408, 425, 429 and 5xx are failures to retry', async () => {
  const { UpstreamRejectedError } = await import('../../src/gateway/upstream.js');
  let status = 400;
  const backend = http.createServer((req, res) => {
    req.resume();
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end('{"error":"no such room"}');
  });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  const sink = webhookSink({ url: `http://127.0.0.1:${(backend.address() as AddressInfo).port}/hook`, timeoutMs: 2000 });
  const msg = { userId: 'u', deviceId: 'd', connectionId: 'c', sessionId: 's', id: 'm1', seq: 1, payload: new Uint8Array([1]), receivedAt: 0 };
  try {
    for (const s of [400, 409, 413, 422]) {
      status = s;
      await assert.rejects(sink.send(msg), (e: Error) => e instanceof UpstreamRejectedError && e.message.includes(`HTTP ${s}`) && e.message.includes('no such room'), `${s}`);
    }
    for (const s of [401, 403, 404, 407, 408, 425, 429, 500, 503]) {
      status = s;
      await assert.rejects(sink.send(msg), (e: Error) => !(e instanceof UpstreamRejectedError) && e.message.includes(`HTTP ${s}`), `${s}`);
    }
  } finally {
    await sink.close?.();
    backend.close();
  }
});
