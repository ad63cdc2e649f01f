import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { X509Certificate } from 'node:crypto';
import { LonglinkClient } from '../../src/client/client.js';
import { Gateway } from '../../src/gateway/gateway.js';
import type { LonglinkError } from '../../src/protocol/errors.js';
import { after, test } from 'node:test';
import { CLI, spawnCli, spawnServe } from '../helpers/procs.js';

// The CLI end to end: `longlink serve` and `longlink client` as separate
// processes, talking over real sockets, as a user would run them.

test('serve --help lists the heartbeat and keepalive options', () => {
  const help = execFileSync(process.execPath, [CLI, 'serve', '--help'], { encoding: 'utf8' });
  for (const opt of ['--tcp-port', '--ws-port', '--heartbeat-interval-ms', '--miss-budget', '--grace-ms', '--keepalive-idle-ms', '--keepalive-interval-ms', '--keepalive-count', '--user-timeout-ms', '--handshake-timeout-ms', '--max-frame-bytes',
    '--tls-cert', '--tls-key', '--jwt-secret', '--jwt-public-key', '--jwks-url', '--max-connections', '--max-connections-per-source', '--handshakes-per-second', '--handshake-burst', '--max-queued-bytes',
    '--max-pending-handshakes', '--max-pending-handshakes-per-source', '--max-data-per-second', '--data-burst', '--max-client-info-bytes', '--max-state-bytes', '--max-state-keys', '--max-message-id-bytes', '--min-ping-gap-ms', '--ping-burst', '--max-write-buffer-bytes', '--slow-consumer-ms', '--drain-window-ms', '--drain-ack-timeout-ms',
    '--admin-port', '--admin-host', '--admin-token', '--no-admin']) {
    assert.ok(help.includes(opt), `serve --help mentions ${opt}`);
  }
  const clientHelp = execFileSync(process.execPath, [CLI, 'client', '--help'], { encoding: 'utf8' });
  for (const opt of ['--url', '--user', '--device', '--direction', '--interval-ms', '--json', '--token', '--tls-ca']) assert.ok(clientHelp.includes(opt));
});

test('the built CLI is executable (npx longlink works after any npm script that builds)', () => {
  assert.ok((fs.statSync(CLI).mode & 0o111) !== 0, `${CLI} has no execute bit`);
});

test('serve refuses bad options with a clear message', () => {
  assert.throws(
    () => execFileSync(process.execPath, [CLI, 'serve', '--tcp-port', 'abc'], { encoding: 'utf8', stdio: 'pipe' }),
    (err: { stderr: string }) => /not an integer|invalid|expected a port/i.test(err.stderr),
  );
  assert.throws(
    () => execFileSync(process.execPath, [CLI, 'serve', '--tcp-port', '70000'], { encoding: 'utf8', stdio: 'pipe' }),
    (err: { stderr: string; status: number }) => err.status !== 0 && /--tcp-port.*expected a port, 0 to 65535/.test(err.stderr),
  );
});

// docs/OPERATIONS.md: a start that cannot go on exits 1, and 2 for a bad option, wherever the option
// came from. A supervisor that stops restarting on 2 (systemd's RestartPreventExitStatus) must not
// restart a mistyped flag for ever: the parser's own refusals (commander's default is 1) exit 2 too,
// as the same value in LONGLINK_* or in --config does.
test('a bad option exits 2 whether it came from a flag, the environment or the file', () => {
  const status = (args: string[], env: Record<string, string> = {}) => {
    try {
      execFileSync(process.execPath, [CLI, 'serve', ...args], { encoding: 'utf8', stdio: 'pipe', env: { ...process.env, ...env }, timeout: 20_000 });
      return 0;
    } catch (err) {
      return (err as { status: number }).status;
    }
  };
  assert.equal(status([], { LONGLINK_TCP_PORT: 'abc' }), 2, 'LONGLINK_TCP_PORT=abc');
  assert.equal(status(['--tcp-port', 'abc']), 2, '--tcp-port abc');
  assert.equal(status(['--tcp-prot', '7000']), 2, 'an unknown flag');
  assert.equal(status(['--tcp-port']), 2, 'a flag without its value');
  assert.equal(status(['--log-level', 'loud']), 2, 'a value outside the choices');
  assert.equal(status(['--help']), 0, '--help is no error');
});

// Values each parser took that then broke what they set: every HELLO closed 4004 (a 0 ms hook
// timeout), every message re-sent (a 0 ms upstream timeout), the relay silently off, every upgrade
// answered 400 (a path without its slash), a listener on every interface (an empty host from an
// unset variable), and stack traces from pino-roll's worker or tune's model.
test('values that parse but would break what they set are bad options: exit 2, one line naming the option, no stack trace', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'longlink-log-'));
  const free = ['--tcp-port', '0', '--ws-port', '0', '--admin-port', '0'];
  const cases: [string[], Record<string, string>, RegExp][] = [
    [['serve', ...free, '--connect-hook', 'http://127.0.0.1:9/h', '--connect-hook-timeout-ms', '0'], {}, /--connect-hook-timeout-ms/],
    [['serve', ...free, '--upstream-webhook', 'http://127.0.0.1:9/u', '--upstream-timeout-ms', '0'], {}, /--upstream-timeout-ms/],
    [['serve', ...free, '--relay-per-user', '0'], {}, /--relay-per-user/],
    [['serve', ...free, '--relay-total', '0'], {}, /--relay-total/],
    [['serve', ...free, '--ws-path', 'longlink'], {}, /--ws-path/],
    [['serve', ...free, '--log-file', `${dir}/ll.log`, '--log-file-count', '0'], {}, /--log-file-count/],
    [['serve', ...free, '--log-file', `${dir}/ll.log`, '--log-file-size', '10mb'], {}, /--log-file-size/],
    [['serve', ...free, '--log-file', '/dev/null/ll.log'], {}, /--log-file/],
    [['serve', ...free], { LONGLINK_HOST: '' }, /--host/],
    [['serve', ...free], { LONGLINK_ADMIN_HOST: '' }, /--admin-host/],
    // Keepalive is off without an idle time: the interval and count were set on no socket.
    [['serve', ...free, '--keepalive-interval-ms', '10000', '--keepalive-count', '3'], {}, /--keepalive-idle-ms/],
    [['serve', ...free], { LONGLINK_KEEPALIVE_COUNT: '3' }, /--keepalive-count needs --keepalive-idle-ms/],
    // An issuer or audience without a key: every token, and none, was let in.
    [['serve', ...free, '--jwt-issuer', 'https://id.example'], {}, /--jwt-issuer needs a key/],
    [['serve', ...free], { LONGLINK_JWT_AUDIENCE: 'longlink' }, /--jwt-audience needs a key/],
    [['tune', '--detect-within', '0'], {}, /--detect-within/],
    [['tune', '--detect-within', '30s', '--min-interval', '0'], {}, /--min-interval/],
    [['tune', '--detect-within', '30s', '--min-interval', '0.5'], {}, /--min-interval/],
    [['tune', '--detect-within', '30s', '--min-interval', '2m', '--max-interval', '1m'], {}, /--min-interval/],
    [['tune', '--detect-within', '30s', '--loss', ''], {}, /--loss/],
    [['tune', '--detect-within', '30s', '--false-suspicions-per-month', 'Infinity'], {}, /--false-suspicions-per-month/],
  ];
  try {
    for (const [args, env, names] of cases) {
      const what = `${Object.keys(env).map((k) => `${k}= `).join('')}${args.join(' ')}`;
      // Not refused, serve would listen until killed: status null.
      const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', input: '', timeout: 15_000, killSignal: 'SIGKILL', env: { ...process.env, ...env } });
      assert.equal(r.status, 2, `${what}: exit ${r.status}; stderr: ${r.stderr.slice(0, 300)}`);
      assert.match(r.stderr, names, what);
      assert.doesNotMatch(r.stderr, /Unhandled 'error' event|^\s+at /m, `${what}: no stack trace`);
      assert.equal(r.stderr.trim().split('\n').length, 1, `${what}: one line: ${r.stderr}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('serve names an option given without the one it needs, once, before it listens: a Redis option without --redis was taken and used nowhere', async () => {
  const server = await spawnServe(['--redis-prefix', 'tenant-a:', '--log-file-count', '3']);
  try {
    const unused = server.lines.filter((l) => l.event === 'unused-option').map((l) => l.err);
    assert.deepEqual(unused, ['--redis-prefix needs --redis: ignored', '--log-file-count needs --log-file: ignored']);
  } finally {
    server.child.kill('SIGKILL');
  }
});

// docs/OPERATIONS.md's flow: `--print-config > longlink.yaml`, then `--config longlink.yaml`. The
// printed file holds every option at its default, so each option that needs another one (Redis,
// upstream, log file, TLS, workers) was named "ignored": 17 warnings a user had not caused, which
// buried a real one. A file value that is the default changes nothing and is not named; one that
// differs still is.
test('serve --config with the file --print-config wrote names no option as unused; a changed value still is', async () => {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('LONGLINK_')));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'longlink-config-'));
  const file = path.join(dir, 'longlink.yaml');
  fs.writeFileSync(file, execFileSync(process.execPath, [CLI, 'serve', '--print-config'], { encoding: 'utf8', env: clean }));
  try {
    const server = await spawnServe(['--config', file]);
    try {
      assert.deepEqual(server.lines.filter((l) => l.event === 'unused-option').map((l) => l.err), []);
    } finally {
      server.child.kill('SIGKILL');
    }
    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace(/^redis-prefix: "ll:"$/m, 'redis-prefix: "tenant-a:"'));
    const changed = await spawnServe(['--config', file]);
    try {
      assert.deepEqual(changed.lines.filter((l) => l.event === 'unused-option').map((l) => l.err), ['--redis-prefix needs --redis: ignored']);
    } finally {
      changed.child.kill('SIGKILL');
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('serve names a LONGLINK_* variable no option reads, with the nearest one: a misspelled variable was ignored without a word', async () => {
  process.env.LONGLINK_TCP_PORTT = '7000';
  let server;
  try {
    server = await spawnServe([]);
  } finally {
    delete process.env.LONGLINK_TCP_PORTT;
  }
  try {
    const unused = server.lines.filter((l) => l.event === 'unused-option').map((l) => l.err);
    assert.deepEqual(unused, ['LONGLINK_TCP_PORTT is not a longlink serve variable (did you mean LONGLINK_TCP_PORT?): ignored']);
  } finally {
    server.child.kill('SIGKILL');
  }
});

test('every command refuses an unknown flag or a bad value with exit 2, as serve does, and --help exits 0', () => {
  const status = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', input: '', timeout: 20_000 }).status;
  for (const args of [['tune', '--detect-whitin', '30s'], ['demo', '--clients', 'many'], ['lab', 'run', '--no-such-flag'], ['lab', '--no-such-flag'], ['client', '--no-such-flag'], ['no-such-command']]) {
    assert.equal(status(args), 2, args.join(' '));
  }
  for (const args of [['--help'], ['tune', '--help'], ['lab', 'run', '--help'], ['--version']]) assert.equal(status(args), 0, args.join(' '));
});

test('--worker-hung-ms below a second (30 meant as seconds) is a bad option, not a primary that kills every worker as soon as it listens', () => {
  const run = (v: string) => {
    try {
      execFileSync(process.execPath, [CLI, 'serve', '--worker-hung-ms', v, '--tcp-port', '0', '--ws-port', '0', '--admin-port', '0'], { encoding: 'utf8', stdio: 'pipe', timeout: 8000, killSignal: 'SIGKILL' });
      return { status: 0, stderr: '' };
    } catch (err) {
      return err as { status: number | null; stderr: string };
    }
  };
  for (const v of ['30', '49', '999']) {
    const r = run(v);
    assert.equal(r.status, 2, `--worker-hung-ms ${v}`);
    assert.match(r.stderr, /--worker-hung-ms.*expected 0 \(never\) or at least 1000 ms/);
  }
});

/** Runs serve to its end; resolves with its exit code and stderr. */
function serveFails(args: string[]): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d) => (stdout += d));
    const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('exit', (code) => (clearTimeout(t), resolve({ code, stderr, stdout })));
  });
}

test('a busy port or an unreachable Redis ends serve with one line naming what failed and the flag to change', async () => {
  const busy = net.createServer().listen(0, '127.0.0.1');
  await once(busy, 'listening');
  const taken = (busy.address() as net.AddressInfo).port;
  try {
    for (const [flag, extra] of [['--tcp-port', ['--ws-port', '0', '--admin-port', '0']], ['--ws-port', ['--tcp-port', '0', '--admin-port', '0']], ['--admin-port', ['--tcp-port', '0', '--ws-port', '0']]] as const) {
      const r = await serveFails([flag, String(taken), ...extra]);
      assert.equal(r.code, 1, `${flag}: exit code`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `${flag}: one line (${r.stderr})`);
      assert.match(lines[0], new RegExp(`^longlink serve: cannot listen .*127\\.0\\.0\\.1:${taken}: the port is in use \\(change ${flag}`));
      assert.doesNotMatch(r.stdout, /"stack"/, 'no stack in the log either');
    }
    // A Redis that is not there: named, with its URL and the flag.
    const r = await serveFails(['--redis', `redis://127.0.0.1:${taken}`, '--tcp-port', '0', '--ws-port', '0', '--admin-port', '0']);
    assert.equal(r.code, 1);
    assert.match(r.stderr.trim(), new RegExp(`^longlink serve: cannot reach Redis at redis://127\\.0\\.0\\.1:${taken}.*\\(change --redis\\)$`));
  } finally {
    busy.close();
  }
});

test('Gateway.listen rejects with LL_ERR_LISTEN on a busy port, for both transports, and releases what it opened', async () => {
  const busy = net.createServer().listen(0, '127.0.0.1');
  await once(busy, 'listening');
  const taken = (busy.address() as net.AddressInfo).port;
  try {
    for (const opts of [{ tcp: { port: taken }, ws: false as const }, { tcp: { port: 0 }, ws: { port: taken } }]) {
      const gw = new Gateway(opts);
      await assert.rejects(gw.listen(), (e: LonglinkError & { port?: number }) => e.code === 'LL_ERR_LISTEN' && e.port === taken && /the port is in use/.test(e.message));
    }
  } finally {
    busy.close();
  }
});

for (const transport of ['tcp', 'ws'] as const) {
  test(`client and serve over ${transport}: heartbeats, RTT, echo, relay, acks, state`, async () => {
    const server = await spawnServe(['--heartbeat-interval-ms', '200', '--heartbeat-min-interval-ms', '100', '--log-level', 'debug']);
    after(() => server.kill());
    const alice = spawnCli(['client', '--url', server[transport], '--user', 'alice', '--device', 'a1', '--json', '--info', 'app=cli']);
    const bob = spawnCli(['client', '--url', server[transport], '--user', 'bob', '--device', 'b1', '--json']);
    after(() => alice.kill());
    after(() => bob.kill());
    const open = await alice.waitFor((l) => l.event === 'open', 5000, 'open');
    assert.equal((open.heartbeat as { intervalMs: number }).intervalMs, 200);
    await bob.waitFor((l) => l.event === 'open', 5000, 'open');
    const rtt = await alice.waitFor((l) => l.event === 'rtt', 3000, 'an rtt line');
    assert.ok(typeof rtt.sampleMs === 'number' && rtt.sampleMs >= 0);

    alice.child.stdin!.write('hello\n');
    const echo = await alice.waitFor((l) => l.event === 'message' && l.text === 'echo: hello', 3000, 'the echo');
    assert.equal(echo.seq, 1, 'pushed messages are numbered');
    await alice.waitFor((l) => l.event === 'acked' && l.seq === 1, 3000, 'the ack of the line alice sent');
    alice.child.stdin!.write('@bob hi bob\n');
    await bob.waitFor((l) => l.event === 'message' && l.text === 'alice: hi bob', 3000, 'the relayed message');
    // A mistyped command is reported, and the session goes on.
    alice.child.stdin!.write('/state foo\n');
    await alice.waitFor((l) => l.event === 'error' && /key=value/.test(String(l.error)), 3000, 'the /state error line');
    alice.child.stdin!.write('/state mood=happy\n');
    await server.waitFor((l) => l.event === 'state' && (l.state as Record<string, string>)?.mood === 'happy', 3000, 'the state log line');
    const on = server.lines.filter((l) => l.event === 'online').map((l) => l.user);
    assert.deepEqual(on.sort(), ['alice', 'bob']);

    alice.child.stdin!.write('/quit\n');
    await server.waitFor((l) => l.event === 'offline' && l.user === 'alice', 3000, 'alice offline');
    const off = server.lines.find((l) => l.event === 'offline' && l.user === 'alice')!;
    assert.equal(off.reason, 'client-close');
    await Promise.all([alice.kill(), bob.kill(), server.kill()]);
  });
}

test('serve with TLS and JWT: a client with the CA and a token gets in, one without a token does not; SIGTERM drains with spread hints', async () => {
  const { testCertificate } = await import('../helpers/certs.js');
  const { SignJWT } = await import('jose');
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'longlink-cli-tls-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const { cert, key } = await testCertificate();
  fs.writeFileSync(path.join(dir, 'cert.pem'), cert);
  fs.writeFileSync(path.join(dir, 'key.pem'), key);
  const secret = 'cli-test-secret-of-at-least-32-bytes';
  const server = await spawnServe([
    '--tls-cert', path.join(dir, 'cert.pem'), '--tls-key', path.join(dir, 'key.pem'),
    '--jwt-secret', secret, '--drain-window-ms', '600', '--log-level', 'info',
  ]);
  after(() => server.kill());
  assert.match(server.tcp, /^tls:\/\//);
  assert.match(server.ws, /^wss:\/\//);
  const token = (user: string) =>
    new SignJWT({ sub: user, did: 'd' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(new TextEncoder().encode(secret));
  const clients = [];
  for (const [i, url] of [server.tcp, server.ws, server.tcp].entries()) {
    // The third takes its token from LONGLINK_TOKEN (a flag shows in ps).
    const t = await token(`u${i}`);
    if (i === 2) process.env.LONGLINK_TOKEN = t;
    const c = spawnCli(['client', '--url', url.replace('127.0.0.1', 'localhost'), '--user', `u${i}`, '--device', 'd', ...(i === 2 ? [] : ['--token', t]), '--tls-ca', path.join(dir, 'cert.pem'), '--json']);
    delete process.env.LONGLINK_TOKEN;
    after(() => c.kill());
    await c.waitFor((l) => l.event === 'open', 5000, `client ${i} open over TLS`);
    clients.push(c);
  }
  const anon = spawnCli(['client', '--url', server.tcp.replace('127.0.0.1', 'localhost'), '--user', 'anon', '--device', 'd', '--tls-ca', path.join(dir, 'cert.pem'), '--json']);
  after(() => anon.kill());
  const refused = await anon.waitFor((l) => l.event === 'close', 5000, 'the anonymous client refused');
  assert.equal(refused.code, 4511);
  assert.equal(refused.willReconnect, false);

  server.child.kill('SIGTERM');
  const hints = await Promise.all(clients.map((c) => c.waitFor((l) => l.event === 'reconnecting', 5000, 'a reconnect hint')));
  for (const h of hints) assert.ok((h.delayMs as number) >= 0 && (h.delayMs as number) < 600, `hint ${h.delayMs} within the window`);
  assert.equal(new Set(hints.map((h) => h.delayMs)).size, 3, 'each client got its own hint');
  const stopped = await server.waitFor((l) => l.event === 'stopped', 5000, 'the drain report');
  assert.equal(stopped.connections, 3);
  assert.equal(stopped.settled, 3);
  const code = await new Promise((r) => (server.child.exitCode !== null ? r(server.child.exitCode) : server.child.once('exit', r)));
  assert.equal(code, 0);
});

test('serve with TLS reads a renewed certificate without a restart: on change and on SIGHUP; a pair that does not load keeps the old one; open links stay', async () => {
  const { testCertificate } = await import('../helpers/certs.js');
  const tls = await import('node:tls');
  const { LonglinkClient } = await import('../../src/client/client.js');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'longlink-cli-tls-reload-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const [a, b, c] = await Promise.all([testCertificate(), testCertificate(), testCertificate()]);
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  fs.writeFileSync(certFile, a.cert);
  fs.writeFileSync(keyFile, a.key);
  const server = await spawnServe(['--tls-cert', certFile, '--tls-key', keyFile, '--tls-reload-poll-ms', '100', '--log-level', 'info']);
  after(() => server.kill());
  const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;
  const served = async (url: string) => {
    const u = new URL(url);
    const s = tls.connect({ host: '127.0.0.1', port: Number(u.port), rejectUnauthorized: false, servername: 'localhost' });
    await new Promise<void>((r, j) => s.once('secureConnect', r).once('error', j));
    const f = s.getPeerX509Certificate()!.fingerprint256;
    s.destroy();
    return f;
  };
  const urls = [server.tcp, server.ws];
  for (const u of urls) assert.equal(await served(u), fingerprint(a.cert));
  const client = new LonglinkClient({ url: server.tcp.replace('127.0.0.1', 'localhost'), userId: 'u', deviceId: 'd', tls: { ca: [a.cert, b.cert, c.cert] }, reconnect: { enabled: false } });
  after(() => client.close());
  await client.connect();
  const closed: unknown[] = [];
  client.on('close', (e) => closed.push(e));

  // Renewed in place (certbot writes both files): picked up by the poll.
  let from = server.lines.length;
  fs.writeFileSync(keyFile, b.key);
  fs.writeFileSync(certFile, b.cert);
  await server.waitForAfter(from, (l) => l.event === 'tls-reloaded' && l.trigger === 'file-changed', 5000, 'the reload');
  await new Promise((r) => setTimeout(r, 300)); // a first change may have been read with one file written
  for (const u of urls) assert.equal(await served(u), fingerprint(b.cert), `the new certificate on ${u}`);

  // A certificate without its key: refused, the last good pair still served, on SIGHUP as well.
  from = server.lines.length;
  fs.writeFileSync(certFile, c.cert);
  server.child.kill('SIGHUP');
  const failed = await server.waitForAfter(from, (l) => l.event === 'tls-reload-failed', 5000, 'the refused reload');
  assert.match(String(failed.error), /key|mismatch|values/i);
  for (const u of urls) assert.equal(await served(u), fingerprint(b.cert));
  fs.writeFileSync(keyFile, c.key);
  from = server.lines.length;
  server.child.kill('SIGHUP');
  await server.waitForAfter(from, (l) => l.event === 'tls-reloaded' && l.trigger === 'SIGHUP', 5000, 'the SIGHUP reload');
  for (const u of urls) assert.equal(await served(u), fingerprint(c.cert));

  assert.equal(client.state, 'open', 'the open link was not touched');
  assert.deepEqual(closed, []);
  assert.equal(server.child.exitCode, null, 'SIGHUP does not end the gateway');
});

test('serve without TLS: a SIGHUP (a deploy hook, pkill -HUP) is logged as nothing to reload; the gateway serves on and drains on SIGTERM (Node\'s default for it ended the process at once, every link cut, exit 129)', async () => {
  const server = await spawnServe(['--no-ws']);
  after(() => server.kill());
  const client = new LonglinkClient({ url: server.tcp, userId: 'u', deviceId: 'd', reconnect: { enabled: false } });
  after(() => client.close());
  await client.connect();
  const from = server.lines.length;
  server.child.kill('SIGHUP');
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual({ code: server.child.exitCode, signal: server.child.signalCode }, { code: null, signal: null }, 'SIGHUP does not end the gateway');
  await server.waitForAfter(from, (l) => l.event === 'nothing-to-reload', 5000, 'the nothing-to-reload line');
  assert.equal(client.state, 'open', 'the open link was not touched');
  server.child.kill('SIGTERM');
  const [code] = await once(server.child, 'exit');
  assert.equal(code, 0);
});

test('serve opens the admin port: metrics and API behind the token, the dashboard page, and a drain that stops it', async () => {
  const server = await spawnServe(['--admin-token', 'ops-token', '--drain-window-ms', '200', '--log-level', 'info']);
  after(() => server.kill());
  const listening = await server.waitFor((l) => l.event === 'listening', 1000, 'the listening line');
  const admin = listening.admin as string;
  assert.match(admin, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  assert.equal(listening.dashboard, admin);
  const auth = { authorization: 'Bearer ops-token' };
  assert.equal((await fetch(new URL('metrics', admin))).status, 401);
  const metrics = await fetch(new URL('metrics', admin), { headers: auth });
  assert.equal(metrics.status, 200);
  assert.match(await metrics.text(), /^longlink_online_devices 0$/m);
  assert.match(await (await fetch(admin)).text(), /<html/i, 'the dashboard page');
  const c = spawnCli(['client', '--url', server.tcp, '--user', 'ops', '--device', 'd', '--json']);
  after(() => c.kill());
  await c.waitFor((l) => l.event === 'open', 5000, 'the client open');
  const presence = await (await fetch(new URL('api/presence/ops', admin), { headers: auth })).json();
  assert.equal(presence.online, true);
  const drain = await fetch(new URL('api/drain', admin), { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{"windowMs":200}' });
  assert.equal(drain.status, 202);
  await server.waitFor((l) => l.event === 'admin-drain', 5000, 'the drain logged');
  const stopped = await server.waitFor((l) => l.event === 'stopped', 5000, 'the drain report');
  assert.equal(stopped.connections, 1);
  const code = await new Promise((r) => (server.child.exitCode !== null ? r(server.child.exitCode) : server.child.once('exit', r)));
  assert.equal(code, 0);
});

test('serve on a non-loopback admin host without a token makes one, prints it, and the API wants it', async () => {
  const server = await spawnServe(['--admin-host', '0.0.0.0']);
  try {
    const made = await server.waitFor((l) => l.event === 'admin-token', 5000, 'the generated token');
    const token = String(made.token);
    assert.ok(token.length >= 24);
    const listening = await server.waitFor((l) => l.event === 'listening', 5000, 'listening');
    const port = Number(/:(\d+)\/?$/.exec(String(listening.admin))?.[1]);
    const without = await fetch(`http://127.0.0.1:${port}/api/overview`);
    assert.equal(without.status, 401);
    const withToken = await fetch(`http://127.0.0.1:${port}/api/overview`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(withToken.status, 200);
  } finally {
    await server.kill();
  }
});

test('serve refuses conflicting or out-of-range security options with one clear line', () => {
  const notPem = path.join(os.tmpdir(), `ll-not-pem-${process.pid}.txt`);
  fs.writeFileSync(notPem, 'not a certificate\n');
  try {
    for (const [args, pattern] of [
      [['--tls-cert', '/nonexistent.pem'], /--tls-cert and --tls-key go together/],
      [['--tls-cert', '/nonexistent.pem', '--tls-key', '/nonexistent.pem'], /--tls-cert \/nonexistent\.pem: ENOENT/],
      // A pair that does not load was reported by listen as "cannot listen for TCP ... (change --tcp-port or --host)", exit 1.
      [['--tls-cert', notPem, '--tls-key', notPem], /--tls-cert .* and --tls-key .* do not load as a PEM certificate/],
      [['--jwt-public-key', notPem], /--jwt-public-key .*: not a PEM public key/],
      [['--jwt-secret', 's'.repeat(32), '--jwks-url', 'https://issuer.invalid/jwks'], /exactly one of/],
      [['--max-write-buffer-bytes', '1000'], /maxWriteBufferBytes must be at least/],
      // A backend URL with a typo started a gateway whose every HELLO or message then failed; one named the wrong flag.
      [['--connect-hook', 'localhost:8080/hello'], /--connect-hook.*expected an http:\/\/ or https:\/\/ URL/],
      [['--upstream-webhook', 'notaurl'], /--upstream-webhook.*expected an http:\/\/ or https:\/\/ URL/],
      [['--jwks-url', 'ftp://issuer/jwks'], /--jwks-url.*expected an http:\/\/ or https:\/\/ URL/],
    ] as [string[], RegExp][]) {
      assert.throws(
        () => execFileSync(process.execPath, [CLI, 'serve', '--tcp-port', '0', '--ws-port', '0', '--admin-port', '0', ...args], { encoding: 'utf8', stdio: 'pipe', timeout: 10_000 }),
        (err: { status: number; stdout: string; stderr: string }) => err.status === 2 && pattern.test(err.stdout + err.stderr),
        args.join(' '),
      );
    }
  } finally {
    fs.rmSync(notPem, { force: true });
  }
});

/** Starts serve with `args` and `env` until its listening line; resolves with that line (and stops it). */
function listeningLine(args: string[], env: Record<string, string> = {}): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('LONGLINK_')));
    const child = spawn(process.execPath, [CLI, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...clean, ...env } });
    let out = '';
    let err = '';
    const t = setTimeout(() => (child.kill('SIGKILL'), reject(new Error(`no listening line: ${err} ${out}`))), 15_000);
    child.stderr.on('data', (d) => (err += d));
    child.stdout.on('data', (d) => {
      out += d;
      for (const line of out.split('\n')) {
        if (!line.includes('"event":"listening"')) continue;
        clearTimeout(t);
        child.kill('SIGKILL');
        resolve(JSON.parse(line));
        return;
      }
    });
    child.once('exit', (code) => code !== null && (clearTimeout(t), reject(new Error(`serve exited ${code}: ${err}`))));
  });
}

test('configuration: a YAML file, LONGLINK_* variables and flags, in that order of precedence', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'longlink-config-'));
  try {
    const file = path.join(dir, 'longlink.yaml');
    fs.writeFileSync(file, 'tcp-port: 0\nws: false\nadmin: false\nheartbeat-interval-ms: 3000\nheartbeat-min-interval-ms: 1000\nmiss-budget: 3\n');
    const interval = async (env: Record<string, string>, flags: string[] = []) => ((await listeningLine(['--config', file, ...flags], env)).heartbeat as { intervalMs: number; missBudget: number });
    assert.deepEqual(await interval({}), { ...(await interval({})), intervalMs: 3000, missBudget: 3 }, 'the file');
    assert.equal((await interval({ LONGLINK_HEARTBEAT_INTERVAL_MS: '4000' })).intervalMs, 4000, 'the environment over the file');
    assert.equal((await interval({ LONGLINK_HEARTBEAT_INTERVAL_MS: '4000' }, ['--heartbeat-interval-ms', '5000'])).intervalMs, 5000, 'a flag over both');
    const l = await listeningLine(['--config', file]);
    assert.equal(l.ws, null, '`ws: false` is --no-ws');
    // The file named by LONGLINK_CONFIG (a container's way), as by --config; it was silently not read.
    assert.equal(((await listeningLine([], { LONGLINK_CONFIG: file })).heartbeat as { intervalMs: number }).intervalMs, 3000, 'LONGLINK_CONFIG');
    // Without a file: ports and host from the environment alone.
    const e = await listeningLine([], { LONGLINK_TCP_PORT: '0', LONGLINK_NO_WS: '1', LONGLINK_NO_ADMIN: '1', LONGLINK_HOST: '127.0.0.1' });
    assert.match(String(e.tcp), /^tcp:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(e.ws, null);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a bad configuration file is refused with the path of every bad key, in one line', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'longlink-config-'));
  try {
    const file = path.join(dir, 'bad.yaml');
    fs.writeFileSync(file, 'tcp-port: 70000\nheartbeat-intervall-ms: 1000\nws: maybe\nprint-config: true\n');
    assert.throws(
      () => execFileSync(process.execPath, [CLI, 'serve', '--config', file], { encoding: 'utf8', stdio: 'pipe' }),
      (err: { stderr: string; status: number }) => {
        assert.equal(err.status, 2);
        const lines = err.stderr.trim().split('\n');
        assert.equal(lines.length, 1, err.stderr);
        assert.match(lines[0], /bad\.yaml: .*tcp-port: expected a port, 0 to 65535/);
        // print-config is an action: from a file it made every start print the configuration and exit 0.
        // A misspelled key names the one meant, as git and npm do.
        assert.match(lines[0], /unknown keys heartbeat-intervall-ms \(did you mean heartbeat-interval-ms\?\), print-config/);
        assert.match(lines[0], /ws: /);
        return true;
      },
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('docs/longlink.example.yaml is the complete default configuration, and it loads', () => {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('LONGLINK_')));
  const printed = execFileSync(process.execPath, [CLI, 'serve', '--print-config'], { encoding: 'utf8', env: clean });
  const example = path.resolve(path.dirname(CLI), '../../../docs/longlink.example.yaml');
  assert.equal(fs.readFileSync(example, 'utf8'), printed, 'regenerate it: longlink serve --print-config > docs/longlink.example.yaml');
  assert.equal(execFileSync(process.execPath, [CLI, 'serve', '--config', example, '--print-config'], { encoding: 'utf8', env: clean }), printed);
  for (const flag of ['--tcp-port', '--redis', '--jwt-secret', '--max-data-per-second', '--log-file']) assert.ok(printed.includes(`(${flag}, LONGLINK_`), flag);
});

test('what --print-config writes loads back with --config, a list option (--upstream-events) too', () => {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('LONGLINK_')));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'longlink-config-'));
  try {
    const file = path.join(dir, 'longlink.yaml');
    // --print-config writes the list as a YAML sequence; the file used to refuse it ("Invalid input").
    const printed = execFileSync(process.execPath, [CLI, 'serve', '--upstream-events', 'online,offline', '--tcp-port', '7999', '--print-config'], { encoding: 'utf8', env: clean });
    assert.match(printed, /^upstream-events:\n {2}- online\n {2}- offline$/m);
    fs.writeFileSync(file, printed);
    assert.equal(execFileSync(process.execPath, [CLI, 'serve', '--config', file, '--print-config'], { encoding: 'utf8', env: clean }), printed);
    // A list item the flag would refuse is refused from the file too.
    fs.writeFileSync(file, 'upstream-events: [online, offlin]\n');
    assert.throws(
      () => execFileSync(process.execPath, [CLI, 'serve', '--config', file, '--print-config'], { encoding: 'utf8', stdio: 'pipe', env: clean }),
      (err: { stderr: string; status: number }) => err.status === 2 && /upstream-events: unknown event offlin/.test(err.stderr),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('--log-file writes JSON lines to a file (rolled by pino-roll); --log-format json keeps stdout JSON', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'longlink-log-'));
  const file = path.join(dir, 'logs', 'gateway.log');
  const server = spawnCli(['serve', '--tcp-port', '0', '--no-ws', '--no-admin', '--log-format', 'json', '--log-file', file]);
  try {
    await server.waitFor((l) => l.event === 'listening', 15_000, 'listening on stdout');
    // pino-roll numbers the files (gateway.log.1, ...) and writes from pino's worker: wait for it while serve runs.
    let text = '';
    for (let i = 0; i < 100 && !text.includes('"event":"listening"'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      const found = fs.existsSync(path.dirname(file)) ? fs.readdirSync(path.dirname(file)) : [];
      text = found.map((f) => fs.readFileSync(path.join(path.dirname(file), f), 'utf8')).join('');
    }
    assert.match(text, /"event":"listening"/);
    assert.ok(text.trim().split('\n').every((l) => JSON.parse(l)));
  } finally {
    await server.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("the README's offline queue: bob's next run gets what alice sent while he was away (default device ids are stable)", async () => {
  const server = await spawnServe(['--no-admin']);
  try {
    const bob1 = spawnCli(['client', '--url', server.tcp, '--user', 'bob', '--json']);
    await bob1.waitFor((l) => l.event === 'open', 10_000, 'bob open');
    bob1.child.stdin!.write('/quit\n');
    await server.waitFor((l) => l.event === 'offline' && l.user === 'bob', 10_000, 'bob offline');
    const alice = spawnCli(['client', '--url', server.tcp, '--user', 'alice', '--json']);
    await alice.waitFor((l) => l.event === 'open', 10_000, 'alice open');
    alice.child.stdin!.write('@bob hello bob\n');
    await alice.waitFor((l) => l.event === 'acked', 10_000, 'alice acked');
    // A user never seen: said so, not a silent empty result.
    alice.child.stdin!.write('@nobody hi\n');
    await alice.waitFor((l) => l.event === 'message' && /nobody has never connected/.test(String(l.text)), 10_000, 'the unknown-user notice');
    const bob2 = spawnCli(['client', '--url', server.tcp, '--user', 'bob', '--json']);
    const got = await bob2.waitFor((l) => l.event === 'message', 10_000, 'the queued message');
    assert.equal(got.text, 'alice: hello bob');
    await Promise.all([alice.kill(), bob2.kill(), bob1.kill()]);
  } finally {
    await server.kill();
  }
});

test('tune: from a model, and from what a running gateway measured (its admin URL): a policy, or exit 3 and why none', async () => {
  const run = (args: string[]) => {
    try {
      return { code: 0, out: execFileSync(process.execPath, [CLI, 'tune', ...args], { encoding: 'utf8', stdio: 'pipe' }) };
    } catch (err) {
      const e = err as { status: number; stdout: string; stderr: string };
      return { code: e.status, out: e.stdout + e.stderr };
    }
  };
  const model = run(['--detect-within', '30s', '--false-suspicions-per-month', '1', '--loss', '0.01', '--delay', '0', '--jitter', '20']);
  assert.equal(model.code, 0, model.out);
  assert.match(model.out, /a heartbeat every 9\.9\ds/);
  assert.match(model.out, /--detector freshness/);
  const none = run(['--detect-within', '30s', '--loss', '0.3', '--min-interval', '5s']);
  assert.equal(none.code, 3);
  assert.match(none.out, /no policy meets it/);
  assert.match(none.out, /--detect-within \d/);
  assert.equal(run(['--detect-within', 'soon']).code, 2, 'a bad duration is refused by the parser (exit 2, as every command)');
  // A file that is not a gateway's measurements, or holds too few: exit 1 with why.
  const notStats = path.join(os.tmpdir(), `ll-not-network-${process.pid}.json`);
  for (const [body, why] of [['{"tcp":{}}', /holds no tcp heartbeat measurements/], ['not json', /ll-not-network/]] as const) {
    fs.writeFileSync(notStats, body);
    const r = run(['--detect-within', '30s', '--from', notStats]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, why);
  }
  fs.rmSync(notStats, { force: true });
  // An admin URL nothing answers on (the gateway not started, a wrong port): one line saying what to check, not fetch's stack.
  const closed = net.createServer().listen(0, '127.0.0.1');
  await once(closed, 'listening');
  const closedPort = (closed.address() as net.AddressInfo).port;
  await new Promise((r) => closed.close(r));
  for (const from of [`http://127.0.0.1:${closedPort}`, `http://127.0.0.1:${closedPort}/metrics`]) {
    const gone = run(['--detect-within', '30s', '--from', from]);
    // Exit 1: the run failed (2 is a refused option, 3 a target no interval meets).
    assert.equal(gone.code, 1, gone.out);
    assert.equal(gone.out.trim().split('\n').length, 1, gone.out);
    assert.match(gone.out, /^longlink tune: cannot read http:\/\/127\.0\.0\.1:\d+\/(api\/network|metrics): .*ECONNREFUSED.*admin port/);
  }

  // A gateway measuring real heartbeats on loopback, then tune reading its admin port.
  const { Gateway } = await import('../../src/gateway/gateway.js');
  const { AdminServer } = await import('../../src/admin/admin-server.js');
  const { LonglinkClient } = await import('../../src/client/client.js');
  const gw = new Gateway({ tcp: { host: '127.0.0.1', port: 0 }, ws: false, heartbeat: { intervalMs: 100, minIntervalMs: 50, maxIntervalMs: 10_000 } });
  const a = await gw.listen();
  const admin = new AdminServer(gw, { port: 0 });
  const port = (await admin.listen()).port;
  const clients = Array.from({ length: 20 }, (_, i) => new LonglinkClient({ url: `tcp://127.0.0.1:${a.tcp!.port}`, userId: `t${i}`, deviceId: 'd', intervalMs: 100, adaptive: false }));
  try {
    await Promise.all(clients.map((c) => c.connect()));
    for (let i = 0; i < 100 && gw.networkStats().tcp.heartbeats.count < 300; i++) await new Promise((r) => setTimeout(r, 50));
    const stats = gw.networkStats();
    assert.ok(stats.tcp.heartbeats.count >= 300, `${stats.tcp.heartbeats.count} gaps measured`);
    const measured = await new Promise<{ code: number; out: string }>((resolve) => {
      const p = spawn(process.execPath, [CLI, 'tune', '--detect-within', '2s', '--min-interval', '50ms', '--from', `http://127.0.0.1:${port}`, '--json']);
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (out += d));
      p.on('close', (code) => resolve({ code: code ?? -1, out }));
    });
    assert.equal(measured.code, 0, measured.out);
    const j = JSON.parse(measured.out);
    assert.match(j.network.source, /measured by .* over tcp/);
    assert.ok(j.network.heartbeats >= 300);
    assert.ok(j.result.ok && j.result.intervalMs >= 50 && j.result.intervalMs < 2000, JSON.stringify(j.result));
    // From the Prometheus scrape: coarser (quantiles), the same kind of answer.
    const scraped = await new Promise<{ code: number; out: string }>((resolve) => {
      const p = spawn(process.execPath, [CLI, 'tune', '--detect-within', '2s', '--min-interval', '50ms', '--from', `http://127.0.0.1:${port}/metrics`]);
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (out += d));
      p.on('close', (code) => resolve({ code: code ?? -1, out }));
    });
    assert.equal(scraped.code, 0, scraped.out);
    assert.match(scraped.out, /from the scraped quantiles/);
    assert.match(scraped.out, /freshness detector/);
    // The same from a saved file.
    const file = path.join(os.tmpdir(), `ll-network-${process.pid}.json`);
    fs.writeFileSync(file, JSON.stringify(stats));
    const fromFile = run(['--detect-within', '2s', '--min-interval', '50ms', '--from', file]);
    fs.rmSync(file, { force: true });
    assert.equal(fromFile.code, 0, fromFile.out);
    assert.match(fromFile.out, /freshness detector/);
  } finally {
    for (const c of clients) c.close();
    await admin.close();
    await gw.close();
  }
});

test('longlink client exits with code 1 when the gateway ends its session for good (kicked), and 0 on /quit', async () => {
  const server = await spawnServe(['--admin-token', 'ops-token', '--log-level', 'info']);
  const clients: ReturnType<typeof spawnCli>[] = [];
  try {
    const listening = await server.waitFor((l) => l.event === 'listening', 5000, 'the listening line');
    const admin = listening.admin as string;
    const exitOf = (c: ReturnType<typeof spawnCli>) => new Promise<number | null>((r) => (c.child.exitCode !== null ? r(c.child.exitCode) : c.child.once('exit', (code) => r(code))));
    const kicked = spawnCli(['client', '--url', server.tcp, '--user', 'k', '--device', 'd', '--json']);
    clients.push(kicked);
    await kicked.waitFor((l) => l.event === 'open', 10_000, 'the client open');
    const r = await fetch(new URL('api/kick', admin), { method: 'POST', headers: { authorization: 'Bearer ops-token', 'content-type': 'application/json' }, body: '{"userId":"k"}' });
    assert.equal(r.status, 200);
    await kicked.waitFor((l) => l.event === 'close' && l.code === 4507, 5000, 'the kick');
    const code = await Promise.race([exitOf(kicked), new Promise((r) => setTimeout(r, 3000, 'still running'))]);
    assert.equal(code, 1);
    const quits = spawnCli(['client', '--url', server.tcp, '--user', 'q', '--device', 'd', '--json']);
    clients.push(quits);
    await quits.waitFor((l) => l.event === 'open', 10_000, 'the second client open');
    quits.child.stdin!.write('/quit\n');
    assert.equal(await exitOf(quits), 0);
  } finally {
    await Promise.all(clients.map((c) => c.kill()));
    await server.kill();
  }
});

test('longlink client: a bad option ends it with one line naming it and exit 2, not a stack trace', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'longlink-client-'));
  try {
    const state = path.join(dir, 'learner.json');
    fs.writeFileSync(state, 'garbage\n');
    const cases: [string[], RegExp][] = [
      [['--url', 'http://127.0.0.1:7422'], /--url|url: scheme http: is not supported/],
      [['--url', '127.0.0.1:7420'], /is not a URL/],
      [['--url', 'tls://127.0.0.1:1', '--tls-ca', path.join(dir, 'missing.pem')], /--tls-ca .*missing\.pem: ENOENT/],
      [['--adaptive', '--learner-state', state], /--learner-state .*learner\.json: .*not valid JSON/],
      [['--interval-ms', 'abc'], /--interval-ms.*expected a non-negative integer/],
      // Given without what they act with: nothing learned was loaded or saved, no CA trusted.
      [['--learner-state', path.join(dir, 'new.json')], /--learner-state needs --adaptive/],
      [['--network', 'wifi:home'], /--network needs --adaptive/],
      [['--url', 'tcp://127.0.0.1:1', '--tls-ca', path.join(dir, 'ca.pem')], /--tls-ca needs a tls:\/\/ or wss:\/\/ --url/],
    ];
    for (const [args, pattern] of cases) {
      const r = spawnSync(process.execPath, [CLI, 'client', ...args], { encoding: 'utf8', input: '', timeout: 10_000 });
      assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status}; ${r.stderr}`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `${args.join(' ')}: one line, got ${r.stderr}`);
      assert.match(lines[0], pattern);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('longlink client: Ctrl-C while it is still trying to connect ends it with exit 0, not "cannot connect" and exit 1', async () => {
  // A port nothing listens on: the client keeps reconnecting (a gateway not up yet).
  const probe = net.createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));
  const c = spawnCli(['client', '--url', `tcp://127.0.0.1:${port}`, '--user', 'impatient', '--json']);
  try {
    await c.waitFor((l) => l.event === 'reconnecting', 10_000, 'a reconnect');
    const exited = once(c.child, 'exit');
    c.child.kill('SIGINT');
    const [code] = await exited;
    assert.equal(code, 0);
    assert.ok(!c.lines.some((l) => l.event === 'error'), `no error line: ${JSON.stringify(c.lines.slice(-3))}`);
  } finally {
    await c.kill();
  }
});

test("SIGTERM writes the log limiter's held-back counts before it exits (the last window's suppressed lines were lost)", async () => {
  const server = spawnCli(['serve', '--tcp-port', '0', '--ws-port', '0', '--no-admin', '--drain-window-ms', '0', '--drain-ack-timeout-ms', '0']);
  const clients: LonglinkClient[] = [];
  try {
    const l = await server.waitFor((x) => x.event === 'listening', 10_000, 'listening');
    for (let i = 0; i < 25; i++) {
      const c = new LonglinkClient({ url: l.tcp as string, userId: `u${i}`, deviceId: 'd', reconnect: { enabled: false } });
      clients.push(c);
      await c.connect();
    }
    // 25 online lines: 20 written, 5 held back for the summary at the end of the 10 s window.
    await server.waitFor(() => server.lines.filter((x) => x.event === 'online').length === 20, 5000, '20 online lines');
    server.child.kill('SIGTERM');
    const [code] = await once(server.child, 'exit');
    assert.equal(code, 0);
    const suppressed = server.lines.filter((x) => x.event === 'suppressed');
    assert.ok(suppressed.some((x) => x.key === 'online' && x.held === 5), `the 5 held-back online lines are counted: ${JSON.stringify(suppressed)}`);
    assert.ok(suppressed.some((x) => x.key === 'offline going-away' && x.held === 5), `the 5 held-back offline lines are counted: ${JSON.stringify(suppressed)}`);
  } finally {
    for (const c of clients) c.close();
    await server.kill();
  }
});

test('longlink client: lines piped with /quit before the link is up are sent and acknowledged before it exits (they were dropped, exit 0)', async () => {
  const server = await spawnServe(['--no-admin']);
  const c = spawnCli(['client', '--url', server.tcp, '--user', 'piped', '--device', 'd', '--json']);
  try {
    // As `printf 'hi\n/quit\n' | longlink client`: both lines come before the first WELCOME.
    c.child.stdin!.end('hi\n/quit\n');
    const [code] = await once(c.child, 'exit');
    const queued = c.lines.find((l) => l.event === 'queued');
    assert.ok(queued, `hi was queued: ${JSON.stringify(c.lines)}`);
    assert.ok(c.lines.some((l) => l.event === 'acked' && l.id === queued.id), `hi acknowledged before the exit: ${JSON.stringify(c.lines.slice(-4))}`);
    assert.ok(!c.lines.some((l) => l.event === 'unsent'), 'nothing left unsent');
    assert.equal(code, 0);
  } finally {
    await c.kill();
    await server.kill();
  }
});

test('longlink client: lines after /quit are not read, so a second /quit does not end it before what was typed is acknowledged', async () => {
  const server = await spawnServe(['--no-admin']);
  const c = spawnCli(['client', '--url', server.tcp, '--user', 'twice', '--device', 'd', '--json']);
  try {
    await c.waitFor((l) => l.event === 'open', 10_000, 'the client open');
    // One chunk, as from a pipe or a paste: readline still hands over the lines after the first /quit.
    c.child.stdin!.end('hi\n/quit\n/quit\n');
    const [code] = await once(c.child, 'exit');
    assert.ok(c.lines.some((l) => l.event === 'acked'), `hi acknowledged before the exit: ${JSON.stringify(c.lines.slice(-3))}`);
    assert.ok(c.lines.some((l) => l.event === 'close'), 'closed with CLOSE');
    assert.equal(code, 0);
  } finally {
    await c.kill();
    await server.kill();
  }
});

test('longlink client: /quit with messages the gateway never acknowledged exits 3, not 0 as if they went through', async () => {
  // A port nothing listens on: "hi" cannot be sent within the 5 s /quit waits.
  const probe = net.createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));
  const c = spawnCli(['client', '--url', `tcp://127.0.0.1:${port}`, '--user', 'unsent', '--json']);
  try {
    c.child.stdin!.end('hi\n/quit\n');
    const [code] = await once(c.child, 'exit');
    assert.ok(c.lines.some((l) => l.event === 'unsent'), `the unsent line: ${JSON.stringify(c.lines.slice(-3))}`);
    assert.equal(code, 3);
    // A second Ctrl-C leaves at once, without the wait: what was typed is not sent either.
    const d = spawnCli(['client', '--url', `tcp://127.0.0.1:${port}`, '--user', 'unsent', '--json']);
    try {
      d.child.stdin!.write('hi\n');
      await d.waitFor((l) => l.event === 'queued', 10_000, 'hi queued');
      const exited = once(d.child, 'exit');
      d.child.kill('SIGINT');
      // Apart: two signals sent at once are delivered as one.
      await new Promise((r) => setTimeout(r, 300));
      d.child.kill('SIGINT');
      assert.equal((await exited)[0], 3);
    } finally {
      await d.kill();
    }
  } finally {
    await c.kill();
  }
});

test('client --json piped into a reader that goes away (| head -1) ends quietly, exit 0: the next write failed with an uncaught EPIPE', async () => {
  const server = await spawnServe(['--heartbeat-interval-ms', '200', '--heartbeat-min-interval-ms', '100']);
  after(() => server.kill());
  const child = spawn(process.execPath, [CLI, 'client', '--url', server.tcp, '--user', 'u', '--device', 'd', '--json'], { stdio: ['pipe', 'pipe', 'pipe'] });
  after(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // The first line, then the reader closes its end (RTT lines follow every 200 ms).
  await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
  child.stdout!.destroy();
  const code = await Promise.race([exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 10_000))]);
  assert.equal(code, 0, `exit ${code}; stderr: ${stderr}`);
  assert.doesNotMatch(stderr, /EPIPE|Error/);
  await server.kill();
});
