import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { MAX_ADMIN_SOCKETS_PER_ADDRESS } from '../../src/admin/admin-server.js';
import { after, before, describe, test } from 'node:test';
import { LonglinkClient } from '../../src/client/client.js';
import { RedisStore } from '../../src/gateway/stores/redis-store.js';
import { once } from 'node:events';
import { WORKER_RESTART } from '../../src/cli/serve.js';
import { sleep, spawnCli, spawnServe, type JsonProc } from '../helpers/procs.js';
import { redisUnavailable, startRedis, type TestRedis } from '../helpers/redis.js';

// Three gateway processes on one real Redis. The CLI's demo application
// relays "@user text" as a reliable push, so a client on one node pushes to
// users on the others. Then a node dies with SIGKILL in the middle of a
// stream and a gateway restarts with messages queued.

const LEASE_MS = 1500;
const why = redisUnavailable();

type Node = JsonProc & { tcp: string; ws: string };
const serve = (redis: TestRedis, id: string) => spawnServe(['--no-ws', '--redis', redis.url, '--node-id', id, '--lease-ms', String(LEASE_MS)]);

/** Writes one raw request and resolves with what came back ('' if the socket closed without an answer). */
function rawRequest(port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => s.write(text));
    let got = '';
    s.on('data', (d) => (got += d));
    s.on('close', () => resolve(got));
    s.on('error', () => {});
    setTimeout(() => s.destroy(), 3000);
  });
}

function receiver(userId: string, urls: string[]) {
  const c = new LonglinkClient({ url: urls, userId, deviceId: 'phone', reconnect: { initialDelayMs: 50, maxDelayMs: 200 }, probes: { pongTimeoutMs: 500, probeCount: 1, probeIntervalMs: 200 } });
  const got: string[] = [];
  c.on('message', (m) => got.push(Buffer.from(m.payload).toString()));
  return { c, got };
}

describe('cluster on Redis', { skip: why ? `skipped: ${why}` : false }, () => {
  let redis: TestRedis;
  const procs: Node[] = [];
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    for (const p of procs) await p.kill();
    await redis?.stop();
  });

  test('pushes cross nodes; a node killed mid-stream loses nothing: its user resumes on another node and gets every message once, in order', async () => {
    const [n1, n2, n3] = await Promise.all(['n1', 'n2', 'n3'].map((id) => serve(redis, id)));
    procs.push(n1, n2, n3);
    const alice = new LonglinkClient({ url: n1.tcp, userId: 'alice', deviceId: 'laptop' });
    const bob = receiver('bob', [n2.tcp, n3.tcp]);
    const carol = receiver('carol', [n3.tcp]);
    await Promise.all([alice.connect(), bob.c.connect(), carol.c.connect()]);
    const presence = new RedisStore({ url: redis.url });
    try {
      assert.deepEqual((await presence.devices('bob')).map((e) => e.nodeId), ['n2']);

      // Cross-node pushes: alice on n1 to bob on n2 and carol on n3.
      alice.send('@carol hello from n1');
      for (let i = 0; i < 200 && carol.got.length === 0; i++) await sleep(10);
      assert.deepEqual(carol.got, ['alice: hello from n1']);

      const N = 400;
      let killedAt = 0;
      let killed: Promise<void> | null = null;
      // n2 dies with SIGKILL (no goodbye, no lease release) the moment bob has 100 of the 400.
      bob.c.on('message', () => {
        if (killed === null && bob.got.length === 100) {
          killedAt = Date.now();
          killed = n2.kill();
        }
      });
      for (let i = 1; i <= N; i++) {
        alice.send(`@bob m${i}`);
        if (i % 20 === 0) await sleep(5);
      }
      for (let i = 0; i < 500 && killed === null; i++) await sleep(10);
      assert.ok(killedAt > 0, 'the node died mid-stream');
      await killed;
      for (let i = 0; i < 1000 && bob.got.length < N; i++) await sleep(20);
      const want = Array.from({ length: N }, (_, i) => `alice: m${i + 1}`);
      assert.deepEqual(bob.got, want, 'every message once, in order');
      assert.equal(bob.c.url, n3.tcp, 'bob moved to n3');
      for (let i = 0; i < 100 && alice.pendingCount > 0; i++) await sleep(20);
      assert.equal(alice.pendingCount, 0, 'every message of alice was acknowledged');

      // Presence: bob on n3; never on the dead n2 once its lease lapsed.
      const bound = killedAt + LEASE_MS + 200;
      while (Date.now() < bound + 1000) {
        const nodes = (await presence.devices('bob')).map((e) => e.nodeId);
        if (Date.now() > bound) assert.deepEqual(nodes, ['n3'], `presence after the lease bound: ${nodes}`);
        await sleep(100);
      }
    } finally {
      alice.close();
      bob.c.close();
      carol.c.close();
      await presence.close();
    }
  });

  test('a gateway killed and restarted keeps the messages queued for offline devices', async () => {
    const gw = await serve(redis, 'r1');
    procs.push(gw);
    // dave's device becomes known, then goes offline.
    const dave = receiver('dave', [gw.tcp]);
    await dave.c.connect();
    dave.c.close();
    const alice = new LonglinkClient({ url: gw.tcp, userId: 'alice', deviceId: 'laptop2' });
    await alice.connect();
    for (let i = 1; i <= 5; i++) alice.send(`@dave q${i}`);
    for (let i = 0; i < 200 && alice.pendingCount > 0; i++) await sleep(10);
    await sleep(200); // the relay's push is written to Redis right after alice's message is accepted
    alice.close();
    await gw.kill();

    const again = await serve(redis, 'r2');
    procs.push(again);
    const dave2 = receiver('dave', [again.tcp]);
    await dave2.c.connect();
    for (let i = 0; i < 200 && dave2.got.length < 5; i++) await sleep(10);
    assert.deepEqual(dave2.got, [1, 2, 3, 4, 5].map((i) => `alice: q${i}`));
    dave2.c.close();
  });

  test('serve --workers 2 whose workers cannot start (a key file that is not there) exits 2 as one process would, rather than fork replacements for ever', async () => {
    const gw = spawnCli(['serve', '--tcp-port', '0', '--no-ws', '--admin-port', '0', '--redis', redis.url, '--workers', '2', '--jwt-public-key', '/nonexistent/key.pem']);
    procs.push(gw as Node);
    const [code] = (await Promise.race([once(gw.child, 'exit'), sleep(15_000).then(() => ['still running'])])) as [number | string];
    assert.equal(code, 2, 'the primary stops with the bad-option exit code');
    assert.ok(gw.lines.filter((l) => l.event === 'bad-option').length <= 2, `no worker forked past the first two: ${gw.lines.filter((l) => l.event === 'bad-option').length}`);
    assert.ok(gw.lines.some((l) => l.event === 'cannot-start' && typeof l.worker === 'number'), 'the primary says why it stopped');
  });

  test('serve --workers: a worker that keeps dying is replaced after a delay that doubles each time, not forked again at once', async () => {
    const gw = await spawnServe(['--no-ws', '--redis', redis.url, '--redis-prefix', 'wb:', '--node-id', 'bo', '--workers', '2', '--lease-ms', String(LEASE_MS)]);
    procs.push(gw);
    await gw.waitFor((l) => l.event === 'listening' && l.workers === 2, 10_000, "the primary's listening line");
    const killed = new Set<number>();
    const delays: number[] = [];
    for (let round = 0; round < 3; round++) {
      // Worker 1 (each time a new process), killed as soon as it listens: its pid is on its listening line.
      const up = await gw.waitFor((l) => l.event === 'listening' && l.nodeId === 'bo-w1' && !killed.has(l.pid as number), 20_000, 'worker 1 listening');
      killed.add(up.pid as number);
      const from = gw.lines.length;
      process.kill(up.pid as number, 'SIGKILL');
      const exit = await gw.waitForAfter(from, (l) => l.event === 'worker-exit', 5000, 'the worker-exit line');
      delays.push(exit.restartInMs as number);
    }
    assert.deepEqual(delays, [0, WORKER_RESTART.firstDelayMs, 2 * WORKER_RESTART.firstDelayMs]);
  });

  test('serve --workers 2: one hung worker leaves the cluster /metrics with the other worker\'s metrics and a count of the unanswered, not a 503 for all', async () => {
    const gw = await spawnServe(['--no-ws', '--redis', redis.url, '--redis-prefix', 'wh:', '--node-id', 'hu', '--workers', '2', '--lease-ms', String(LEASE_MS)]);
    procs.push(gw);
    const summary = await gw.waitFor((l) => l.event === 'listening' && l.workers === 2, 10_000, "the primary's listening line");
    const healthy = await (await fetch(String(summary.metrics))).text();
    assert.match(healthy, /^longlink_cluster_workers_unanswered 0$/m);
    const w1 = await gw.waitFor((l) => l.event === 'listening' && l.nodeId === 'hu-w1', 5000, 'worker 1 listening');
    // Worker 1's event loop stops (SIGSTOP: as an endless loop would, without its CPU).
    process.kill(w1.pid as number, 'SIGSTOP');
    try {
      const t0 = Date.now();
      const res = await fetch(String(summary.metrics), { signal: AbortSignal.timeout(10_000) });
      const text = await res.text();
      assert.equal(res.status, 200, `the scrape answered: ${text.slice(0, 200)}`);
      assert.ok(Date.now() - t0 < 4500, `within the deadline: ${Date.now() - t0} ms`);
      assert.match(text, /^longlink_cluster_workers_unanswered 1$/m, 'the hung worker is counted');
      assert.match(text, /^longlink_online_devices 0$/m, "the other worker's gauges are there");
    } finally {
      process.kill(w1.pid as number, 'SIGCONT');
    }
  });

  test("serve --workers 2: the primary's /metrics does not give a user with devices on both workers as two online users (it summed each worker's count of its own users)", async () => {
    const gw = await spawnServe(['--no-ws', '--redis', redis.url, '--redis-prefix', 'ou:', '--node-id', 'ou', '--workers', '2', '--lease-ms', String(LEASE_MS)]);
    procs.push(gw);
    const summary = await gw.waitFor((l) => l.event === 'listening' && l.workers === 2, 15_000, "the primary's listening line");
    await gw.waitFor((l) => l.event === 'listening' && l.nodeId === 'ou-w1', 15_000, 'worker 1 listening');
    const presence = new RedisStore({ url: redis.url, prefix: 'ou:' });
    const clients: LonglinkClient[] = [];
    try {
      // One user's devices until two workers hold them (the cluster hands connections round-robin).
      for (let i = 0; i < 8 && new Set((await presence.devices('eve')).map((e) => e.nodeId)).size < 2; i++) {
        const c = new LonglinkClient({ url: String(summary.tcp), userId: 'eve', deviceId: `d${i}`, reconnect: { enabled: false } });
        clients.push(c);
        await c.connect();
      }
      assert.equal(new Set((await presence.devices('eve')).map((e) => e.nodeId)).size, 2, 'eve is online on both workers');
      const text = await (await fetch(String(summary.metrics), { signal: AbortSignal.timeout(10_000) })).text();
      assert.match(text, new RegExp(`^longlink_online_devices ${clients.length}$`, 'm'), 'devices are summed: each is on one worker');
      const users = /^longlink_online_users (\d+)$/m.exec(text)?.[1];
      assert.equal(users, undefined, `one user online, given as ${users}: no sum of the workers' counts is the host's`);
    } finally {
      for (const c of clients) c.close();
      await presence.close();
    }
  });

  test('serve --workers 2: a primary that was stopped (a paused container, SIGSTOP) for longer than --worker-hung-ms kills no live worker when it resumes', async () => {
    const gw = await spawnServe(['--no-ws', '--redis', redis.url, '--redis-prefix', 'wp:', '--node-id', 'hp', '--workers', '2', '--lease-ms', String(LEASE_MS), '--worker-hung-ms', '1000']);
    procs.push(gw);
    await gw.waitFor((l) => l.event === 'listening' && l.workers === 2, 10_000, "the primary's listening line");
    await sleep(500);
    const from = gw.lines.length;
    // The primary alone stops: its workers run on and would answer any ping; none is sent meanwhile.
    process.kill(gw.child.pid as number, 'SIGSTOP');
    try {
      await sleep(2500);
    } finally {
      process.kill(gw.child.pid as number, 'SIGCONT');
    }
    await sleep(1500);
    const hung = gw.lines.slice(from).filter((l) => l.event === 'worker-hung');
    assert.deepEqual(hung, [], 'the silence was the primary\'s own: no worker is killed for it');
  });

  test('serve --workers 2: a worker whose event loop is stuck is killed after --worker-hung-ms and replaced, rather than keep its share of new connections for good', async () => {
    const gw = await spawnServe(['--no-ws', '--redis', redis.url, '--redis-prefix', 'wg:', '--node-id', 'hg', '--workers', '2', '--lease-ms', String(LEASE_MS), '--worker-hung-ms', '1000']);
    procs.push(gw);
    await gw.waitFor((l) => l.event === 'listening' && l.workers === 2, 10_000, "the primary's listening line");
    const w1 = await gw.waitFor((l) => l.event === 'listening' && l.nodeId === 'hg-w1', 5000, 'worker 1 listening');
    // Up and answering: not killed while it is.
    await sleep(1500);
    assert.ok(!gw.lines.some((l) => l.event === 'worker-hung'), 'a live worker is left alone');
    const from = gw.lines.length;
    process.kill(w1.pid as number, 'SIGSTOP');
    try {
      const hung = await gw.waitForAfter(from, (l) => l.event === 'worker-hung', 5000, 'the worker-hung line');
      assert.equal(hung.worker, 1);
      const exit = await gw.waitForAfter(from, (l) => l.event === 'worker-exit', 5000, 'the worker-exit line');
      assert.equal(exit.signal, 'SIGKILL');
      await gw.waitForAfter(from, (l) => l.event === 'listening' && l.nodeId === 'hg-w1' && l.pid !== w1.pid, 20_000, 'its replacement listening');
      // Every new connection gets a WELCOME again.
      const cs = Array.from({ length: 4 }, (_, i) => receiver(`hg${i}`, [gw.tcp]));
      try {
        await Promise.all(cs.map((c) => c.c.connect()));
      } finally {
        for (const c of cs) c.c.close();
      }
    } finally {
      try {
        process.kill(w1.pid as number, 'SIGCONT');
      } catch {
        // killed already
      }
    }
  });

  test('serve --workers 2: SIGTERM to the primary while a worker is stuck leaves no worker behind once the primary has exited (it left the stuck one running, an orphan)', async () => {
    const gw = await spawnServe(['--no-ws', '--redis', redis.url, '--redis-prefix', 'ws:', '--node-id', 'hs', '--workers', '2', '--lease-ms', String(LEASE_MS), '--worker-hung-ms', '0', '--drain-window-ms', '0', '--drain-ack-timeout-ms', '0']);
    procs.push(gw);
    await gw.waitFor((l) => l.event === 'listening' && l.workers === 2, 10_000, "the primary's listening line");
    const w1 = await gw.waitFor((l) => l.event === 'listening' && l.nodeId === 'hs-w1', 5000, 'worker 1 listening');
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    // Its event loop stops (SIGSTOP: as an endless loop would): it handles neither SIGTERM nor the primary's going.
    process.kill(w1.pid as number, 'SIGSTOP');
    try {
      const exited = once(gw.child, 'exit');
      gw.child.kill('SIGTERM');
      const [code] = (await Promise.race([exited, sleep(15_000).then(() => ['the primary did not exit'])])) as [unknown];
      assert.equal(code, 0, 'the primary exits');
      for (let t = 0; t < 40 && alive(w1.pid as number); t++) await sleep(50);
      assert.ok(!alive(w1.pid as number), `worker 1 (pid ${w1.pid as number}) is gone with the primary`);
    } finally {
      try {
        process.kill(w1.pid as number, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  });

  test('serve --workers 2: one port, two worker nodes sharing presence and routing; a killed worker is replaced', async () => {
    const gw = await spawnServe(['--no-ws', '--redis', redis.url, '--redis-prefix', 'wk:', '--node-id', 'box', '--workers', '2', '--lease-ms', String(LEASE_MS)]);
    procs.push(gw);
    const summary = await gw.waitFor((l) => l.event === 'listening' && l.workers === 2, 10_000, "the primary's listening line");
    assert.equal(summary.tcp, gw.tcp, 'one port for both workers');
    const users = Array.from({ length: 8 }, (_, i) => receiver(`w${i}`, [gw.tcp]));
    await Promise.all(users.map((u) => u.c.connect()));
    const presence = new RedisStore({ url: redis.url, prefix: 'wk:' });
    try {
      const nodeOf = async (u: string) => (await presence.devices(u))[0]?.nodeId;
      const nodes = await Promise.all(users.map((_, i) => nodeOf(`w${i}`)));
      assert.deepEqual([...new Set(nodes)].sort(), ['box-w0', 'box-w1'], `connections spread over both workers: ${nodes}`);
      // Every user messages every other one, across workers.
      for (let i = 0; i < users.length; i++) users[i].c.send(`@w${(i + 1) % users.length} from w${i}`);
      for (let t = 0; t < 300 && users.some((u) => u.got.length === 0); t++) await sleep(10);
      users.forEach((u, i) => assert.deepEqual(u.got, [`w${(i + users.length - 1) % users.length}: from w${(i + users.length - 1) % users.length}`]));
      // One port for the cluster's metrics: the workers' gauges summed.
      const text = await (await fetch(String(summary.metrics))).text();
      assert.match(text, /^longlink_online_devices 8$/m, 'eight devices online across the two workers');
      assert.match(text, /^longlink_event_loop_delay_seconds\{quantile="0.99"\} /m);
      // Without a token, as on a worker's admin port: a loopback Host only (a page that rebinds its name to 127.0.0.1 reads nothing).
      const rebound = await new Promise<number>((resolve, reject) => {
        const u = new URL(String(summary.metrics));
        request({ host: u.hostname, port: u.port, path: u.pathname, headers: { host: `127.0.0.1.rebind.attacker.example:${u.port}` } }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        })
          .on('error', reject)
          .end();
      });
      assert.equal(rebound, 403, 'a Host that is not a loopback name is refused');
      // And its budgets: silent sockets from one address beyond the bound are closed at accept (they were held for ever).
      const port = Number(new URL(String(summary.metrics)).port);
      const silent: Socket[] = [];
      try {
        for (let i = 0; i <= MAX_ADMIN_SOCKETS_PER_ADDRESS; i++) {
          const s = connect({ port, host: '127.0.0.1', localAddress: '127.0.0.2' });
          s.on('error', () => {});
          await new Promise((r) => s.once('connect', r));
          silent.push(s);
        }
        for (let t = 0; t < 100 && !silent[MAX_ADMIN_SOCKETS_PER_ADDRESS].closed; t++) await sleep(10);
        assert.ok(silent[MAX_ADMIN_SOCKETS_PER_ADDRESS].closed, 'one past the bound is closed');
        assert.ok(!silent[0].closed, 'those within it are not (yet)');
      } finally {
        for (const s of silent) s.destroy();
      }
      // Kill one worker: the primary starts another, and its users come back through the same port.
      const victim = gw.lines.length;
      const workerPids = (await import('node:child_process')).execFileSync('pgrep', ['-P', String(gw.child.pid)]).toString().trim().split('\n').map(Number);
      assert.equal(workerPids.length, 2);
      process.kill(workerPids[1], 'SIGKILL');
      await gw.waitForAfter(victim, (l) => l.event === 'worker-exit', 5000, 'the worker-exit line');
      for (let t = 0; t < 500 && users.some((u) => u.c.state !== 'open'); t++) await sleep(20);
      assert.ok(users.every((u) => u.c.state === 'open'), 'every user is connected again');
    } finally {
      for (const u of users) u.c.close();
      await presence.close();
    }
  });

  test('serve --workers: a request target the URL parser refuses (no token needed) is a 400 from the primary, which serves on: it once ended the primary, and every worker with it', async () => {
    const gw = await spawnServe(['--no-ws', '--redis', redis.url, '--redis-prefix', 'rv:', '--node-id', 'rv', '--workers', '2', '--lease-ms', String(LEASE_MS), '--admin-token', 'the-token']);
    procs.push(gw);
    const summary = await gw.waitFor((l) => l.event === 'listening' && l.workers === 2, 15_000, "the primary's listening line");
    const port = Number(new URL(String(summary.metrics)).port);
    const answer = await rawRequest(port, 'GET //[ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    assert.match(answer, /^HTTP\/1\.1 400 [^]*LL_ERR_BAD_PATH/, `the answer: ${JSON.stringify(answer.slice(0, 200))}`);
    await sleep(300);
    assert.equal(gw.child.exitCode, null, 'the primary is alive');
    const res = await fetch(String(summary.metrics), { headers: { authorization: 'Bearer the-token' }, signal: AbortSignal.timeout(10_000) });
    assert.equal(res.status, 200, 'and serves the cluster /metrics');
    await res.text();
  });

  test("serve --workers: the primary's /metrics refuses a wrong method (405) and a missing token (401) with the admin port's JSON errors, as docs/OPERATIONS.md promises for every endpoint", async () => {
    const gw = await spawnServe(['--no-ws', '--redis', redis.url, '--redis-prefix', 'me:', '--node-id', 'me', '--workers', '2', '--lease-ms', String(LEASE_MS), '--admin-token', 'the-token']);
    procs.push(gw);
    const summary = await gw.waitFor((l) => l.event === 'listening' && l.workers === 2, 15_000, "the primary's listening line");
    const url = String(summary.metrics);
    const errorOf = async (res: Response) => ({ status: res.status, type: res.headers.get('content-type'), code: ((await res.json().catch(() => null)) as { error?: { code?: string } } | null)?.error?.code });
    const auth = { authorization: 'Bearer the-token' };
    for (const method of ['POST', 'DELETE', 'PUT']) {
      assert.deepEqual(await errorOf(await fetch(url, { method, headers: auth, signal: AbortSignal.timeout(10_000) })), { status: 405, type: 'application/json; charset=utf-8', code: 'LL_ERR_METHOD_NOT_ALLOWED' }, `${method} /metrics`);
    }
    assert.deepEqual(await errorOf(await fetch(url, { signal: AbortSignal.timeout(10_000) })), { status: 401, type: 'application/json; charset=utf-8', code: 'LL_ERR_UNAUTHORIZED' }, 'no token');
    assert.deepEqual(await errorOf(await fetch(new URL('/api/overview', url), { headers: auth, signal: AbortSignal.timeout(10_000) })), { status: 404, type: 'application/json; charset=utf-8', code: 'LL_ERR_NOT_FOUND' }, 'not an endpoint of the primary');
    const res = await fetch(url, { headers: auth, signal: AbortSignal.timeout(10_000) });
    assert.equal(res.status, 200, 'GET with the token is a scrape');
    await res.text();
  });

  test('serve --workers without TLS: a SIGHUP to the primary is logged as nothing to reload and ends nothing (Node\'s default ended the primary at once, and every worker with it, undrained)', async () => {
    const gw = await spawnServe(['--no-ws', '--redis', redis.url, '--redis-prefix', 'nh:', '--node-id', 'nh', '--workers', '2', '--lease-ms', String(LEASE_MS)]);
    procs.push(gw);
    await gw.waitFor((l) => l.event === 'listening' && l.workers === 2, 15_000, "the primary's listening line");
    const from = gw.lines.length;
    gw.child.kill('SIGHUP');
    await sleep(500);
    assert.deepEqual({ code: gw.child.exitCode, signal: gw.child.signalCode }, { code: null, signal: null }, 'SIGHUP does not end the primary');
    await gw.waitForAfter(from, (l) => l.event === 'nothing-to-reload', 5000, 'the nothing-to-reload line');
    assert.deepEqual(gw.lines.slice(from).filter((l) => l.event === 'worker-exit'), [], 'no worker died');
  });

  test('serve --workers with TLS: a SIGHUP (a certificate renewed) while a replacement worker is starting does not kill it: it went to workers with no handler for it yet', async () => {
    const { testCertificate } = await import('../helpers/certs.js');
    const { cert, key } = await testCertificate();
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'longlink-tls-hup-'));
    fs.writeFileSync(path.join(dir, 'cert.pem'), cert);
    fs.writeFileSync(path.join(dir, 'key.pem'), key);
    try {
      const gw = await spawnServe(['--no-ws', '--redis', redis.url, '--redis-prefix', 'th:', '--node-id', 'th', '--workers', '2', '--lease-ms', String(LEASE_MS), '--tls-cert', path.join(dir, 'cert.pem'), '--tls-key', path.join(dir, 'key.pem')]);
      procs.push(gw);
      await gw.waitFor((l) => l.event === 'listening' && l.workers === 2, 15_000, "the primary's listening line");
      const w1 = await gw.waitFor((l) => l.event === 'listening' && l.nodeId === 'th-w1', 15_000, 'worker 1 listening');
      const from = gw.lines.length;
      process.kill(w1.pid as number, 'SIGKILL');
      await gw.waitForAfter(from, (l) => l.event === 'worker-exit', 15_000, 'the worker-exit line');
      // Its replacement is forked at once (on the next turn of the primary's loop) and is starting
      // for a second or so (it waits out its predecessor's lease).
      await sleep(200);
      gw.child.kill('SIGHUP');
      await gw.waitForAfter(from, (l) => l.event === 'listening' && l.nodeId === 'th-w1' && l.pid !== w1.pid, 15_000, 'the replacement listening');
      const exits = gw.lines.slice(from).filter((l) => l.event === 'worker-exit');
      assert.deepEqual(exits.map((l) => l.signal), ['SIGKILL'], 'only the worker killed by the test died');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("serve --workers: docs/OPERATIONS.md's SIGHUP command reaches the primary only, so a replacement worker still starting is not killed by it (pkill -f matched the workers too, whose command line is the primary's)", async () => {
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const { execFileSync } = await import('node:child_process');
    const { CLI, spawnNode } = await import('../helpers/procs.js');
    const doc = fs.readFileSync(path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../docs/OPERATIONS.md'), 'utf8').replace(/\s+/g, ' ');
    const command = /`(pkill -HUP [^`]*'longlink serve'[^`]*)`/.exec(doc)?.[1];
    assert.ok(command, 'the doc gives a pkill command for SIGHUP');
    // Run as the npm bin is (argv[1] .../longlink), from a directory of its own: the pattern matches this cluster only.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'longlink-hup-'));
    fs.symlinkSync(CLI, path.join(dir, 'longlink'));
    try {
      const gw = spawnNode(path.join(dir, 'longlink'), ['serve', '--tcp-port', '0', '--no-ws', '--admin-port', '0', '--redis', redis.url, '--redis-prefix', 'ph:', '--node-id', 'ph', '--workers', '2', '--lease-ms', String(LEASE_MS)]);
      procs.push(gw as Node);
      await gw.waitFor((l) => l.event === 'listening' && l.workers === 2, 15_000, "the primary's listening line");
      const w1 = await gw.waitFor((l) => l.event === 'listening' && l.nodeId === 'ph-w1', 15_000, 'worker 1 listening');
      const from = gw.lines.length;
      process.kill(w1.pid as number, 'SIGKILL');
      await gw.waitForAfter(from, (l) => l.event === 'worker-exit', 15_000, 'the worker-exit line');
      // The replacement is forked at once and is loading its modules, before any handler of its own.
      await sleep(100);
      // exec: a shell of its own would match the pattern too (pkill leaves out only itself).
      execFileSync('sh', ['-c', 'exec ' + command!.replace("'longlink serve'", `'${dir}/longlink serve'`)]);
      await gw.waitForAfter(from, (l) => l.event === 'listening' && l.nodeId === 'ph-w1' && l.pid !== w1.pid, 15_000, 'the replacement listening');
      const exits = gw.lines.slice(from).filter((l) => l.event === 'worker-exit');
      assert.deepEqual(exits.map((l) => l.signal), ['SIGKILL'], 'only the worker killed by the test died');
      assert.ok(gw.lines.slice(from).some((l) => l.event === 'nothing-to-reload' && l.pid === gw.child.pid), 'the primary got it');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("serve --workers with TLS: the primary's listening line gives tls:// and wss:// URLs, as one process's does (it gave tcp:// and ws://)", async () => {
    const { testCertificate } = await import('../helpers/certs.js');
    const { cert, key } = await testCertificate();
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'longlink-tls-workers-'));
    fs.writeFileSync(path.join(dir, 'cert.pem'), cert);
    fs.writeFileSync(path.join(dir, 'key.pem'), key);
    try {
      const gw = await spawnServe(['--redis', redis.url, '--redis-prefix', 'tw:', '--node-id', 'tw', '--workers', '2', '--lease-ms', String(LEASE_MS), '--tls-cert', path.join(dir, 'cert.pem'), '--tls-key', path.join(dir, 'key.pem')]);
      procs.push(gw);
      const summary = await gw.waitFor((l) => l.event === 'listening' && l.workers === 2, 15_000, "the primary's listening line");
      assert.match(String(summary.tcp), /^tls:\/\//);
      assert.match(String(summary.ws), /^wss:\/\//);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
