import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FANOUT_CHUNK } from '../../src/gateway/fan-out.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { flush, memoryLinkPair, type MemoryLink } from '../helpers/memory-link.js';
import { FrameType, PROTOCOL_VERSION } from '../../src/protocol/frames.js';

// A broadcast writes to every open connection; in one synchronous pass that blocked the event loop for
// connections × broadcasts writes (1,000 broadcasts over 1,710 devices: 4.48 s), and at 200,000
// connections even one is a long pass, with no heartbeat answered meanwhile.

const DEVICES = 7001;

async function fleet(gw: Gateway, n: number): Promise<MemoryLink[]> {
  const clients: MemoryLink[] = [];
  for (let i = 0; i < n; i++) {
    const [server, client] = memoryLinkPair();

    gw.accept(server);
    client.send({ type: FrameType.HELLO, version: PROTOCOL_VERSION, userId: `u${i}`, deviceId: 'd' });
    clients.push(client);
  }
  for (let i = 0; i < 1000 && gw.onlineDevices < n; i++) await flush();
  return clients;
}

const got = (clients: MemoryLink[], text: string) => clients.filter((c) => c.received.some((f) => f.type === FrameType.DATA && Buffer.from(f.payload).toString() === text)).length;

test(`a broadcast to ${DEVICES} connections lets the event loop turn while it writes, and concurrent broadcasts do not pile up in one turn`, async () => {
  const gw = new Gateway({ tcp: false, ws: false, limits: { handshakesPerSecond: 0, maxPendingHandshakes: 0, maxPendingHandshakesPerSource: 0, maxConnectionsPerSource: 0 } });
  await gw.listen();
  try {
    const clients = await fleet(gw, DEVICES);
    assert.equal(gw.onlineDevices, DEVICES);
    // A timer set for now, as a heartbeat's answer would be: it must fire before the broadcast has been
    // written to every connection.
    let seen: number[] | null = null;
    setImmediate(() => (seen = [got(clients, 'one'), got(clients, 'two')]));
    const one = gw.broadcastAcrossCluster('one');
    const two = gw.broadcastAcrossCluster('two');
    assert.deepEqual(await Promise.all([one, two]), [
      { here: DEVICES, published: false },
      { here: DEVICES, published: false },
    ]);
    assert.ok(seen, 'a timer set for now fired before the broadcasts were written to every connection');
    const [a, b] = seen as number[];
    // One chunk written before the call returned, and no more, over both broadcasts, before a turn.
    assert.equal(a + b, FANOUT_CHUNK, `${a} + ${b} written when the timer fired`);
    assert.equal(got(clients, 'one'), DEVICES, 'every connection got the first');
    assert.equal(got(clients, 'two'), DEVICES, 'and the second');
    // In the order they were made, on every connection.
    for (const c of clients) {
      const texts = c.received.filter((f) => f.type === FrameType.DATA).map((f) => Buffer.from((f as { payload: Uint8Array }).payload).toString());
      assert.deepEqual(texts, ['one', 'two']);
    }
    // The synchronous form still answers at once with how many it goes to.
    assert.equal(gw.broadcast('three'), DEVICES);
  } finally {
    await gw.close();
  }
});
