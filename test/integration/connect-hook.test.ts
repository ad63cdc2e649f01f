import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { connectHook, type ConnectHookAnswer, type ConnectHookRequest } from '../../src/auth/connect-hook.js';
import { LonglinkClient, type CloseEvent } from '../../src/client/client.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { CloseCodes, LonglinkError, ProtocolError } from '../../src/protocol/errors.js';
import { MAX_TIMER_MS } from '../../src/core/heartbeat-policy.js';
import { RawPeer } from '../helpers/raw-peer.js';

// The connect hook against a real HTTP backend: it allows (and sets the user, client info and
// heartbeat within the gateway's bounds), refuses (4510, no retry), or is too slow or down
// (4004: the device comes back with backoff and gets in once the backend answers).

test('the connect hook allows, refuses, sets identity and heartbeat, and a slow backend is retryable', async () => {
  const seen: ConnectHookRequest[] = [];
  let slow = false;
  const backend = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const r = JSON.parse(body) as ConnectHookRequest;
      seen.push(r);
      assert.equal(req.headers.authorization, 'Bearer hook-key');
      const answer = (a: ConnectHookAnswer) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(a));
      if (slow) return void setTimeout(() => answer({ allow: true }), 600);
      if (r.user === 'mallory') return answer({ allow: false, reason: 'banned' });
      if (r.token === 'token-of-alice') return answer({ allow: true, user: 'alice', clientInfo: { plan: 'pro' }, heartbeat: { intervalMs: 999_999 } });
      answer({ allow: true });
    });
  });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  const url = `http://127.0.0.1:${(backend.address() as AddressInfo).port}/hello`;
  const gw = new Gateway({
    tcp: { port: 0 },
    ws: false,
    heartbeat: { intervalMs: 1000, minIntervalMs: 500, maxIntervalMs: 5000, missBudget: 2, graceMs: 500 },
    authenticate: connectHook({ url, timeoutMs: 300, secret: 'hook-key' }),
  });
  const port = (await gw.listen()).tcp!.port;
  const clients: LonglinkClient[] = [];
  const client = (userId: string, token?: string) => {
    const c = new LonglinkClient({ url: `tcp://127.0.0.1:${port}`, userId, deviceId: 'd', ...(token ? { token } : {}), reconnect: { initialDelayMs: 100, maxDelayMs: 200 } });
    clients.push(c);
    return c;
  };
  try {
    // Allowed, with the user, client info and heartbeat the backend set (the interval clamped to 5 s).
    const a = client('someone', 'token-of-alice');
    const welcome = await a.connect();
    assert.equal(gw.connection('alice', 'd')?.clientInfo.plan, 'pro');
    assert.equal(welcome.heartbeat.intervalMs, 5000);
    assert.deepEqual({ user: seen[0].user, token: seen[0].token, transport: seen[0].transport }, { user: 'someone', token: 'token-of-alice', transport: 'tcp' });
    // Refused: 4510, and the client does not retry.
    const m = client('mallory');
    const closes: CloseEvent[] = [];
    m.on('close', (e) => closes.push(e));
    await assert.rejects(m.connect());
    assert.equal(closes[0].code, CloseCodes['auth-failed']);
    assert.equal(closes[0].willReconnect, false);
    assert.match(closes[0].reason, /banned/);
    // Too slow: 4004, retried; once the backend is quick again, the device gets in.
    slow = true;
    const b = client('bob');
    const bCloses: CloseEvent[] = [];
    b.on('close', (e) => bCloses.push(e));
    const opened = b.connect();
    for (let i = 0; i < 50 && bCloses.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(bCloses[0]?.code, CloseCodes['server-error']);
    assert.equal(bCloses[0].willReconnect, true);
    slow = false;
    await opened;
    assert.ok(gw.connection('bob', 'd'));
  } finally {
    for (const c of clients) c.close();
    await gw.close();
    backend.closeAllConnections();
    backend.close();
  }
});

test('what the hook is sent and what it answers are bounded: a long token is refused before the hook is called, an answer over 64 KiB is a 4004, and the identity it sets is held to the HELLO\'s bounds', async () => {
  let calls = 0;
  const backend = http.createServer((req, res) => {
    calls++;
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const r = JSON.parse(body) as ConnectHookRequest;
      const answer = (a: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(a));
      if (r.user === 'huge') return answer({ allow: true, pad: 'x'.repeat(100_000) });
      if (r.user === 'longid') return answer({ allow: true, user: 'u'.repeat(2000) });
      if (r.user === 'bigstate') return answer({ allow: true, clientInfo: { blob: 'x'.repeat(5000) } });
      answer({ allow: true });
    });
  });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  const url = `http://127.0.0.1:${(backend.address() as AddressInfo).port}/hello`;
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, authenticate: connectHook({ url, timeoutMs: 2000 }) });
  const port = (await gw.listen()).tcp!.port;
  const codeOf = async (userId: string, token?: string) => {
    const c = new LonglinkClient({ url: `tcp://127.0.0.1:${port}`, userId, deviceId: 'd', ...(token ? { token } : {}), reconnect: { enabled: false } });
    const closes: CloseEvent[] = [];
    c.on('close', (e) => closes.push(e));
    try {
      await c.connect();
      return 'open';
    } catch {
      return closes[0]?.code;
    } finally {
      c.close();
    }
  };
  try {
    assert.equal(await codeOf('ok', 't'.repeat(16_384)), 'open', 'a token at the bound');
    const before = calls;
    assert.equal(await codeOf('ok', 't'.repeat(16_385)), CloseCodes['field-too-large']);
    assert.equal(calls, before, 'the hook was not called');
    assert.equal(await codeOf('huge'), CloseCodes['server-error'], 'an answer over 64 KiB');
    assert.equal(await codeOf('longid'), CloseCodes['field-too-large']);
    assert.equal(await codeOf('bigstate'), CloseCodes['field-too-large']);
    assert.equal(gw.connectionCount, 0);
  } finally {
    await gw.close();
    backend.close();
  }
});

test('a hook that redirects (an http URL moved to https, another host) is a 4004 naming the redirect, not a 4510: followed, the request lost its secret and the backend refused every device for good', async () => {
  // The backend the redirect points to: it checks the gateway's secret, as SERVER-API.md says to.
  let reached = 0;
  const real = http.createServer((req, res) => {
    reached++;
    req.resume();
    if (req.headers.authorization !== 'Bearer hook-key') return void res.writeHead(401).end();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ allow: true }));
  });
  real.listen(0, '127.0.0.1');
  await once(real, 'listening');
  // The URL the gateway was given answers 308 to it under another origin (another name here).
  const moved = http.createServer((req, res) => {
    req.resume();
    res.writeHead(308, { location: `http://localhost:${(real.address() as AddressInfo).port}/hello` }).end();
  });
  moved.listen(0, '127.0.0.1');
  await once(moved, 'listening');
  const hook = connectHook({ url: `http://127.0.0.1:${(moved.address() as AddressInfo).port}/hello`, timeoutMs: 2000, secret: 'hook-key' });
  try {
    const hello = { userId: 'u', deviceId: 'd' } as unknown as Parameters<typeof hook>[0];
    const err = await Promise.resolve(hook(hello, { remoteAddress: '127.0.0.1', transport: 'tcp' })).then(
      () => null,
      (e: ProtocolError) => e,
    );
    assert.ok(err instanceof ProtocolError, 'refused');
    assert.equal(err.reason, 'server-error', `retryable, not ${err.reason}: ${err.message}`);
    assert.match(err.message, /redirect.*308/);
    assert.equal(reached, 0, 'the redirect was not followed');
  } finally {
    moved.close();
    real.close();
  }
});

test('a hook call ends with its link: a device that sends HELLO and leaves does not keep the backend asked, so the pending-handshake bound holds the hook calls in flight too', async () => {
  // The backend never answers (down behind a load balancer that holds requests): each call waits its timeout.
  let open = 0;
  let asked = 0;
  const backend = http.createServer((req, res) => {
    open++;
    asked++;
    req.resume();
    res.once('close', () => open--);
  });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  const url = `http://127.0.0.1:${(backend.address() as AddressInfo).port}/hello`;
  const pending = 4;
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, limits: { maxPendingHandshakes: pending, maxPendingHandshakesPerSource: pending }, authenticate: connectHook({ url, timeoutMs: 10_000 }) });
  const port = (await gw.listen()).tcp!.port;
  try {
    // One at a time: never more than one handshake pending, so admission lets each in.
    for (let i = 0; i < 20; i++) {
      const p = new RawPeer(port);
      await p.connected;
      p.hello(`u${i}`);
      for (let w = 0; w < 100 && asked === i; w++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(asked, i + 1, 'the hook was called');
      p.socket.destroy();
      await p.closed;
    }
    for (let w = 0; w < 100 && open > pending; w++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(open <= pending, `${open} hook calls still in flight for links that are gone (pending handshakes bounded to ${pending})`);
    assert.equal(gw.connectionCount, 0);
  } finally {
    await gw.close();
    backend.closeAllConnections();
    backend.close();
  }
});

test('a hook timeout a timer cannot hold is refused when the hook is made: past 2^31 − 1 ms Node fires the timer after 1 ms, and every device got 4004 for good', async () => {
  for (const timeoutMs of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, MAX_TIMER_MS + 1, 3e9]) {
    assert.throws(() => connectHook({ url: 'http://127.0.0.1:1/hello', timeoutMs }), (e: LonglinkError) => e.code === 'LL_ERR_INVALID_OPTION' && /timeoutMs/.test(e.message), String(timeoutMs));
  }
  // The largest a timer holds still waits for the answer: a backend answering in 50 ms lets the device in.
  const backend = http.createServer((req, res) => {
    req.resume();
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ allow: true })), 50);
  });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  const url = `http://127.0.0.1:${(backend.address() as AddressInfo).port}/hello`;
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, authenticate: connectHook({ url, timeoutMs: MAX_TIMER_MS }) });
  const port = (await gw.listen()).tcp!.port;
  const c = new LonglinkClient({ url: `tcp://127.0.0.1:${port}`, userId: 'u', deviceId: 'd', reconnect: { enabled: false } });
  try {
    await c.connect();
    assert.ok(gw.connection('u', 'd'));
  } finally {
    c.close();
    await gw.close();
    backend.close();
  }
});
