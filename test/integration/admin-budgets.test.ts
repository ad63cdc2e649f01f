import assert from 'node:assert/strict';
import net from 'node:net';
import { createServer, request } from 'node:http';
import { test } from 'node:test';
import { EventEmitter } from 'node:events';
import { ADMIN_HEADERS_TIMEOUT_MS, ADMIN_SERVER_OPTIONS, AdminServer, limitAdminSockets, MAX_ADMIN_SOCKETS, MAX_ADMIN_SOCKETS_PER_ADDRESS, MAX_API_IN_FLIGHT, MAX_EVENT_STREAMS } from '../../src/admin/admin-server.js';
import { MAX_BROADCASTS_IN_PROGRESS, MAX_BROADCASTS_PER_REQUEST, MAX_USERS_PER_REQUEST, ServerApi } from '../../src/admin/server-api.js';
import { adminSocketBudget, openFileLimit } from '../../src/gateway/file-limit.js';
import { FANOUT_CHUNK, FANOUT_MAX_QUEUED } from '../../src/gateway/fan-out.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { sleep } from '../helpers/procs.js';
import { flush, memoryLinkPair, type MemoryLink } from '../helpers/memory-link.js';
import { FrameType, PROTOCOL_VERSION } from '../../src/protocol/frames.js';

// What a caller of the admin port can make it hold: live event streams, server-API requests in
// flight, and pushes per request. Each has a bound, a coded refusal, and room again once freed.

async function setup() {
  const gw = new Gateway({ tcp: false, ws: false });
  await gw.listen();
  const admin = new AdminServer(gw, { port: 0 });
  const port = (await admin.listen()).port;
  return { gw, admin, port, close: async () => (await admin.close(), await gw.close()) };
}

/** A raw socket that sent `head` and holds the connection open. */
function raw(port: number, head: string): Promise<net.Socket & { text: () => string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(head);
      resolve(Object.assign(s, { text: () => got }));
    });
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (d) => (got += d));
    s.on('error', reject);
  });
}

test(`at most ${MAX_EVENT_STREAMS} live event streams: the next gets 429 LL_ERR_TOO_MANY_REQUESTS with Retry-After, and a closed one frees its place`, async () => {
  const { port, close } = await setup();
  const streams: (net.Socket & { text: () => string })[] = [];
  try {
    for (let i = 0; i < MAX_EVENT_STREAMS; i++) streams.push(await raw(port, 'GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'));
    for (let i = 0; i < 200 && !streams.every((s) => s.text().includes('event: snapshot')); i++) await sleep(10);
    assert.ok(streams.every((s) => s.text().startsWith('HTTP/1.1 200')), 'all open');
    const over = await fetch(`http://127.0.0.1:${port}/api/events`);
    assert.equal(over.status, 429);
    assert.equal(over.headers.get('retry-after'), '1');
    assert.equal(((await over.json()) as { error: { code: string } }).error.code, 'LL_ERR_TOO_MANY_REQUESTS');
    streams.pop()!.destroy();
    await sleep(100);
    const again = await raw(port, 'GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    streams.push(again);
    for (let i = 0; i < 100 && !again.text().includes('event: snapshot'); i++) await sleep(10);
    assert.ok(again.text().startsWith('HTTP/1.1 200'), 'room again');
  } finally {
    for (const s of streams) s.destroy();
    await close();
  }
});

test(`at most ${MAX_API_IN_FLIGHT} server-API requests in flight: the next gets 429; requests that go away free their places`, async () => {
  const { port, close } = await setup();
  const slow: net.Socket[] = [];
  try {
    // Requests whose bodies never come: each is in flight until the socket goes (or requestTimeout).
    for (let i = 0; i < MAX_API_IN_FLIGHT; i++) slow.push(await raw(port, 'POST /v1/presence HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n'));
    await sleep(200);
    const post = () => fetch(`http://127.0.0.1:${port}/v1/presence`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ users: ['u'] }) });
    const over = await post();
    assert.equal(over.status, 429);
    assert.equal(((await over.json()) as { error: { code: string } }).error.code, 'LL_ERR_TOO_MANY_REQUESTS');
    for (const s of slow.splice(0)) s.destroy();
    let ok = 0;
    for (let i = 0; i < 100 && ok !== 200; i++) {
      await sleep(20);
      ok = (await post()).status;
    }
    assert.equal(ok, 200, 'served again once the stalled requests went');
  } finally {
    for (const s of slow) s.destroy();
    await close();
  }
});

test(`a batch may push to or read the presence of at most ${MAX_USERS_PER_REQUEST} users in all: more is refused whole with 400, naming the count`, async () => {
  const { port, close } = await setup();
  try {
    const users = Array.from({ length: 1000 }, (_, i) => `u${i}`);
    const commands = Array.from({ length: 11 }, () => ({ op: 'push', args: { users, text: 'x' } }));
    const r = await fetch(`http://127.0.0.1:${port}/v1/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ commands }) });
    assert.equal(r.status, 400);
    const e = ((await r.json()) as { error: { code: string; message: string } }).error;
    assert.equal(e.code, 'LL_ERR_BAD_REQUEST');
    assert.match(e.message, /11000 users/);
    const fits = await fetch(`http://127.0.0.1:${port}/v1/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ commands: commands.slice(0, 10) }) });
    assert.equal(fits.status, 200);
    const reads = Array.from({ length: 11 }, () => ({ op: 'presence', args: { users } }));
    const r2 = await fetch(`http://127.0.0.1:${port}/v1/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ commands: reads }) });
    assert.equal(r2.status, 400, 'presence reads count too');
  } finally {
    await close();
  }
});

test(`a request may make at most ${MAX_BROADCASTS_PER_REQUEST} broadcasts: more is refused whole with 413 LL_ERR_PAYLOAD_TOO_LARGE, before any is written`, async () => {
  const { gw, port, close } = await setup();
  const [server, client] = memoryLinkPair();
  try {
    gw.accept(server);
    client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u', deviceId: 'd' });
    for (let i = 0; i < 100 && gw.onlineDevices < 1; i++) await flush();
    // Each broadcast is a write to every connection: 1,000 in one 50 KB batch over 1,710 devices held the event loop 4.48 s.
    const batch = (n: number) => fetch(`http://127.0.0.1:${port}/v1/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ commands: Array.from({ length: n }, () => ({ op: 'broadcast', args: { text: 'x' } })) }) });
    const r = await batch(1000);
    assert.equal(r.status, 413, 'refused, not 1000 broadcasts');
    const e = ((await r.json()) as { error: { code: string; message: string } }).error;
    assert.equal(e.code, 'LL_ERR_PAYLOAD_TOO_LARGE');
    assert.match(e.message, /1000 broadcasts/);
    assert.equal(client.received.filter((f) => f.type === FrameType.DATA).length, 0, 'none of them written');
    const fits = await batch(MAX_BROADCASTS_PER_REQUEST);
    assert.equal(fits.status, 200);
    assert.equal(client.received.filter((f) => f.type === FrameType.DATA).length, MAX_BROADCASTS_PER_REQUEST);
  } finally {
    await close();
  }
});

test(`at most ${MAX_BROADCASTS_IN_PROGRESS} server-API broadcasts in progress: the next gets 429 LL_ERR_TOO_MANY_REQUESTS, room again once one is written`, async () => {
  const pending: (() => void)[] = [];
  const fake = {
    closed: false,
    options: { maxFrameBytes: 65_536 },
    broadcastAcrossCluster: () => new Promise((r) => pending.push(() => r({ here: 1, published: false }))),
  };
  const api = new ServerApi(fake as never);
  const running = Array.from({ length: MAX_BROADCASTS_IN_PROGRESS }, () => api.run('broadcast', { text: 'x' }));
  const over = [api.run('broadcast', { text: 'x' }), api.run('batch', { commands: [{ op: 'broadcast', args: { text: 'x' } }] })];
  for (const o of over) o.catch(() => {});
  await flush();
  assert.equal(pending.length, MAX_BROADCASTS_IN_PROGRESS, 'the ones over the budget were not started');
  await assert.rejects(over[0], { status: 429, code: 'LL_ERR_TOO_MANY_REQUESTS' });
  await assert.rejects(over[1], { status: 429, code: 'LL_ERR_TOO_MANY_REQUESTS' }, 'in a batch too');
  pending.shift()!();
  await running[0];
  const next = api.run('broadcast', { text: 'x' });
  for (let i = 0; i < 10 && pending.length < MAX_BROADCASTS_IN_PROGRESS; i++) await flush();
  assert.equal(pending.length, MAX_BROADCASTS_IN_PROGRESS, 'room again');
  for (const done of pending.splice(0)) done();
  await Promise.all([...running, next]);
});

test('a broadcast refused because the fan-out queue is full (broadcasts from other nodes count too) is a 429 LL_ERR_TOO_MANY_REQUESTS with Retry-After, as the other 429s, with nothing written', async () => {
  const devices = FANOUT_CHUNK + 500; // each broadcast stays queued past the first chunk's turn
  const gw = new Gateway({ tcp: false, ws: false, limits: { handshakesPerSecond: 0, maxPendingHandshakes: 0, maxPendingHandshakesPerSource: 0, maxConnectionsPerSource: 0 } });
  await gw.listen();
  const admin = new AdminServer(gw, { port: 0 });
  const port = (await admin.listen()).port;
  const clients: MemoryLink[] = [];
  for (let i = 0; i < devices; i++) {
    const [server, client] = memoryLinkPair();
    gw.accept(server);
    client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: `u${i}`, deviceId: 'd' });
    clients.push(client);
  }
  for (let i = 0; i < 1000 && gw.onlineDevices < devices; i++) await flush();
  // Kept full each turn while the request is out (the queue drains a chunk a turn).
  let filling = true;
  let refused = 0;
  const fill = () => {
    for (let i = 0; i < FANOUT_MAX_QUEUED + 1; i++) {
      try {
        gw.broadcast('filler');
      } catch (err) {
        assert.equal((err as { code?: string }).code, 'LL_ERR_QUEUE_FULL');
        refused++;
        break;
      }
    }
    if (filling) setImmediate(fill);
  };
  try {
    fill();
    assert.ok(refused > 0, 'the queue is full');
    const r = await fetch(`http://127.0.0.1:${port}/v1/broadcast`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: 'api' }) });
    filling = false;
    assert.equal(r.status, 429);
    assert.equal(r.headers.get('retry-after'), '1', 'Retry-After as the other 429s');
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'LL_ERR_TOO_MANY_REQUESTS');
    const texts = (c: MemoryLink) => c.received.filter((f) => f.type === FrameType.DATA).map((f) => Buffer.from((f as { payload: Uint8Array }).payload).toString());
    assert.ok(!texts(clients[0]).includes('api'), 'nothing written');
    // The API's document says so too (a caller reading it learns why a 429 may come with no broadcast of its own out).
    const doc = (await (await fetch(`http://127.0.0.1:${port}/v1/openapi.json`)).json()) as { paths: Record<string, { post: { responses: Record<string, { description: string }> } }> };
    assert.match(doc.paths['/v1/broadcast'].post.responses['429'].description, /fan-out queue is full/, 'the OpenAPI 429 names the full fan-out queue');
  } finally {
    filling = false;
    await admin.close();
    await gw.close();
  }
});

test('the live feed streams at most 100 online and offline notices between two ticks; the rest are counted in the next tick', async () => {
  const { gw, port, close } = await setup();
  const s = await raw(port, 'GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  try {
    for (let i = 0; i < 100 && !s.text().includes('event: snapshot'); i++) await sleep(10);
    // 300 devices come online at once (a connect loop), in far less than a tick.
    for (let i = 0; i < 300; i++) {
      const [server, client] = memoryLinkPair();
      gw.accept(server);
      client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: `u${i}`, deviceId: 'd' });
    }
    await flush();
    let tick = '';
    for (let i = 0; i < 300 && !(tick = s.text().split('event: tick').slice(1).find((t) => /"noticesSkipped":[1-9]/.test(t)) ?? ''); i++) await sleep(10);
    const streamed = s.text().split('event: online').length - 1;
    const perWindow = s.text().split('event: tick').map((w) => w.split('event: online').length - 1);
    assert.ok(perWindow.every((n) => n <= 100), `at most 100 notices between two ticks (${perWindow})`);
    const skipped = Number(/"noticesSkipped":(\d+)/.exec(tick)?.[1]);
    assert.ok(streamed + skipped >= 300, `the rest counted in the tick: ${streamed} streamed, ${skipped} skipped`);
    assert.match(tick, /"online":300/, 'the tick counts every device');
  } finally {
    s.destroy();
    await close();
  }
});

/** Sockets that connect and send nothing, from `localAddress`. */
async function silent(port: number, n: number, localAddress = '127.0.0.1'): Promise<net.Socket[]> {
  const out: net.Socket[] = [];
  for (let i = 0; i < n; i++) {
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    s.on('error', () => {});
    await new Promise((r) => s.once('connect', r));
    out.push(s);
  }
  return out;
}

/** GET /api/overview from `localAddress`: its status, or 'reset' when the socket is closed without an answer. */
function overviewFrom(port: number, localAddress: string): Promise<number | 'reset'> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/api/overview', localAddress, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', () => resolve('reset'));
    req.end();
  });
}

test(`at most ${MAX_ADMIN_SOCKETS_PER_ADDRESS} admin sockets from one address and ${MAX_ADMIN_SOCKETS} in all: more are closed at accept, other addresses are still served`, async () => {
  const { port, close } = await setup();
  const held: net.Socket[] = [];
  try {
    // Silent sockets: before, each was held for ever, a file descriptor the devices' ports need.
    held.push(...(await silent(port, MAX_ADMIN_SOCKETS_PER_ADDRESS, '127.0.0.2')));
    const [over] = await silent(port, 1, '127.0.0.2');
    for (let i = 0; i < 100 && !over.closed; i++) await sleep(10);
    assert.ok(over.closed, 'one past the per-address bound is closed at once');
    assert.equal(await overviewFrom(port, '127.0.0.3'), 200, 'another address is served');
    // Fill the rest from other addresses: the whole port holds MAX_ADMIN_SOCKETS.
    let a = 3;
    while (held.length < MAX_ADMIN_SOCKETS) held.push(...(await silent(port, Math.min(MAX_ADMIN_SOCKETS_PER_ADDRESS, MAX_ADMIN_SOCKETS - held.length), `127.0.0.${a++}`)));
    await sleep(100);
    assert.equal(await overviewFrom(port, `127.0.0.${a}`), 'reset', 'the port is full');
    for (const s of held.splice(0, 10)) s.destroy();
    let status: number | 'reset' = 'reset';
    for (let i = 0; i < 100 && status !== 200; i++) {
      await sleep(20);
      status = await overviewFrom(port, `127.0.0.${a}`);
    }
    assert.equal(status, 200, 'room again once sockets go');
  } finally {
    for (const s of held) s.destroy();
    await close();
  }
});

test('the admin port\'s per-address socket bound counts an IPv6 peer by its /64 and an IPv4-mapped one as its IPv4: one laptop has 2^64 addresses of its own', () => {
  const server = createServer(ADMIN_SERVER_OPTIONS);
  limitAdminSockets(server);
  const onConnection = server.listeners('connection').at(-1) as (s: unknown) => void;
  const perAddress = Math.min(MAX_ADMIN_SOCKETS_PER_ADDRESS, adminSocketBudget(openFileLimit()));
  const open = (remoteAddress: string) => {
    const s = Object.assign(new EventEmitter(), { remoteAddress, destroyed: false, destroy: () => void (s.destroyed = true), setTimeout: () => {} });
    onConnection(s);
    return s;
  };
  // Each socket from another address of the same /64.
  const held = Array.from({ length: perAddress }, (_, i) => open(`2001:db8:1:2::${(i + 1).toString(16)}`));
  assert.ok(held.every((s) => !s.destroyed));
  assert.ok(open('2001:db8:1:2:ffff:ffff:ffff:ffff').destroyed, 'one past the bound, from yet another address of the /64, is closed');
  assert.ok(!open('2001:db8:1:3::1').destroyed, 'the next /64 is another source');
  held[0].emit('close');
  assert.ok(!open('2001:db8:1:2::abcd').destroyed, 'room again once one goes');
  for (let i = 0; i < perAddress; i++) open(i % 2 ? '198.51.100.7' : '::ffff:198.51.100.7');
  assert.ok(open('198.51.100.7').destroyed, 'an IPv4-mapped address counts as its IPv4');
});

test('a socket that never sends a request is closed once the headers timeout passes (before, it was held for ever)', async () => {
  const { port, close } = await setup();
  const [idle] = await silent(port, 1);
  const started = Date.now();
  try {
    for (let i = 0; i < (ADMIN_HEADERS_TIMEOUT_MS + 3000) / 50 && !idle.closed; i++) await sleep(50);
    assert.ok(idle.closed, 'closed');
    assert.ok(Date.now() - started >= ADMIN_HEADERS_TIMEOUT_MS - 500, 'not before its time');
    // A request that waits in silence (a push waiting for its devices) is not cut by it: the request cleared it.
    const r = await overviewFrom(port, '127.0.0.1');
    assert.equal(r, 200);
  } finally {
    idle.destroy();
    await close();
  }
});

test('a request begun late, then dripped, is cut one headers timeout after the accept (not one after its first byte)', async () => {
  // Node's headersTimeout counts from a request's first byte: a socket silent for most of the
  // deadline, then sending its headers a byte at a time, was held for about two.
  const { port, close } = await setup();
  const [s] = await silent(port, 1);
  const t0 = performance.now();
  const closed = new Promise<number>((r) => s.once('close', () => r(performance.now() - t0)));
  const head = `GET /api/overview HTTP/1.1\r\nHost: localhost\r\nX-Pad: ${'a'.repeat(400)}\r\n\r\n`;
  let drip: NodeJS.Timeout | undefined;
  try {
    await sleep(ADMIN_HEADERS_TIMEOUT_MS - 1500);
    let i = 0;
    drip = setInterval(() => s.destroyed || s.write(head[i++ % head.length]), 200);
    const closeAt = await Promise.race([closed, sleep(ADMIN_HEADERS_TIMEOUT_MS + 3000).then(() => Infinity)]);
    assert.ok(closeAt >= ADMIN_HEADERS_TIMEOUT_MS - 500 && closeAt < ADMIN_HEADERS_TIMEOUT_MS + 1000, `closed after ${closeAt.toFixed(0)} ms (deadline ${ADMIN_HEADERS_TIMEOUT_MS} from accept)`);
    // A request whose headers arrive in time is not cut by it, however long its answer takes.
    assert.equal(await overviewFrom(port, '127.0.0.1'), 200);
  } finally {
    clearInterval(drip);
    s.destroy();
    await close();
  }
});

test('a kept-alive socket\'s next request, begun late, then dripped, is cut one headers timeout after the answer before it', async () => {
  // The accept's deadline covered the first request only: after an answer, Node's keep-alive timeout is
  // an idle one (reset by every byte) and its headersTimeout counts from the next request's first byte,
  // so a socket idle for most of the keep-alive, then dripping headers, was held about 15 s a request.
  const { port, close } = await setup();
  const s = await raw(port, 'GET /api/overview HTTP/1.1\r\nHost: localhost\r\n\r\n');
  const closed = new Promise<number>((r) => s.once('close', () => r(performance.now())));
  const head = `GET /api/overview HTTP/1.1\r\nHost: localhost\r\nX-Pad: ${'a'.repeat(400)}\r\n\r\n`;
  let drip: NodeJS.Timeout | undefined;
  try {
    for (let i = 0; i < 200 && !s.text().endsWith('\r\n0\r\n\r\n'); i++) await sleep(10);
    assert.match(s.text(), /^HTTP\/1\.1 200/, 'the first request answered');
    const answered = performance.now();
    await sleep(4000); // under Node's keep-alive timeout (5 s)
    let i = 0;
    drip = setInterval(() => s.destroyed || s.write(head[i++ % head.length]), 200);
    const closeAt = (await Promise.race([closed, sleep(ADMIN_HEADERS_TIMEOUT_MS + 3000).then(() => Infinity)])) - answered;
    assert.ok(closeAt < ADMIN_HEADERS_TIMEOUT_MS + 1000, `closed ${closeAt.toFixed(0)} ms after the first answer (deadline ${ADMIN_HEADERS_TIMEOUT_MS})`);
    assert.equal(s.text().match(/HTTP\/1\.1/g)?.length, 1, 'the dripped request was never answered');
  } finally {
    clearInterval(drip);
    s.destroy();
    await close();
  }
});

test('a kept-alive socket that sends its next request whole in time is served, however long it waited', async () => {
  const { port, close } = await setup();
  const get = 'GET /api/overview HTTP/1.1\r\nHost: localhost\r\n\r\n';
  const s = await raw(port, get);
  try {
    for (let i = 0; i < 200 && !s.text().endsWith('\r\n0\r\n\r\n'); i++) await sleep(10);
    await sleep(3000);
    s.write(get + get); // pipelined: the second is read while the first is answered
    for (let i = 0; i < 300 && (s.text().match(/HTTP\/1\.1 200/g)?.length ?? 0) < 3; i++) await sleep(10);
    assert.equal(s.text().match(/HTTP\/1\.1 200/g)?.length, 3, 'three answers');
    assert.ok(!s.destroyed, 'still open');
  } finally {
    s.destroy();
    await close();
  }
});

test('a json payload nested too deeply to encode is a 400 naming json (was a 500, and in a batch a store-unavailable 503)', async () => {
  const { port, close } = await setup();
  const post = async (op: string, body: string) => {
    const r = await fetch(`http://127.0.0.1:${port}/v1/${op}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    return { status: r.status, body: (await r.json()) as { error?: { code: string; message: string }; results?: { error?: { code: string; message: string } }[] } };
  };
  try {
    // 400 KB: JSON.parse reads it, JSON.stringify's recursion does not.
    const deep = '['.repeat(200_000) + ']'.repeat(200_000);
    for (const [op, body] of [['push', `{"user":"u","json":${deep}}`], ['broadcast', `{"json":${deep}}`]]) {
      const r = await post(op, body);
      assert.equal(r.status, 400, op);
      assert.equal(r.body.error?.code, 'LL_ERR_BAD_REQUEST', op);
      assert.match(r.body.error!.message, /^json: /, op);
    }
    const b = await post('batch', `{"commands":[{"op":"push","args":{"user":"u","json":${deep}}},{"op":"presence","args":{"users":["u"]}}]}`);
    assert.equal(b.status, 200);
    assert.equal(b.body.results?.[0].error?.code, 'LL_ERR_BAD_REQUEST');
    assert.equal(b.body.results?.[1].error, undefined, 'the other command is answered');
  } finally {
    await close();
  }
});

test('presence reads each user once per request and lists at most MAX_PRESENCE_DEVICES devices in one answer: a user named 1,000 times was read and listed 1,000 times', async () => {
  const { MAX_PRESENCE_DEVICES } = await import('../../src/admin/server-api.js');
  const { gw, port, close } = await setup();
  const store = gw.options.store;
  // One user with 100 devices online (one laptop's connections, or anyone's with the user's login).
  for (let i = 0; i < 100; i++) await store.setOnline({ userId: 'v', deviceId: `device-${i}`, connectionId: `c${i}`, nodeId: gw.options.nodeId, transport: 'tcp', since: Date.now(), clientInfo: {} });
  const reads = new Map<string, number>();
  const devices = store.devices.bind(store);
  store.devices = (u: string) => (reads.set(u, (reads.get(u) ?? 0) + 1), devices(u));
  const post = async (op: string, body: unknown) => {
    const r = await fetch(`http://127.0.0.1:${port}/v1/${op}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const text = await r.text();
    return { status: r.status, bytes: text.length, body: JSON.parse(text) as { error?: { code: string; message: string }; users?: { user: string; devices: unknown[] }[]; results?: { error?: { code: string } }[] } };
  };
  try {
    // 5 KB asked for 100,000 device entries (9 MB of JSON); ten such commands in a batch, 90 MB, and at
    // 1,000 devices a user over 2 GB of heap, 27 s of the event loop and a 200 with an empty body.
    const over = await post('presence', { users: Array(1000).fill('v') });
    assert.equal(over.status, 413, `refused, not ${over.bytes} bytes of answer`);
    assert.equal(over.body.error?.code, 'LL_ERR_PAYLOAD_TOO_LARGE');
    assert.equal(reads.get('v'), 1, 'the user was read once, not once per time named');
    const batch = await post('batch', { commands: Array.from({ length: 10 }, () => ({ op: 'presence', args: { users: Array(Math.floor(MAX_PRESENCE_DEVICES / 100 / 10)).fill('v') } })).concat([{ op: 'presence', args: { users: ['v'] } }]) });
    assert.equal(batch.status, 200);
    assert.equal(batch.body.results!.filter((r) => r.error?.code === 'LL_ERR_PAYLOAD_TOO_LARGE').length, 1, 'the request\'s answer as a whole is bounded: the command past it is refused in its place');
    const fits = await post('presence', { users: ['v', 'nobody', 'v'] });
    assert.equal(fits.status, 200);
    assert.deepEqual(fits.body.users!.map((u) => [u.user, u.devices.length]), [['v', 100], ['nobody', 0], ['v', 100]]);
  } finally {
    await close();
  }
});
