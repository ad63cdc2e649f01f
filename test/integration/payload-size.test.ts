import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AdminServer } from '../../src/admin/admin-server.js';
import { relayChat } from '../../src/cli/chat-relay.js';
import { LonglinkClient, type CloseEvent } from '../../src/client/client.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { GENERATED_ID_SHAPE, payloadRoom } from '../../src/protocol/data-frame-size.js';
import { sleep } from '../helpers/procs.js';

// A message larger than a device accepts would close the device's link as
// frame-too-large (a close the SDK does not retry), and a queued one would do
// it again on every reconnect until it expired: one push could take a user's
// devices, or one broadcast a fleet, offline. Refused before it is queued.

const MAX = 64 * 1024;

async function setup() {
  const gw = new Gateway({ tcp: { port: 0 }, ws: { port: 0 } });
  const a = await gw.listen();
  const urls = { tcp: `tcp://127.0.0.1:${a.tcp!.port}`, ws: `ws://127.0.0.1:${a.ws!.port}/longlink` };
  return { gw, urls };
}

function device(url: string, userId: string, deviceId: string) {
  const c = new LonglinkClient({ url, userId, deviceId, reconnect: { enabled: false } });
  const got: Uint8Array[] = [];
  const closes: CloseEvent[] = [];
  c.on('message', (m) => got.push(m.payload));
  c.on('close', (e) => closes.push(e));
  return { c, got, closes };
}

test('a push that fits to the byte reaches TCP and WebSocket devices; a byte more is refused with LL_ERR_PAYLOAD_TOO_LARGE and nothing is queued; send and broadcast refuse it too', async () => {
  const { gw, urls } = await setup();
  const tcp = device(urls.tcp, 'u', 'tcp');
  const ws = device(urls.ws, 'u', 'ws');
  try {
    await tcp.c.connect();
    await ws.c.connect();
    const room = payloadRoom(MAX, GENERATED_ID_SHAPE.length);
    const r = await gw.push('u', new Uint8Array(room).fill(7), { waitMs: 5000 });
    assert.equal(r.delivered, 2);
    assert.deepEqual([tcp.got.map((p) => p.length), ws.got.map((p) => p.length)], [[room], [room]]);
    await assert.rejects(gw.push('u', new Uint8Array(room + 1)), { code: 'LL_ERR_PAYLOAD_TOO_LARGE' });
    // A longer id leaves less room: the whole frame is what is checked.
    await assert.rejects(gw.push('u', new Uint8Array(room), { id: `${GENERATED_ID_SHAPE}-and-more` }), { code: 'LL_ERR_PAYLOAD_TOO_LARGE' });
    assert.throws(() => gw.send('u', new Uint8Array(MAX)), { code: 'LL_ERR_PAYLOAD_TOO_LARGE' });
    assert.throws(() => gw.broadcast(new Uint8Array(MAX)), { code: 'LL_ERR_PAYLOAD_TOO_LARGE' });
    await assert.rejects(gw.broadcastAcrossCluster(new Uint8Array(MAX)), { code: 'LL_ERR_PAYLOAD_TOO_LARGE' });
    // Nothing of those was queued or written: an offline device comes back to nothing, and both links stay open.
    tcp.c.close();
    await sleep(100);
    await assert.rejects(gw.push('u', new Uint8Array(MAX), { deviceId: 'tcp' }), { code: 'LL_ERR_PAYLOAD_TOO_LARGE' });
    const back = device(urls.tcp, 'u', 'tcp');
    await back.c.connect();
    await sleep(200);
    assert.deepEqual(back.got, []);
    assert.equal(ws.c.state, 'open');
    assert.deepEqual(ws.closes, []);
    assert.equal(ws.got.length, 1);
    back.c.close();
  } finally {
    tcp.c.close();
    ws.c.close();
    await gw.close();
  }
});

test('the server API answers 413 LL_ERR_PAYLOAD_TOO_LARGE for a push or broadcast no device could take, before any of it is queued; in a batch, in its place', async () => {
  const { gw, urls } = await setup();
  const admin = new AdminServer(gw, { port: 0 });
  const port = (await admin.listen()).port;
  const d = device(urls.tcp, 'alice', 'phone');
  const post = async (op: string, body: unknown) => {
    const res = await fetch(`http://127.0.0.1:${port}/v1/${op}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as Record<string, any> }; // eslint-disable-line @typescript-eslint/no-explicit-any
  };
  try {
    await d.c.connect();
    const big = 'x'.repeat(MAX);
    for (const [op, body] of [['push', { user: 'alice', text: big }], ['push', { users: ['alice', 'bob'], text: big }], ['broadcast', { text: big }]] as const) {
      const r = await post(op, body);
      assert.equal(r.status, 413, `${op}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, 'LL_ERR_PAYLOAD_TOO_LARGE');
      assert.match(r.body.error.message, /at most \d+ bytes/);
    }
    const batch = await post('batch', { commands: [{ op: 'push', args: { user: 'alice', text: big } }, { op: 'push', args: { user: 'alice', text: 'small' } }] });
    assert.equal(batch.status, 200);
    assert.equal(batch.body.results[0].error.code, 'LL_ERR_PAYLOAD_TOO_LARGE');
    assert.equal(batch.body.results[1].status, 'ok');
    await sleep(200);
    assert.deepEqual(d.got.map((p) => Buffer.from(p).toString()), ['small'], 'only the one that fits');
    assert.equal(d.c.state, 'open');
  } finally {
    d.c.close();
    await admin.close();
    await gw.close();
  }
});

test('the chat relay does not pass on a message that no longer fits once prefixed with its sender: the sender is told, the recipient stays connected', async () => {
  const { gw, urls } = await setup();
  const errors: unknown[] = [];
  relayChat(gw, (e) => errors.push(e));
  const alice = device(urls.tcp, 'alice', 'phone');
  const bob = device(urls.ws, 'bob', 'laptop');
  try {
    await alice.c.connect();
    await bob.c.connect();
    // As long as alice may send: her frame fits, the relayed one (with "alice: ") does not.
    const text = `@bob ${'y'.repeat(payloadRoom(MAX, GENERATED_ID_SHAPE.length) - 6)}`;
    alice.c.send(text);
    alice.c.send('@bob hello');
    const end = Date.now() + 5000;
    while (Date.now() < end && (alice.got.length < 1 || bob.got.length < 1)) await sleep(20);
    assert.deepEqual(bob.got.map((p) => Buffer.from(p).toString().slice(0, 20)), ['alice: hello'], 'only the one that fits');
    assert.match(Buffer.from(alice.got[0]).toString(), /^\(not relayed: a payload of \d+ bytes does not fit/);
    assert.equal(bob.c.state, 'open');
    assert.deepEqual(errors, []);
  } finally {
    alice.c.close();
    bob.c.close();
    await gw.close();
  }
});

test("a client's send() of a message its gateway would refuse as frame-too-large throws LL_ERR_PAYLOAD_TOO_LARGE, keeps nothing to re-send, and the link stays up", async () => {
  const { gw, urls } = await setup();
  const got: number[] = [];
  gw.on('message', (m) => got.push(m.payload.length));
  const d = device(urls.tcp, 'u', 'd');
  try {
    await d.c.connect();
    assert.throws(() => d.c.send(new Uint8Array(MAX)), { code: 'LL_ERR_PAYLOAD_TOO_LARGE' });
    const fits = payloadRoom(MAX, 'my-id'.length);
    assert.throws(() => d.c.send(new Uint8Array(fits + 1), { id: 'my-id' }), { code: 'LL_ERR_PAYLOAD_TOO_LARGE' });
    d.c.send(new Uint8Array(fits), { id: 'my-id' });
    d.c.send('after');
    const end = Date.now() + 5000;
    while (Date.now() < end && got.length < 2) await sleep(20);
    assert.deepEqual(got, [fits, 5]);
    assert.equal(d.c.state, 'open');
    assert.deepEqual(d.closes, []);
  } finally {
    d.c.close();
    await gw.close();
  }
});

test("a message far above a WebSocket device's maxFrameBytes (ws refuses it with 1009 before the SDK sees it) ends the link as frame-too-large, not retried, as on TCP: not a reconnect loop that meets it again on every resume", async () => {
  const { gw, urls } = await setup();
  const mk = (url: string, deviceId: string) => {
    const c = new LonglinkClient({ url, userId: 'u', deviceId, maxFrameBytes: 1024, reconnect: { initialDelayMs: 20, maxDelayMs: 20, minDelayMs: 20 } });
    const closes: CloseEvent[] = [];
    c.on('close', (e) => closes.push(e));
    return { c, closes };
  };
  const tcp = mk(urls.tcp, 'tcp');
  const ws = mk(urls.ws, 'ws');
  try {
    await tcp.c.connect();
    await ws.c.connect();
    // Over 2 × 1,024: the Node client's ws refuses it itself; the TCP decoder by its length prefix.
    await gw.push('u', new Uint8Array(4000).fill(1), { waitMs: 200 }).catch(() => undefined);
    await sleep(500);
    assert.deepEqual(
      tcp.closes.map((e) => [e.code, e.willReconnect]),
      [[4500, false]],
      'TCP: frame-too-large, final',
    );
    assert.deepEqual(
      ws.closes.map((e) => [e.code, e.willReconnect]),
      [[4500, false]],
      'WebSocket: the same, not a transport error retried for ever',
    );
  } finally {
    tcp.c.close();
    ws.c.close();
    await gw.close();
  }
});
