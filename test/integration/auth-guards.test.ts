import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { mock, test } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { AdminServer, isLoopbackAddress } from '../../src/admin/admin-server.js';
import { JWKS_RETRY_MS, jwtAuthenticator, MAX_JWKS_BYTES } from '../../src/auth/jwt-authenticator.js';
import { dial } from '../../src/client/connect.js';
import { int, port, positiveInt, positiveNumber } from '../../src/cli/parse.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import { webhookSink } from '../../src/upstream/webhook.js';
import type { HelloFrame } from '../../src/protocol/frames.js';
import { CLI, spawnCli } from '../helpers/procs.js';

// Guards that an empty value, a forged header or a key mismatch used to turn off or break.

function post(port: number, path: string, body: unknown, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const r = http.request({ host: '127.0.0.1', port, path, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    r.on('error', reject);
    r.end(data);
  });
}

test('without an API key (or admin token), a caller from another address is refused even with a loopback Host header: the Host is the caller\'s to write', async () => {
  const gw = new Gateway({ tcp: false, ws: false });
  const admin = new AdminServer(gw, { host: '127.0.0.1', port: 0 });
  const { port } = await admin.listen();
  // What the kernel would say of a caller from the network: the socket's peer address, nothing else changed.
  let remote = '127.0.0.1';
  (admin as unknown as { server: http.Server }).server.prependListener('connection', (s: net.Socket) => Object.defineProperty(s, 'remoteAddress', { get: () => remote }));
  try {
    assert.equal(await post(port, '/v1/push', { user: 'alice', text: 'x' }), 200, 'a loopback caller is served');
    remote = '192.0.2.99';
    assert.equal(await post(port, '/v1/push', { user: 'alice', text: 'x' }, { host: '127.0.0.1' }), 403);
    assert.equal(await post(port, '/v1/kick', { user: 'alice' }, { host: 'localhost' }), 403);
    remote = '::ffff:127.0.0.1';
    assert.equal(await post(port, '/v1/kick', { user: 'alice' }), 200);
  } finally {
    await admin.close();
    await gw.close();
  }
  assert.equal(isLoopbackAddress('127.3.2.1'), true);
  assert.equal(isLoopbackAddress('::1'), true);
  assert.equal(isLoopbackAddress('::ffff:10.0.0.1'), false);
  assert.equal(isLoopbackAddress(''), false);
});

test('serve refuses an empty secret or key (an unset variable) rather than start without the guard it names; an empty number is not 0', async () => {
  for (const [args, env] of [
    [[], { LONGLINK_JWT_SECRET: '' }],
    [['--jwt-secret', ' '], {}],
    [['--api-key', ''], {}],
    [['--admin-token', ''], {}],
  ] as [string[], Record<string, string>][]) {
    const p = spawn(process.execPath, [CLI, 'serve', '--tcp-port', '0', '--ws-port', '0', '--admin-port', '0', '--log-format', 'json', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    const code = await new Promise<number | null>((resolve) => {
      const t = setTimeout(() => (p.kill(), resolve(null)), 10_000);
      p.once('exit', (c) => (clearTimeout(t), resolve(c)));
    });
    assert.equal(code, 2, `${args.join(' ')} ${JSON.stringify(env)}: ${err}`);
    assert.match(err, /empty/);
  }
  for (const parse of [int, positiveInt, port]) assert.throws(() => parse(''), /empty/);
  assert.throws(() => int('  '), /empty/);
  // `lab --window-scale NaN` multiplied every wait by NaN.
  for (const bad of ['NaN', '0', '-1', 'Infinity', '']) assert.throws(() => positiveNumber(bad));
  assert.equal(positiveNumber('1.5'), 1.5);
});

test('a URL\'s password (a Redis URL\'s, a webhook\'s Basic auth) is not echoed: not by --print-config, not in the listening line, not in a webhook failure', async () => {
  const printed = execFileSync(process.execPath, [CLI, 'serve', '--print-config', '--redis', 'redis://:hunter2@127.0.0.1:6379', '--upstream-webhook', 'http://hook:s3cret@127.0.0.1:9/in'], { encoding: 'utf8', env: {} });
  assert.doesNotMatch(printed, /hunter2|s3cret/);
  assert.match(printed, /redis:\/\/:\*\*\*@127\.0\.0\.1:6379/, 'the rest of the URL is shown');
  const server = spawnCli(['serve', '--tcp-port', '0', '--no-ws', '--no-admin', '--log-format', 'json', '--upstream-webhook', 'http://hook:s3cret@127.0.0.1:9/in']);
  try {
    const listening = await server.waitFor((l) => l.event === 'listening', 15_000, 'listening');
    assert.doesNotMatch(JSON.stringify(listening), /s3cret/);
  } finally {
    await server.kill();
  }
  // Port 9 (discard) answers nothing here: a refused connection. A backend answering 500 is named in the fault.
  const backend = http.createServer((req, res) => (req.resume(), res.writeHead(500).end()));
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  try {
    const sink = webhookSink({ url: `http://hook:s3cret@127.0.0.1:${(backend.address() as net.AddressInfo).port}/in` });
    const err = await sink.send({ userId: 'u', deviceId: 'd', connectionId: 'c', sessionId: 's', id: 'm1', seq: 1, payload: Buffer.from('x'), receivedAt: 1 }).then(
      () => null,
      (e: Error) => e,
    );
    assert.ok(err, 'a 500 fails the message');
    assert.doesNotMatch(err.message, /s3cret/);
    assert.match(err.message, /500/);
    await sink.close?.();
  } finally {
    await new Promise((r) => backend.close(r));
  }
});

test('an HS256 secret shorter than 32 bytes (RFC 7518) is refused: every user holds a token signed with it, from which a short one is guessed offline', async () => {
  for (const secret of ['secret', 'changeme-changeme-changeme-1234', new Uint8Array(31)]) {
    assert.throws(() => jwtAuthenticator({ secret }), (e: Error & { code?: string }) => e.code === 'LL_ERR_INVALID_OPTION' && /at least 32/.test(e.message));
  }
  assert.throws(() => jwtAuthenticator({ secret: 's'.repeat(32), algorithms: ['HS512'] }), /at least 64/);
  jwtAuthenticator({ secret: 's'.repeat(32) });
  jwtAuthenticator({ secret: new Uint8Array(64), algorithms: ['HS256', 'HS512'] });
  // serve: one line, exit 2, no gateway without the guard it was asked for.
  const p = spawn(process.execPath, [CLI, 'serve', '--tcp-port', '0', '--no-ws', '--no-admin', '--log-format', 'json', '--jwt-secret', 'changeme'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d) => (err += d));
  const code = await new Promise<number | null>((resolve) => {
    const t = setTimeout(() => (p.kill(), resolve(null)), 10_000);
    p.once('exit', (c) => (clearTimeout(t), resolve(c)));
  });
  assert.equal(code, 2, err);
  assert.match(err, /at least 32/);
});

test('a PEM public key that does not fit its algorithm: no unhandled rejection; each HELLO is told to come back (server-error), not refused for good', async () => {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  try {
    const auth = jwtAuthenticator({ publicKey: pem, algorithms: ['RS256'] });
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(unhandled, []);
    await assert.rejects(Promise.resolve(auth({ userId: 'u', deviceId: 'd', token: 'x.y.z' } as unknown as HelloFrame, { remoteAddress: '127.0.0.1', transport: 'tcp' })), (e: ProtocolError) => e.reason === 'server-error');
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

test('JWKS rotation: a token of the issuer\'s new key, within the cooldown after a fetch, is told to come back (server-error), not refused for good', async () => {
  const a = await generateKeyPair('ES256');
  const b = await generateKeyPair('ES256');
  let keys = [{ ...(await exportJWK(a.publicKey)), kid: 'A', alg: 'ES256' }];
  const jwks = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys })));
  await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
  try {
    const auth = jwtAuthenticator({ jwksUrl: `http://127.0.0.1:${(jwks.address() as net.AddressInfo).port}/` });
    const hello = (token: string) => ({ userId: 'alice', deviceId: 'phone', token }) as unknown as HelloFrame;
    const peer = { remoteAddress: '203.0.113.9', transport: 'tcp' as const };
    const sign = (key: CryptoKey, kid: string, sub = 'alice') => new SignJWT({ sub, did: 'phone' }).setProtectedHeader({ alg: 'ES256', kid }).setExpirationTime('5m').sign(key);
    await auth(hello(await sign(a.privateKey, 'A')), peer);
    // The issuer rotates within the cooldown that fetch started (jose looks the set up again only after 30 s).
    keys = [...keys, { ...(await exportJWK(b.publicKey)), kid: 'B', alg: 'ES256' }];
    await assert.rejects(Promise.resolve(auth(hello(await sign(b.privateKey, 'B')), peer)), (e: ProtocolError) => e.reason === 'server-error');
  } finally {
    await new Promise((r) => jwks.close(r));
  }
});

test('a key set URL answering more than a key set (1 MiB) is not read whole: the token is not judged (server-error, retried), and a set of normal size still works', async () => {
  const issuer = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(issuer.publicKey)), kid: 'k1', alg: 'ES256' };
  let pad = 2 * MAX_JWKS_BYTES;
  // A valid set with the right key, padded: jose used to read and parse all of it, and accept the token.
  const jwks = http.createServer((_req, res) => {
    const body = JSON.stringify({ keys: [jwk], pad: 'x'.repeat(pad) });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body);
  });
  await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(jwks.address() as net.AddressInfo).port}/jwks.json`;
  const token = await new SignJWT({ sub: 'alice', did: 'phone' }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setExpirationTime('5m').sign(issuer.privateKey);
  const hello = { userId: 'alice', deviceId: 'phone', token } as unknown as HelloFrame;
  const peer = { remoteAddress: '203.0.113.9', transport: 'tcp' };
  try {
    await assert.rejects(Promise.resolve(jwtAuthenticator({ jwksUrl: url })(hello, peer)), (e: ProtocolError) => e.reason === 'server-error' && /over/.test(e.message));
    pad = 1000;
    assert.equal((await jwtAuthenticator({ jwksUrl: url })(hello, peer)).userId, 'alice');
  } finally {
    await new Promise((r) => jwks.close(r));
  }
});

/**
 * An issuer whose key set URL can go down (`up`), counting the requests it gets (`asked`), and a
 * JWKS authenticator on it; `hello(kid)` is what a HELLO signed with that key id is answered.
 */
async function flakyIssuer() {
  const issuer = await generateKeyPair('ES256');
  const keys = [{ ...(await exportJWK(issuer.publicKey)), kid: 'A', alg: 'ES256' }];
  const state = { up: false, asked: 0 };
  const jwks = http.createServer((_req, res) => {
    state.asked++;
    if (!state.up) return void res.writeHead(503).end('down');
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
  });
  await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(jwks.address() as net.AddressInfo).port}/`;
  let auth: ReturnType<typeof jwtAuthenticator> | null = null;
  const peer = { remoteAddress: '203.0.113.9', transport: 'tcp' };
  return {
    state,
    /** Made on first use: after the test has mocked Date, which jose's cache reads. */
    async hello(kid = 'A') {
      auth ??= jwtAuthenticator({ jwksUrl: url });
      const token = await new SignJWT({ sub: 'alice', did: 'phone' }).setProtectedHeader({ alg: 'ES256', kid }).setExpirationTime('1h').sign(issuer.privateKey);
      return Promise.resolve(auth({ userId: 'alice', deviceId: 'phone', token } as unknown as HelloFrame, peer as never)).then(
        () => 'welcome',
        (e: ProtocolError) => e.reason,
      );
    },
    close: () => new Promise((r) => jwks.close(r)),
  };
}

test(`a failing key set URL is asked again at most once every ${JWKS_RETRY_MS} ms, not once per HELLO (forged kids included); the set fetched last is used meanwhile`, async () => {
  const k = await flakyIssuer();
  // jose's cache and cooldown read Date.now: moved by hand, as the authenticator's own clock.
  mock.timers.enable({ apis: ['Date'], now: Date.now() });
  try {
    // The issuer is down before its set was ever fetched: one request, not one per HELLO.
    for (let i = 0; i < 10; i++) assert.equal(await k.hello('A'), 'server-error');
    assert.equal(k.state.asked, 1);
    mock.timers.tick(JWKS_RETRY_MS);
    k.state.up = true;
    assert.equal(await k.hello('A'), 'welcome');
    assert.equal(k.state.asked, 2);
    // Past jose's cooldown, a forged kid has the set fetched again: the issuer is down by then.
    mock.timers.tick(31_000);
    k.state.up = false;
    assert.equal(await k.hello('Z'), 'server-error');
    assert.equal(k.state.asked, 3);
    for (let i = 0; i < 10; i++) assert.equal(await k.hello(`Z${i}`), 'server-error');
    assert.equal(k.state.asked, 3, 'forged kids do not reach the failing issuer again');
    assert.equal(await k.hello('A'), 'welcome', 'a known key is still accepted from the set held');
    assert.equal(k.state.asked, 3);
    mock.timers.tick(JWKS_RETRY_MS);
    k.state.up = true;
    assert.equal(await k.hello('A'), 'welcome');
  } finally {
    mock.timers.reset();
    await k.close();
  }
});

test('a tcp:// or tls:// URL without a port is refused (LL_ERR_BAD_URL), not dialled at port 0 for ever', async () => {
  await assert.rejects(dial('tcp://127.0.0.1', { timeoutMs: 1000 } as never), { code: 'LL_ERR_BAD_URL' });
  await assert.rejects(dial('tls://example.invalid', { timeoutMs: 1000 } as never), { code: 'LL_ERR_BAD_URL' });
});

// The key set URL's retry pause is a duration, but it is measured on the wall clock: a wall clock
// stepped back (NTP, a VM resumed) after one failed fetch stretches the pause by the step.
test('a key set URL that failed once is asked again about JWKS_RETRY_MS later even if the wall clock stepped back meanwhile', async () => {
  const k = await flakyIssuer();
  const start = Date.now();
  mock.timers.enable({ apis: ['Date'], now: start });
  try {
    // The issuer is down at start: one failed fetch.
    assert.equal(await k.hello(), 'server-error');
    assert.equal(k.state.asked, 1);
    // NTP steps the wall clock back an hour; the issuer comes back; well over JWKS_RETRY_MS of real time passes.
    mock.timers.setTime(start - 3_600_000);
    k.state.up = true;
    mock.timers.tick(JWKS_RETRY_MS + 1000);
    assert.equal(await k.hello(), 'welcome', 'every device is told to come back (4004) for the hour the clock stepped back, the URL never asked');
    assert.equal(k.state.asked, 2);
  } finally {
    mock.timers.reset();
    await k.close();
  }
});
