import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConnectionTrace } from '../../src/gateway/connection-trace.js';
import { ManualClock } from '../../src/core/clock.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { FrameType, PROTOCOL_VERSION } from '../../src/protocol/frames.js';
import { flush, memoryLinkPair } from '../helpers/memory-link.js';

test('a trace says from when its points are complete: its start, then, once the ring wraps, its oldest point', () => {
  const t = new ConnectionTrace(5, 4);
  assert.equal(t.keptSince, 5);
  for (const at of [10, 20, 30, 40]) t.add(at, 'ping-in');
  assert.equal(t.keptSince, 5, 'nothing dropped yet');
  t.add(50, 'ping-in');
  t.add(60, 'ping-in');
  assert.deepEqual(
    t.points().map((p) => p.at),
    [30, 40, 50, 60],
  );
  assert.equal(t.keptSince, 30, 'the points from 5 to 30 were dropped: that stretch is not silence');
});

test("a connection's timeline from the gateway says where its kept events begin once more than 1,024 came", async () => {
  const clock = new ManualClock(1_000_000);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: { intervalMs: 250, minIntervalMs: 200, maxIntervalMs: 10_000, missBudget: 2, graceMs: 500 }, wheelTickMs: 1, clock, timers: clock, wallClock: clock });
  const [server, client] = memoryLinkPair();
  gw.accept(server);
  client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: 'u', deviceId: 'd', intervalMs: 250 });
  await flush();
  const id = gw.connection('u', 'd')!.connectionId;
  const first = gw.traceConnection(id)!;
  assert.equal(first.keptSince, first.since);
  for (let i = 0; i < 1100; i++) {
    clock.advance(250);
    client.send({ type: FrameType.PING });
    await flush();
    if (i % 100 === 0) gw.traceConnection(id); // read now and then, as the open view does
  }
  const tr = gw.traceConnection(id)!;
  assert.equal(tr.points.length, 1024);
  assert.ok(tr.keptSince > tr.since, 'the first events were dropped');
  assert.equal(tr.keptSince, tr.points[0].at, 'complete from the oldest kept');
  client.close(1000, 'bye');
  await gw.close();
});
