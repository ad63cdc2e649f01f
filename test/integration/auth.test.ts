import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { generateKeyPair, SignJWT, exportJWK } from 'jose';
import { jwtAuthenticator } from '../../src/auth/jwt-authenticator.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { CloseCodes } from '../../src/protocol/errors.js';
import { encodeDelimited } from '../../src/protocol/frame-codec.js';
import { FrameDecoder } from '../../src/protocol/frame-decoder.js';
import { FrameType, PROTOCOL_VERSION, type Frame } from '../../src/protocol/frames.js';

// JWT authentication over real TCP: each refusal closes the connection with its
// own code, a good token opens the session, and nothing works before WELCOME.

const SECRET = 'a-test-secret-of-at-least-32-bytes!!';
const hs = (claims: Record<string, unknown>, exp: string | number = '5m') =>
  new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime(exp).sign(new TextEncoder().encode(SECRET));

/** HELLO (plus any frames after it) over a raw socket; resolves with every frame received once the server closes or `untilWelcome`. */
function helloOver(port: number, hello: Record<string, unknown>, after: Frame[] = [], untilWelcome = false): Promise<Frame[]> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const frames: Frame[] = [];
    const dec = new FrameDecoder();
    s.on('data', (d) =>
      dec.push(d, (f) => {
        frames.push(f);
        if (untilWelcome && f.type === FrameType.WELCOME) {
          s.destroy();
          resolve(frames);
        }
      }),
    );
    s.on('connect', () => {
      s.write(encodeDelimited({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'alice', deviceId: 'phone', ...hello } as Frame));
      for (const f of after) s.write(encodeDelimited(f));
    });
    s.on('error', () => {});
    s.on('close', () => resolve(frames));
    setTimeout(() => reject(new Error('no close and no WELCOME')), 5000).unref();
  });
}
const closeCode = (frames: Frame[]) => frames.find((f): f is Extract<Frame, { type: 8 }> => f.type === FrameType.CLOSE)?.code;

describe('JWT authentication (HS256)', () => {
  let gw: Gateway;
  let port: number;
  before(async () => {
    gw = new Gateway({ tcp: { port: 0 }, ws: false, authenticate: jwtAuthenticator({ secret: SECRET, issuer: 'test-issuer' }) });
    port = (await gw.listen()).tcp!.port;
  });
  after(() => gw.close());
  const good = (c: Record<string, unknown> = {}) => hs({ sub: 'alice', did: 'phone', iss: 'test-issuer', ...c });

  test('a valid token bound to the user and device opens the session', async () => {
    const frames = await helloOver(port, { token: await good() }, [], true);
    assert.equal(frames[0].type, FrameType.WELCOME);
  });

  test('a token that never expires (exp 1e300), lives past the longest lifetime, or was issued in the future is refused', async () => {
    const nowS = Math.floor(Date.now() / 1000);
    for (const token of [
      await hs({ sub: 'alice', did: 'phone', iss: 'test-issuer' }, 1e300),
      await hs({ sub: 'alice', did: 'phone', iss: 'test-issuer' }, nowS + 400 * 86_400),
      await new SignJWT({ sub: 'alice', did: 'phone', iss: 'test-issuer' }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt(nowS + 3600).setExpirationTime(nowS + 7200).sign(new TextEncoder().encode(SECRET)),
    ]) {
      assert.equal(closeCode(await helloOver(port, { token })), CloseCodes['auth-failed']);
    }
  });

  test('no token: auth-missing', async () => {
    assert.equal(closeCode(await helloOver(port, {})), CloseCodes['auth-missing']);
  });

  test('expired token: auth-expired', async () => {
    const t = await hs({ sub: 'alice', did: 'phone', iss: 'test-issuer' }, Math.floor(Date.now() / 1000) - 120);
    assert.equal(closeCode(await helloOver(port, { token: t })), CloseCodes['auth-expired']);
  });

  test('bad signature, wrong issuer, another device or user, no expiry, garbage: auth-failed', async () => {
    const forged = await new SignJWT({ sub: 'alice', did: 'phone', iss: 'test-issuer' })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode('another-secret-of-at-least-32-bytes!!'));
    const noExp = await new SignJWT({ sub: 'alice', did: 'phone', iss: 'test-issuer' }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(SECRET));
    const cases: [string, Record<string, unknown>][] = [
      ['forged', { token: forged }],
      ['wrong issuer', { token: await good({ iss: 'someone-else' }) }],
      ['another device', { token: await good({ did: 'tablet' }) }],
      ['another user', { token: await good({ sub: 'mallory' }) }],
      ['no exp', { token: noExp }],
      ['garbage', { token: 'not.a.jwt' }],
    ];
    for (const [what, hello] of cases) assert.equal(closeCode(await helloOver(port, hello)), CloseCodes['auth-failed'], what);
  });

  test("a resume token is honoured only for its own identity: presented by another user it starts a new session", async () => {
    const first = await helloOver(port, { token: await good() }, [], true);
    const w = first[0] as Extract<Frame, { type: 2 }>;
    const mallory = await hs({ sub: 'mallory', did: 'phone', iss: 'test-issuer' });
    const stolen = await helloOver(port, { userId: 'mallory', token: mallory, resumeToken: w.resumeToken }, [], true);
    const w2 = stolen[0] as Extract<Frame, { type: 2 }>;
    assert.equal(w2.type, FrameType.WELCOME);
    assert.equal(w2.resumed, false);
    assert.notEqual(w2.sessionId, w.sessionId);
    // The owner still resumes with it.
    const again = await helloOver(port, { token: await good(), resumeToken: w.resumeToken }, [], true);
    assert.equal((again[0] as Extract<Frame, { type: 2 }>).resumed, true);
  });

  test('nothing may follow HELLO before WELCOME: a DATA sent with a bad token is never delivered', async () => {
    const got: unknown[] = [];
    gw.on('message', (m) => got.push(m));
    const frames = await helloOver(port, { token: 'bad' }, [{ type: FrameType.DATA, seq: 1, payload: new Uint8Array([1]) } as Frame]);
    assert.ok([CloseCodes['auth-failed'], CloseCodes['unexpected-frame']].includes(closeCode(frames) as never));
    assert.equal(got.length, 0);
    // The gateway still serves everyone else.
    const ok = await helloOver(port, { token: await good() }, [], true);
    assert.equal(ok[0].type, FrameType.WELCOME);
  });
});

describe('JWT authentication (RS256 and ES256 public keys)', () => {
  for (const alg of ['RS256', 'ES256'] as const) {
    test(`${alg}: the issuer's key set verifies; a token signed by another key is refused`, async () => {
      const issuer = await generateKeyPair(alg);
      const stranger = await generateKeyPair(alg);
      const jwk = { ...(await exportJWK(issuer.publicKey)), kid: 'k1', alg };
      const gw = new Gateway({ tcp: { port: 0 }, ws: false, authenticate: jwtAuthenticator({ jwks: { keys: [jwk] } }) });
      const port = (await gw.listen()).tcp!.port;
      try {
        const sign = (key: CryptoKey) => new SignJWT({ sub: 'alice', did: 'phone' }).setProtectedHeader({ alg, kid: 'k1' }).setExpirationTime('5m').sign(key);
        assert.equal((await helloOver(port, { token: await sign(issuer.privateKey) }, [], true))[0].type, FrameType.WELCOME);
        assert.equal(closeCode(await helloOver(port, { token: await sign(stranger.privateKey) })), CloseCodes['auth-failed']);
        // An HS256 token is refused outright by a gateway that expects public-key signatures.
        assert.equal(closeCode(await helloOver(port, { token: await hs({ sub: 'alice', did: 'phone' }) })), CloseCodes['auth-failed']);
      } finally {
        await gw.close();
      }
    });
  }
});

describe('JWT authentication from a JWKS URL', () => {
  test('an unreachable or failing key set is not a refusal: the device is told to come back (4004, retried); a token the set does not know is refused (4510)', async () => {
    const issuer = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(issuer.publicKey)), kid: 'k1', alg: 'ES256' };
    let mode: 'ok' | '500' | 'garbage' = 'ok';
    const http = await import('node:http');
    const jwks = http.createServer((_req, res) => {
      if (mode === '500') res.writeHead(500).end('down');
      else if (mode === 'garbage') res.writeHead(200, { 'content-type': 'application/json' }).end('{"not":"a key set"}');
      else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(jwks.address() as net.AddressInfo).port}/jwks.json`;
    const token = await new SignJWT({ sub: 'alice', did: 'phone' }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setExpirationTime('5m').sign(issuer.privateKey);
    // A fresh authenticator per case: jose caches the set it fetched.
    const codeWith = async (m: typeof mode, t = token) => {
      mode = m;
      const gw = new Gateway({ tcp: { port: 0 }, ws: false, authenticate: jwtAuthenticator({ jwksUrl: url }) });
      const port = (await gw.listen()).tcp!.port;
      try {
        const frames = await helloOver(port, { token: t }, [], true);
        return frames[0].type === FrameType.WELCOME ? 'welcome' : closeCode(frames);
      } finally {
        await gw.close();
      }
    };
    try {
      assert.equal(await codeWith('ok'), 'welcome');
      assert.equal(await codeWith('500'), CloseCodes['server-error']);
      assert.equal(await codeWith('garbage'), CloseCodes['server-error']);
      const other = await new SignJWT({ sub: 'alice', did: 'phone' }).setProtectedHeader({ alg: 'ES256', kid: 'unknown' }).setExpirationTime('5m').sign(issuer.privateKey);
      assert.equal(await codeWith('ok', other), CloseCodes['auth-failed'], 'a key the set does not have: refused');
    } finally {
      await new Promise((r) => jwks.close(r));
    }
    // Nothing listening at all.
    const gw = new Gateway({ tcp: { port: 0 }, ws: false, authenticate: jwtAuthenticator({ jwksUrl: url }) });
    const port = (await gw.listen()).tcp!.port;
    try {
      assert.equal(closeCode(await helloOver(port, { token })), CloseCodes['server-error']);
    } finally {
      await gw.close();
    }
  });
});

describe('client token provider', () => {
  test('after a close for an expired token the client asks for a fresh one and gets in', async () => {
    const { LonglinkClient } = await import('../../src/client/client.js');
    const gw = new Gateway({ tcp: { port: 0 }, ws: false, authenticate: jwtAuthenticator({ secret: SECRET, clockToleranceS: 0 }) });
    const port = (await gw.listen()).tcp!.port;
    let asked = 0;
    const client = new LonglinkClient({
      url: `tcp://127.0.0.1:${port}`,
      userId: 'alice',
      deviceId: 'phone',
      // The first token handed out is already stale, as after a long sleep.
      token: async () => (++asked === 1 ? hs({ sub: 'alice', did: 'phone' }, Math.floor(Date.now() / 1000) - 60) : hs({ sub: 'alice', did: 'phone' })),
      reconnect: { initialDelayMs: 10, minDelayMs: 5, maxDelayMs: 50 },
    });
    const closes: { code: number; willReconnect: boolean }[] = [];
    client.on('close', (e) => closes.push(e));
    try {
      await new Promise<void>((resolve, reject) => {
        client.on('open', () => resolve());
        setTimeout(() => reject(new Error('never opened')), 5000).unref();
        client.connect().catch(() => {});
      });
      assert.equal(asked, 2);
      assert.deepEqual(closes.map((c) => [c.code, c.willReconnect]), [[CloseCodes['auth-expired'], true]]);
    } finally {
      client.close();
      await gw.close();
    }
  });
});

describe('an authenticator that fails', () => {
  test('a plain Error (its user database down) is not a refusal: the client is told 4004 without the detail, comes back with backoff and gets in once it answers', async () => {
    const { LonglinkClient } = await import('../../src/client/client.js');
    let down = true;
    let calls = 0;
    const gw = new Gateway({
      tcp: { port: 0 },
      ws: false,
      authenticate: (h) => {
        calls++;
        if (down) throw new Error('connect ECONNREFUSED users-db.internal:5432');
        return { userId: h.userId, deviceId: h.deviceId };
      },
    });
    const faults: unknown[] = [];
    gw.on('fault', (e) => e.kind === 'auth' && faults.push(e.error));
    const port = (await gw.listen()).tcp!.port;
    const client = new LonglinkClient({ url: `tcp://127.0.0.1:${port}`, userId: 'alice', deviceId: 'phone', reconnect: { initialDelayMs: 10, minDelayMs: 5, maxDelayMs: 50 } });
    const closes: { code: number; reason: string; willReconnect: boolean }[] = [];
    client.on('close', (e) => {
      closes.push(e);
      if (closes.length === 2) down = false;
    });
    try {
      await new Promise<void>((resolve, reject) => {
        client.on('open', () => resolve());
        setTimeout(() => reject(new Error(`never opened: ${JSON.stringify(closes)}`)), 5000).unref();
        client.connect().catch(() => {});
      });
      assert.deepEqual(closes.map((c) => [c.code, c.willReconnect]), [[CloseCodes['server-error'], true], [CloseCodes['server-error'], true]]);
      for (const c of closes) assert.doesNotMatch(c.reason, /users-db|5432|ECONNREFUSED/);
      assert.equal(calls, 3);
      assert.equal(faults.length, 2, `each failure reported to the operator: ${faults.map(String).join(' | ')}`);
      assert.ok(gw.connection('alice', 'phone'));
    } finally {
      client.close();
      await gw.close();
    }
  });
});
