import assert from 'node:assert/strict';
import { request } from 'node:http';
import { test } from 'node:test';
import { AdminServer } from '../../src/admin/admin-server.js';
import { Gateway, type FaultEvent, type RefusedEvent } from '../../src/gateway/gateway.js';
import { CloseCodes, LonglinkError, ProtocolError } from '../../src/protocol/errors.js';
import type { HelloFrame } from '../../src/protocol/frames.js';
import { RawPeer } from '../helpers/raw-peer.js';

// Every refusal a device meets before it is online, as an operator sees it: on the real admin
// port's /metrics (and the gateway's events), whether at accept or in the handshake.

function metrics(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve(text));
    })
      .on('error', reject)
      .end();
  });
}

/** The value of one sample line (labels exactly as written), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Refuses as the HELLO's userId says: each of the authenticator's ways to refuse or fail. */
async function authenticate(hello: HelloFrame) {
  switch (hello.userId) {
    case 'bad':
      throw new ProtocolError('auth-failed', 'wrong password');
    case 'none':
      throw new LonglinkError('LL_ERR_AUTH_MISSING', 'no token');
    case 'old':
      throw new LonglinkError('LL_ERR_AUTH_EXPIRED', 'token expired');
    case 'down':
      throw new Error('user database unreachable');
    default:
      return { userId: hello.userId, deviceId: hello.deviceId };
  }
}

test('every handshake-time refusal is counted on /metrics: too-many-devices as a refusal, auth refusals as protocol errors, a failing authenticator as an auth fault', async () => {
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, wheelTickMs: 10, authenticate, limits: { maxOnlineDevicesPerUser: 1 } });
  const refused: RefusedEvent[] = [];
  const faults: FaultEvent[] = [];
  gw.on('refused', (e) => refused.push(e));
  gw.on('fault', (e) => faults.push(e));
  const tcp = (await gw.listen()).tcp!.port;
  const admin = new AdminServer(gw, { port: 0 });
  const port = (await admin.listen()).port;
  const peers: RawPeer[] = [];
  const attempt = async (userId: string, deviceId: string) => {
    const p = new RawPeer(tcp);
    peers.push(p);
    p.hello(userId, deviceId);
    await Promise.race([p.closed, p.welcome()]);
    return p;
  };
  try {
    await attempt('u', 'd1');
    const second = await attempt('u', 'd2');
    await second.closed;
    assert.equal(second.closeCode, CloseCodes['too-many-devices']);
    const codes: Record<string, number | undefined> = {};
    for (const u of ['bad', 'none', 'old', 'down']) {
      const p = await attempt(u, 'd');
      await p.closed;
      codes[u] = p.closeCode;
    }
    assert.deepEqual(codes, { bad: CloseCodes['auth-failed'], none: CloseCodes['auth-missing'], old: CloseCodes['auth-expired'], down: CloseCodes['server-error'] });

    assert.equal(refused.length, 1, 'the device refused in the handshake is a `refused` event');
    assert.equal(refused[0].reason, 'too-many-devices');
    assert.equal(refused[0].transport, 'tcp');
    assert.ok(refused[0].retryAfterMs === second.goaway?.reconnectAfterMs, 'the event carries the hint the device was given');
    assert.deepEqual([refused[0].userId, refused[0].deviceId], ['u', 'd2']);
    // (A config fault may come from listen(): the connection limit adjusted to the file limit.)
    assert.deepEqual(faults.filter((f) => f.kind !== 'config').map((f) => [f.kind, f.op]), [['auth', 'authenticate']]);

    const m = await metrics(port);
    assert.equal(sample(m, 'longlink_refused_total{reason="too-many-devices"}'), 1, 'a handshake refused by maxOnlineDevicesPerUser is counted');
    assert.equal(sample(m, 'longlink_protocol_errors_total{code="LL_ERR_AUTH_FAILED"}'), 1);
    assert.equal(sample(m, 'longlink_protocol_errors_total{code="LL_ERR_AUTH_MISSING"}'), 1);
    assert.equal(sample(m, 'longlink_protocol_errors_total{code="LL_ERR_AUTH_EXPIRED"}'), 1);
    assert.equal(sample(m, 'longlink_faults_total{kind="auth"}'), 1, 'an authenticator that failed (4004 to the device) is counted');
    assert.equal(sample(m, 'longlink_faults_total{kind="store"}'), 0);
    assert.equal(sample(m, 'longlink_disconnects_total{reason="too-many-devices"}'), undefined, 'never online: no disconnect');
  } finally {
    for (const p of peers) p.destroy();
    await admin.close();
    await gw.close();
  }
});

test('refusals at accept are counted on /metrics by reason: too-many-connections and rate-limited', async () => {
  const gw = new Gateway({ tcp: { port: 0 }, ws: false, wheelTickMs: 10, limits: { maxConnections: 1, handshakesPerSecond: 1, handshakeBurst: 1 } });
  const tcp = (await gw.listen()).tcp!.port;
  const admin = new AdminServer(gw, { port: 0 });
  const port = (await admin.listen()).port;
  const peers: RawPeer[] = [];
  try {
    const held = new RawPeer(tcp);
    peers.push(held);
    held.hello('u', 'd');
    await held.welcome();
    const full = new RawPeer(tcp);
    peers.push(full);
    await full.closed;
    assert.equal(full.closeCode, CloseCodes['too-many-connections']);
    held.destroy();
    await held.closed;
    for (let i = 0; i < 100 && gw.connectionCounts().tcp > 0; i++) await new Promise((r) => setTimeout(r, 10));
    // The burst of one was spent by the first: the next ones, a second apart at most, find the bucket empty.
    const more = Array.from({ length: 3 }, () => new RawPeer(tcp));
    peers.push(...more);
    await Promise.race([Promise.all(more.map((p) => p.closed)), new Promise((r) => setTimeout(r, 500))]);
    const m = await metrics(port);
    assert.equal(sample(m, 'longlink_refused_total{reason="too-many-connections"}'), 1 + more.filter((p) => p.closeCode === CloseCodes['too-many-connections']).length);
    assert.ok(sample(m, 'longlink_refused_total{reason="rate-limited"}')! >= 1, 'a refusal by the handshake rate is counted');
    assert.equal(sample(m, 'longlink_refused_total{reason="rate-limited"}'), more.filter((p) => p.closeCode === CloseCodes['rate-limited']).length);
  } finally {
    for (const p of peers) p.destroy();
    await admin.close();
    await gw.close();
  }
});
