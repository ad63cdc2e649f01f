import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { newToken } from '../../src/gateway/ids.js';
import type { Authenticate } from '../../src/gateway/options.js';
import { MemoryStore } from '../../src/gateway/stores/memory-store.js';
import { CloseCodes, ProtocolError } from '../../src/protocol/errors.js';
import { FrameType, PROTOCOL_VERSION, type CloseFrame, type DataFrame, type HelloFrame, type WelcomeFrame } from '../../src/protocol/frames.js';
import { flush, memoryLinkPair, type MemoryLink } from '../helpers/memory-link.js';

// A resume token is a bearer secret: it must only ever resume the session of the identity the
// authenticator established, and a resume must go through the authenticator (and so a connect
// hook) like any HELLO. The authenticator here stands for a JWT one: the token names the user and
// the device ("user/device"), or only the user ("user/*": a user-wide token, any device).

const POLICY = { intervalMs: 1000, minIntervalMs: 200, maxIntervalMs: 10_000, missBudget: 2, graceMs: 500 };

const tokenAuth =
  (refuse: (hello: HelloFrame) => boolean = () => false): Authenticate =>
  (hello) => {
    if (!hello.token) throw new ProtocolError('auth-missing', 'no token');
    if (refuse(hello)) throw new ProtocolError('auth-failed', 'refused');
    const [userId, device] = hello.token.split('/');
    if (hello.userId !== userId) throw new ProtocolError('auth-failed', 'HELLO names another user than its token');
    if (device !== '*' && hello.deviceId !== device) throw new ProtocolError('auth-failed', 'HELLO names another device than its token');
    return { userId, deviceId: hello.deviceId };
  };

function gateway(clock: ManualClock, authenticate: Authenticate) {
  return new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock, wallClock: clock, store: new MemoryStore(), handshakeTimeoutMs: 3000, authenticate });
}
function connect(gw: Gateway, hello: Partial<HelloFrame> & { userId: string; deviceId: string; token: string }): MemoryLink {
  const [server, client] = memoryLinkPair();
  gw.accept(server);
  client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, ...hello });
  return client;
}
const welcome = (c: MemoryLink) => c.received.find((f): f is WelcomeFrame => f.type === FrameType.WELCOME);
const data = (c: MemoryLink) => c.received.filter((f): f is DataFrame => f.type === FrameType.DATA).map((f) => Buffer.from(f.payload).toString());
const closed = (c: MemoryLink) => c.received.find((f): f is CloseFrame => f.type === FrameType.CLOSE);

/** Alice's phone opens a session, goes away, and a message is queued for it. */
async function aliceAway(gw: Gateway) {
  const a = connect(gw, { userId: 'alice', deviceId: 'phone', token: 'alice/phone' });
  await flush();
  const w = welcome(a)!;
  a.destroy();
  await flush();
  const r = await gw.push('alice', 'for alice', { waitMs: 0 });
  assert.equal(r.devices[0]?.status, 'queued');
  return w;
}

test("another user presenting alice's resume token (with alice's device id) gets a new session of its own and none of alice's messages; alice still resumes hers", async () => {
  const clock = new ManualClock(1_000_000);
  const gw = gateway(clock, tokenAuth());
  const w = await aliceAway(gw);
  const m = connect(gw, { userId: 'mallory', deviceId: 'phone', token: 'mallory/phone', resumeToken: w.resumeToken, lastSeq: 0 });
  await flush();
  const wm = welcome(m)!;
  assert.equal(wm.resumed, false);
  assert.notEqual(wm.sessionId, w.sessionId);
  assert.notEqual(wm.resumeToken, w.resumeToken);
  assert.deepEqual(data(m), []);
  const back = connect(gw, { userId: 'alice', deviceId: 'phone', token: 'alice/phone', resumeToken: w.resumeToken, lastSeq: 0 });
  await flush();
  assert.equal(welcome(back)?.resumed, true);
  assert.equal(welcome(back)?.sessionId, w.sessionId);
  assert.deepEqual(data(back), ['for alice']);
  assert.equal(closed(m), undefined, "mallory's own link is untouched");
  await gw.close();
});

test("alice's other device (a user-wide token) presenting the phone's resume token gets a session of its own, not the phone's messages, and leaves the phone's live link open", async () => {
  const clock = new ManualClock(1_000_000);
  const gw = gateway(clock, tokenAuth());
  const phone = connect(gw, { userId: 'alice', deviceId: 'phone', token: 'alice/phone' });
  await flush();
  const w = welcome(phone)!;
  // A message the phone has been given and not acknowledged yet: still in its mailbox.
  void gw.push('alice', 'for the phone', { waitMs: 0 });
  await flush();
  assert.deepEqual(data(phone), ['for the phone']);
  const tablet = connect(gw, { userId: 'alice', deviceId: 'tablet', token: 'alice/*', resumeToken: w.resumeToken, lastSeq: 0 });
  await flush();
  assert.equal(welcome(tablet)?.resumed, false);
  assert.notEqual(welcome(tablet)?.sessionId, w.sessionId);
  assert.deepEqual(data(tablet), []);
  assert.equal(closed(phone), undefined, "the phone's link is not replaced");
  assert.equal(gw.connection('alice', 'phone')?.sessionId, w.sessionId);
  await gw.close();
});

test('a resume goes through the authenticator (a connect hook) like any HELLO: refused there, nothing is resumed or handed over', async () => {
  const clock = new ManualClock(1_000_000);
  let refuseAlice = false;
  const gw = gateway(clock, tokenAuth((h) => refuseAlice && h.userId === 'alice'));
  const w = await aliceAway(gw);
  // The backend revokes alice (its hook now says no); her client still holds a good resume token.
  refuseAlice = true;
  const back = connect(gw, { userId: 'alice', deviceId: 'phone', token: 'alice/phone', resumeToken: w.resumeToken, lastSeq: 0 });
  await flush();
  assert.equal(welcome(back), undefined);
  assert.equal(closed(back)?.code, CloseCodes['auth-failed']);
  assert.deepEqual(data(back), []);
  // And without any token at all: auth-missing, the resume token alone opens nothing.
  const bare = connect(gw, { userId: 'alice', deviceId: 'phone', token: '', resumeToken: w.resumeToken, lastSeq: 0 });
  await flush();
  assert.equal(welcome(bare), undefined);
  assert.equal(closed(bare)?.code, CloseCodes['auth-missing']);
  await gw.close();
});

test('resume tokens: 24 base64url characters (144 random bits), never repeated', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 20_000; i++) {
    const t = newToken();
    assert.match(t, /^[A-Za-z0-9_-]{24}$/);
    seen.add(t);
  }
  assert.equal(seen.size, 20_000);
});

test('kick() ends the link, not the session nor the credential: a client that ignores 4507 resumes at once; refused by the authenticator (a connect hook), it cannot', async () => {
  const clock = new ManualClock(1_000_000);
  let revoked = false;
  const gw = gateway(clock, tokenAuth((h) => revoked && h.userId === 'alice'));
  const a = connect(gw, { userId: 'alice', deviceId: 'phone', token: 'alice/phone' });
  await flush();
  const w = welcome(a)!;
  assert.equal(gw.kick('alice', 'phone'), 1);
  await flush();
  assert.equal(closed(a)?.code, CloseCodes.kicked);
  const again = connect(gw, { userId: 'alice', deviceId: 'phone', token: 'alice/phone', resumeToken: w.resumeToken, lastSeq: 0 });
  await flush();
  assert.equal(welcome(again)?.resumed, true, 'the SDK does not come back after 4507, but nothing on the gateway stops a client that does');
  // Revoked where the identity is decided, then kicked: the resume is refused with the rest.
  revoked = true;
  gw.kick('alice', 'phone');
  await flush();
  const third = connect(gw, { userId: 'alice', deviceId: 'phone', token: 'alice/phone', resumeToken: w.resumeToken, lastSeq: 0 });
  await flush();
  assert.equal(welcome(third), undefined);
  assert.equal(closed(third)?.code, CloseCodes['auth-failed']);
  await gw.close();
});
