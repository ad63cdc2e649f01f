import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LonglinkClient } from '../../src/client/client.js';
import { ManualClock } from '../../src/core/clock.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { flush, memoryLinkPair, type MemoryLink } from '../helpers/memory-link.js';

const POLICY = { intervalMs: 1000, minIntervalMs: 200, maxIntervalMs: 10_000, missBudget: 2, graceMs: 500 };

// A handler of the client's own events may close it (or close and connect it again), and an
// in-process link delivers frames and its close within the write that caused them: the client
// must find its link gone after each such step, not write into a null one.

const PROBES = { pongTimeoutMs: 300, probeCount: 2, probeIntervalMs: 100 };

function setup() {
  const clock = new ManualClock(5_000);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock });
  const links: MemoryLink[] = [];
  const client = new LonglinkClient({
    url: 'tcp://test', userId: 'u', deviceId: 'd', probes: PROBES, clock, timers: clock, random: () => 0.5,
    dial: async () => {
      const [server, c] = memoryLinkPair();
      gw.accept(server);
      links.push(c);
      return c;
    },
  });
  return { clock, gw, client, links };
}

test("close() from the 'suspect' state handler of a heartbeat probe does not throw out of the heartbeat timer", async () => {
  const { clock, gw, client, links } = setup();
  await Promise.all([client.connect(), flush()]);
  client.on('state', (s) => s === 'suspect' && client.close());
  links[0].deaf = true; // the gateway's answers are lost: the heartbeat goes unanswered, a probe follows
  assert.doesNotThrow(() => clock.advance(1000 + 300 + 1));
  assert.equal(client.state, 'closed');
  await gw.close();
});

test("close() from the 'suspect' state handler of networkChanged()'s check does not throw out of networkChanged()", async () => {
  const { gw, client } = setup();
  await Promise.all([client.connect(), flush()]);
  client.on('state', (s) => s === 'suspect' && client.close());
  assert.doesNotThrow(() => client.networkChanged());
  assert.equal(client.state, 'closed');
  await gw.close();
});

// An in-process link (the client already allows for one: "a gateway that answers in the same turn
// hands WELCOME back within send") delivers the gateway's close within the write. The outbox re-sent
// on WELCOME is written with this.link!, which lost() has set to null by then.
test('a link closed within a write of the outbox re-sent on WELCOME (an in-process gateway pacing DATA) is a lost link, not a TypeError', async () => {
  const clock = new ManualClock(5_000);
  const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 1, clock, timers: clock, limits: { maxDataPerSecond: 1, dataBurst: 2 } });
  const links: MemoryLink[] = [];
  let up = true;
  const errors: unknown[] = [];
  const client = new LonglinkClient({
    url: 'tcp://test', userId: 'u', deviceId: 'd', clock, timers: clock, random: () => 0, reconnect: { minDelayMs: 10, initialDelayMs: 10 },
    dial: async () => {
      if (!up) throw new Error('down');
      const [server, c] = memoryLinkPair();
      gw.accept(server);
      links.push(c);
      // What a socket's 'data' handler would do with an exception from the client: it escapes.
      const deliver = c.deliverBytes.bind(c);
      c.deliverBytes = (b) => {
        try {
          deliver(b);
        } catch (err) {
          errors.push(err);
        }
      };
      return c;
    },
  });
  await Promise.all([client.connect(), flush()]);
  up = false;
  links[0].destroy();
  for (let i = 1; i <= 10; i++) client.send('m' + i);
  for (let i = 0; i < 5; i++) { await flush(); clock.advance(20); }
  up = true;
  for (let i = 0; i < 5; i++) { await flush(); clock.advance(20); }
  assert.deepEqual(errors.map((e) => String(e)), []);
  assert.equal(client.pendingCount > 0, true);
  client.close();
  await gw.close();
});
