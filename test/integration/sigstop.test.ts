import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FrameType } from '../../src/protocol/frames.js';
import { sleep, spawnServe } from '../helpers/procs.js';
import { RawPeer } from '../helpers/raw-peer.js';

// The promise, for real: a gateway process that is stopped (SIGSTOP) for longer than its
// heartbeat timeout closes none of the clients that kept sending meanwhile; their frames waited
// in the kernel and are read when it runs again. A client that said nothing is still found.

const LIMIT_MS = 300 * 2 + 200; // interval × missBudget + grace

test('a gateway SIGSTOPped for four silence limits keeps every client that kept sending, and still closes a silent one', async () => {
  const gw = await spawnServe(['--heartbeat-interval-ms', '300', '--heartbeat-min-interval-ms', '100', '--miss-budget', '2', '--grace-ms', '200', '--log-every-connection']);
  const port = Number(new URL(gw.tcp).port);
  const live: RawPeer[] = [];
  const timers: NodeJS.Timeout[] = [];
  try {
    for (let i = 0; i < 20; i++) {
      const p = new RawPeer(port);
      await p.connected;
      p.hello(`live${i}`);
      await p.welcome();
      live.push(p);
      timers.push(setInterval(() => p.send({ type: FrameType.PING }), 300));
    }
    // Server-sent heartbeats: the gateway pings it; it answers every PING with a PONG.
    const passive = new RawPeer(port);
    await passive.connected;
    passive.hello('passive', 'd', { direction: 'server', intervalMs: 300 });
    await passive.welcome();
    passive.socket.on('data', () => {
      for (const f of passive.frames.splice(0)) if (f.type === FrameType.PING) passive.send({ type: FrameType.PONG });
    });
    const silent = new RawPeer(port);
    await silent.connected;
    silent.hello('silent');
    await silent.welcome();
    await sleep(600);
    gw.child.kill('SIGSTOP');
    await sleep(4 * LIMIT_MS);
    gw.child.kill('SIGCONT');
    await sleep(3 * LIMIT_MS);
    const offline = gw.lines.filter((l) => l.event === 'offline');
    const closed = live.filter((p) => p.socket.destroyed || p.closeCode !== undefined).length;
    assert.deepEqual(offline.filter((l) => l.user !== 'silent').map((l) => `${l.user} ${l.reason}`), [], 'nobody that kept sending was closed');
    assert.equal(closed, 0);
    assert.equal(passive.socket.destroyed, false, 'the server-sent client that answered was kept');
    assert.deepEqual(offline.filter((l) => l.user === 'silent').map((l) => l.reason), ['heartbeat-timeout'], 'the silent one is still found');
  } finally {
    for (const t of timers) clearInterval(t);
    for (const p of live) p.destroy();
    gw.child.kill('SIGCONT');
    await gw.kill();
  }
});
