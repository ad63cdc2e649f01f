import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { mock, test } from 'node:test';
import { systemTimers } from '../../src/core/clock.js';
import { UpstreamRejectedError, UpstreamRunner, type UpstreamEvent } from '../../src/gateway/upstream.js';
import { verifyWebhookSignature, webhookSignature, webhookSink, type WebhookBody } from '../../src/upstream/webhook.js';

// The webhook sink against a real HTTP backend: ids no header can carry, answers that say the
// backend is misconfigured rather than the message bad, and events a restarted node numbers anew.

async function backend(answer: (body: Record<string, unknown>, req: http.IncomingMessage) => number) {
  const got: { body: Record<string, unknown>; id: string | undefined }[] = [];
  const server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (d) => (text += d));
    req.on('end', () => {
      const body = JSON.parse(text) as Record<string, unknown>;
      got.push({ body, id: req.headers['x-longlink-id'] as string | undefined });
      res.writeHead(answer(body, req)).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/`, got, close: () => new Promise((r) => server.close(r)) };
}

const message = (id: string) => ({ userId: 'u', deviceId: 'd', connectionId: 'c', sessionId: 's', id, seq: 1, payload: Buffer.from('x'), receivedAt: 1 });

test('a message id no header can carry (not printable ASCII, or with a space at either end) reaches the backend in the body, without the header; a printable one has both', async () => {
  const b = await backend(() => 200);
  const sink = webhookSink({ url: b.url });
  try {
    await sink.send(message('заказ-2'));
    await sink.send(message('line\nbreak'));
    await sink.send(message('order-3'));
    // A header's value loses its leading and trailing spaces on receipt (RFC 9110 5.5; Node, Go, Python's
    // http.server trim them): ' order-3' would reach a backend deduplicating by the header as 'order-3'.
    await sink.send(message(' order-3'));
    await sink.send(message('order-3 '));
    await sink.send(message('order 4'));
    assert.deepEqual(b.got.map((g) => [g.body.id, g.id]), [['заказ-2', undefined], ['line\nbreak', undefined], ['order-3', 'order-3'], [' order-3', undefined], ['order-3 ', undefined], ['order 4', 'order 4']]);
  } finally {
    await sink.close?.();
    await b.close();
  }
});

test('a webhook 401, 403, 404 or 407 is retried (the backend\'s configuration, not the message); 400 and 422 are the message refused for good', async () => {
  let status = 0;
  const b = await backend(() => status);
  const sink = webhookSink({ url: b.url });
  try {
    for (status of [401, 403, 404, 407, 408, 429, 500]) {
      await assert.rejects(sink.send(message(`m${status}`)), (e: Error) => !(e instanceof UpstreamRejectedError), `HTTP ${status} is retried`);
    }
    for (status of [400, 413, 422]) await assert.rejects(sink.send(message(`m${status}`)), UpstreamRejectedError, `HTTP ${status} is refused`);
  } finally {
    await sink.close?.();
    await b.close();
  }
});

test('lifecycle events carry the node\'s run, random at each start: a node restarted under the same id, counting from 1 again, is told apart', async () => {
  const seen: UpstreamEvent[] = [];
  const sink = { name: 't', send: async () => {}, sendEvent: async (e: UpstreamEvent) => void seen.push(e) };
  const e: UpstreamEvent = { type: 'online', userId: 'u', deviceId: 'd', connectionId: 'c', nodeId: 'n1', resumed: false, at: 1 } as UpstreamEvent;
  for (let start = 0; start < 2; start++) {
    const runner = new UpstreamRunner({ sink, events: ['online'] }, systemTimers, () => {});
    await runner.event(e);
  }
  assert.deepEqual(seen.map((x) => x.seq), [1, 1]);
  assert.ok(seen[0].run && seen[1].run && seen[0].run !== seen[1].run);
});

async function answering(body: (n: number) => string) {
  let n = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(body(++n)));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/`, close: () => new Promise((r) => server.close(r)) };
}

test('a webhook reply whose answer is over 64 KiB (50 KB as base64) reaches the device; an answer over maxAnswerBytes accepts the message and says its reply was not read', async () => {
  const reply = Buffer.alloc(50_000, 7);
  const b = await answering((n) => (n === 1 ? JSON.stringify({ reply: { base64: reply.toString('base64') } }) : JSON.stringify({ reply: { text: 'x'.repeat(300_000) } })));
  const sink = webhookSink({ url: b.url, maxAnswerBytes: 200_000 });
  try {
    const first = await sink.send(message('m1'));
    assert.ok(first && first.reply instanceof Uint8Array, 'the reply was read, not cut at 64 KiB');
    assert.equal(Buffer.compare(Buffer.from(first.reply), reply), 0);
    const second = await sink.send(message('m2'));
    assert.ok(second, 'accepted (a 2xx), with an answer');
    assert.equal(second.reply, undefined);
    assert.equal((second.replyError as { code?: string } | undefined)?.code, 'LL_ERR_PAYLOAD_TOO_LARGE');
    assert.ok(await sink.send(message('m3')), 'the sink goes on after a cut answer');
  } finally {
    await sink.close?.();
    await b.close();
  }
  assert.throws(() => webhookSink({ url: b.url, maxAnswerBytes: 0 }), { code: 'LL_ERR_INVALID_OPTION' });
});

test('a webhook reply whose base64 is not base64 is not sent to the device as whatever Buffer makes of it: the message is accepted and its reply refused with a code', async () => {
  const bad = ['aGVsbG8*', 'aGVsbG8=x', 'a', 'aGVsbA==='];
  const b = await answering((n) => JSON.stringify({ reply: { base64: n <= bad.length ? bad[n - 1] : 'aGVsbG8=' } }));
  const sink = webhookSink({ url: b.url });
  try {
    for (const s of bad) {
      const a = await sink.send(message(`m-${s}`));
      assert.ok(a, `accepted (a 2xx): ${s}`);
      assert.equal(a.reply, undefined, `no reply made of ${JSON.stringify(s)}`);
      assert.equal((a.replyError as { code?: string } | undefined)?.code, 'LL_ERR_BAD_REPLY', s);
    }
    const good = await sink.send(message('m-good'));
    assert.equal(Buffer.from(good!.reply as Uint8Array).toString(), 'hello');
  } finally {
    await sink.close?.();
    await b.close();
  }
});

test('a backend checks X-Longlink-Signature over the raw bytes with verifyWebhookSignature: the real one passes, a forged, cut, missing or other-secret one does not', async () => {
  const raw: { body: Buffer; sig: string | undefined }[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      raw.push({ body: Buffer.concat(chunks), sig: req.headers['x-longlink-signature'] as string | undefined });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sink = webhookSink({ url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/`, secret: 'hook-secret' });
  try {
    await sink.send({ ...message('m1'), payload: Buffer.from('héllo') });
    const [{ body, sig }] = raw;
    assert.ok(verifyWebhookSignature('hook-secret', body, sig), 'the raw bytes');
    assert.ok(verifyWebhookSignature('hook-secret', body.toString('utf8'), sig), 'the same as a string');
    assert.equal(sig, webhookSignature('hook-secret', body, Number(/^t=(\d+),/.exec(sig!)![1])));
    assert.ok(!verifyWebhookSignature('other-secret', body, sig), 'another secret');
    assert.ok(!verifyWebhookSignature('hook-secret', Buffer.concat([body, Buffer.from(' ')]), sig), 'another body');
    assert.ok(!verifyWebhookSignature('hook-secret', body, sig!.slice(0, -1)), 'cut short');
    assert.ok(!verifyWebhookSignature('hook-secret', body, `${sig!.slice(0, -1)}${sig!.endsWith('0') ? '1' : '0'}`), 'one character off');
    assert.ok(!verifyWebhookSignature('hook-secret', body, undefined), 'missing');
  } finally {
    await sink.close?.();
    await new Promise((r) => server.close(r));
  }
});

test('the webhook body\'s text is the payload as text: a leading U+FEFF (valid UTF-8) is kept, not stripped', async () => {
  const bodies: WebhookBody[] = [];
  const server = http.createServer((req, res) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (data += c));
    req.on('end', () => {
      bodies.push(JSON.parse(data) as WebhookBody);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sink = webhookSink({ url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/` });
  try {
    const payload = Buffer.from('\ufeff{"a":1}', 'utf8');
    await sink.send({ userId: 'u', deviceId: 'd', connectionId: 'c', sessionId: 's', id: 'm1', seq: 1, payload, receivedAt: 0 });
    assert.equal(Buffer.from(bodies[0].payload, 'base64').toString('utf8'), '\ufeff{"a":1}');
    assert.equal(bodies[0].text, '\ufeff{"a":1}', 'text differs from the payload it says it is');
  } finally {
    await sink.close?.();
    await new Promise((r) => server.close(r));
  }
});

test('a sink that throws instead of rejecting: a fire-and-forget message is counted failed and frees its place in the backlog, not held for good', async () => {
  const failed: string[] = [];
  const sink = { name: 'throws', send: (): Promise<void> => { throw new Error('sync'); } };
  const runner = new UpstreamRunner({ sink, maxPending: 2 }, systemTimers, (err) => failed.push((err as Error).message));
  const msg = { userId: 'u', deviceId: 'd', connectionId: 'c', sessionId: 's', payload: Buffer.from('x'), receivedAt: 0 };
  for (let i = 0; i < 5; i++) {
    assert.equal(runner.fireAndForget(msg), true, `message ${i} taken, the backlog being free again`);
    await new Promise((r) => setImmediate(r));
  }
  assert.deepEqual(failed, ['sync', 'sync', 'sync', 'sync', 'sync']);
  assert.equal(runner.stats.pending, 0);
  assert.equal(runner.stats.failures, 5);
});

test('a captured delivery replayed later is refused: the signature carries its timestamp (t=<s>,v1=<HMAC of "<t>.<body>">), checked within a tolerance (300 s); a fresh one passes, a changed body or timestamp fails, a retry is signed anew', async () => {
  const raw: { body: Buffer; sig: string }[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      raw.push({ body: Buffer.concat(chunks), sig: String(req.headers['x-longlink-signature']) });
      res.writeHead(raw.length === 1 ? 503 : 200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sink = webhookSink({ url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/`, secret: 'hook-secret' });
  try {
    const before = Math.floor(Date.now() / 1000);
    await assert.rejects(sink.send(message('m1')), /HTTP 503/);
    const after = Math.floor(Date.now() / 1000);
    // The retry of the same message, 120 s later by the clock.
    mock.timers.enable({ apis: ['Date'], now: Date.now() + 120_000 });
    try {
      await sink.send(message('m1'));
    } finally {
      mock.timers.reset();
    }
    const [first, retry] = raw;
    const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(first.sig);
    assert.ok(m, `the header's form: ${first.sig}`);
    const t = Number(m[1]);
    assert.ok(t >= before && t <= after, 'the timestamp is the time of sending, in seconds');
    assert.equal(m[2], createHmac('sha256', 'hook-secret').update(`${t}.`).update(first.body).digest('hex'), 'v1 is the HMAC of "<t>.<raw body>"');
    assert.equal(first.sig, webhookSignature('hook-secret', first.body, t));
    // Fresh: passes, by default against the clock and with a given `now` (ms) within 300 s either way.
    assert.ok(verifyWebhookSignature('hook-secret', first.body, first.sig), 'a fresh delivery');
    assert.ok(verifyWebhookSignature('hook-secret', first.body, first.sig, { now: t * 1000 + 300_000 }), 'at the edge of the tolerance');
    assert.ok(verifyWebhookSignature('hook-secret', first.body, first.sig, { now: t * 1000 - 300_000 }), 'a clock behind by the tolerance');
    // Replayed later: the same bytes, the same header, refused.
    assert.ok(!verifyWebhookSignature('hook-secret', first.body, first.sig, { now: t * 1000 + 301_000 }), 'replayed 301 s later');
    assert.ok(!verifyWebhookSignature('hook-secret', first.body, first.sig, { now: t * 1000 + 86_400_000 }), 'replayed a day later');
    assert.ok(!verifyWebhookSignature('hook-secret', first.body, first.sig, { now: t * 1000 - 301_000 }), 'from the future');
    assert.ok(verifyWebhookSignature('hook-secret', first.body, first.sig, { now: t * 1000 + 3_600_000, toleranceSeconds: 3600 }), 'a wider tolerance, when asked for');
    // The timestamp cannot be moved forward to pass the check, nor the body changed.
    const moved = first.sig.replace(`t=${t},`, `t=${t + 3600},`);
    assert.ok(!verifyWebhookSignature('hook-secret', first.body, moved, { now: (t + 3600) * 1000 }), 'a timestamp changed');
    assert.ok(!verifyWebhookSignature('hook-secret', Buffer.concat([first.body, Buffer.from(' ')]), first.sig), 'a body changed');
    assert.ok(!verifyWebhookSignature('other-secret', first.body, first.sig), 'another secret');
    assert.ok(!verifyWebhookSignature('hook-secret', first.body, `v1=${m[2]}`), 'no timestamp');
    assert.ok(!verifyWebhookSignature('hook-secret', first.body, `sha256=${createHmac('sha256', 'hook-secret').update(first.body).digest('hex')}`), 'the old, untimed form');
    assert.ok(!verifyWebhookSignature('hook-secret', first.body, `t=abc,v1=${m[2]}`), 'a timestamp not a number');
    // A retry is a new delivery: same body, signed anew with its own timestamp.
    assert.deepEqual(retry.body, first.body);
    const rt = Number(/^t=(\d+),/.exec(retry.sig)![1]);
    assert.ok(rt >= t + 120 && rt <= after + 120, `the retry has its own timestamp, of its sending (${rt} after ${t})`);
    assert.ok(verifyWebhookSignature('hook-secret', retry.body, retry.sig, { now: rt * 1000 }), 'the retry verifies');
    const later = webhookSignature('hook-secret', retry.body, t + 1000);
    assert.match(later, new RegExp(`^t=${t + 1000},v1=[0-9a-f]{64}$`));
    assert.ok(!verifyWebhookSignature('hook-secret', retry.body, later, { now: t * 1000 }), 'a signature made 1000 s later is outside the tolerance now');
  } finally {
    await sink.close?.();
    await new Promise((r) => server.close(r));
  }
});
