import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { spawnCli } from '../helpers/procs.js';
import { redisUnavailable, startRedis } from '../helpers/redis.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { FrameType } from '../../src/protocol/frames.js';

// Stopping `serve` while it is still starting: a systemd stop (SIGTERM) during a slow start, a
// Ctrl-C while Redis cannot be reached yet.

/** The child's exit, as { code, signal }. */
async function exited(child: import('node:child_process').ChildProcess): Promise<{ code: number | null; signal: string | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return { code: child.exitCode, signal: child.signalCode };
  const [code, signal] = await once(child, 'exit');
  return { code, signal };
}

/**
 * A TCP proxy in front of Redis that holds what a client sends from the first chunk containing
 * `marker` on (the command not yet run, the ones after it queued behind) until release().
 */
async function holdingProxy(redisPort: number, marker: string) {
  let release: () => void = () => {};
  let holding!: () => void;
  const held = new Promise<void>((r) => (holding = r));
  let armed = true;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(redisPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    upstream.pipe(client);
    const queue: Buffer[] = [];
    let holdingThis = false;
    client.on('data', (d: Buffer) => {
      if (!holdingThis && armed && d.includes(marker)) {
        armed = false;
        holdingThis = true;
        release = () => {
          holdingThis = false;
          for (const q of queue.splice(0)) upstream.write(q);
        };
        holding();
      }
      if (holdingThis) queue.push(d);
      else upstream.write(d);
    });
    for (const s of [client, upstream]) s.on('error', () => {}).on('close', () => (client.destroy(), upstream.destroy()));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `redis://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    held,
    release: () => release(),
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

test('SIGTERM while Redis does not answer yet (a slow start) stops serve with exit 0 and a stopped line: the signal ended it at once', async () => {
  // A "Redis" that takes the connection and answers nothing.
  let heard!: () => void;
  const spoken = new Promise<void>((r) => (heard = r));
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.once('data', () => heard());
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  after(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  const server = spawnCli(['serve', '--tcp-port', '0', '--ws-port', '0', '--admin-port', '0', '--redis', `redis://127.0.0.1:${(silent.address() as net.AddressInfo).port}`]);
  after(() => server.kill());
  await spoken;
  server.child.kill('SIGTERM');
  assert.deepEqual(await exited(server.child), { code: 0, signal: null }, 'stopped by its handler, exit 0');
  assert.ok(server.lines.some((l) => l.event === 'stopped'), `a stopped line: ${JSON.stringify(server.lines.slice(-3))}`);
  assert.ok(!server.lines.some((l) => l.event === 'listening' || l.event === 'cannot-start'), 'it neither listened nor failed to start');
});

describe('with Redis', { skip: redisUnavailable() ?? false }, () => {
  test('SIGTERM after the node took its Redis lease but before it listens: exit 0 and the lease released (it was left to lapse, the process killed by the signal)', async () => {
    const redis = await startRedis();
    after(() => redis.stop());
    // Holds the gateway in joinCluster's eviction check, right after its lease is written.
    const proxy = await holdingProxy(redis.port, 'maxmemory-policy');
    after(() => proxy.close());
    const r = new Redis(redis.port, '127.0.0.1');
    after(() => r.disconnect());
    const server = spawnCli(['serve', '--tcp-port', '0', '--ws-port', '0', '--admin-port', '0', '--redis', proxy.url, '--node-id', 'starting-node', '--lease-ms', '60000']);
    after(() => server.kill());
    await proxy.held;
    assert.equal(await r.exists('ll:{n}:node:starting-node'), 1, 'the lease is held while it starts');
    server.child.kill('SIGTERM');
    // Redis answers again (a slow one, not a dead one).
    setTimeout(() => proxy.release(), 200);
    assert.deepEqual(await exited(server.child), { code: 0, signal: null }, 'stopped by its handler, exit 0');
    assert.equal(await r.exists('ll:{n}:node:starting-node'), 0, 'the lease was given up');
    assert.ok(!server.lines.some((l) => l.event === 'listening' || l.event === 'cannot-start'), `it neither listened nor failed to start: ${JSON.stringify(server.lines.slice(-3))}`);
  });
});

test('a second SIGINT or SIGTERM while draining stops at once: links closed, exit 128 + the signal (the drain waited out --drain-ack-timeout-ms whatever was sent)', async () => {
  for (const [first, second, code] of [['SIGTERM', 'SIGINT', 130], ['SIGINT', 'SIGTERM', 143]] as const) {
    const server = spawnCli(['serve', '--tcp-port', '0', '--no-ws', '--admin-port', '0', '--drain-window-ms', '0', '--drain-ack-timeout-ms', '60000']);
    after(() => server.kill());
    const l = await server.waitFor((x) => x.event === 'listening', 10_000, 'listening');
    // A device holding a push it never acknowledges: the drain waits for it.
    const peer = new RawPeer(Number(new URL(l.tcp as string).port));
    after(() => peer.destroy());
    peer.hello('u');
    await peer.welcome();
    const res = await fetch(`${l.admin as string}v1/push`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'u', text: 'hi' }) });
    assert.equal(res.status, 200, await res.text());
    await peer.next((f) => f.type === FrameType.DATA);
    server.child.kill(first);
    await server.waitFor((x) => x.event === 'draining', 5000, 'the draining line');
    await peer.next((f) => f.type === FrameType.GOAWAY);
    server.child.kill(second);
    const end = await Promise.race([exited(server.child), new Promise((r) => setTimeout(() => r('still draining'), 5000))]);
    assert.deepEqual(end, { code, signal: null }, `${first} then ${second}`);
    await Promise.race([peer.closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the link was not closed')), 2000))]);
    assert.ok(server.lines.some((x) => x.event === 'stop-forced' && x.signal === second), `a stop-forced line: ${JSON.stringify(server.lines.slice(-3))}`);
  }
});
