import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { Gateway } from '../../src/gateway/gateway.js';
import { LonglinkClient } from '../../src/client/client.js';

// Checked by the compiler: `npm test` builds with tsc first, and an @ts-expect-error that
// no longer errors fails the build. Event names and payloads are typed, as Socket.IO's are.
test('event names and payloads are checked at compile time', async () => {
  const gw = new Gateway({ tcp: false, ws: false });
  // @ts-expect-error an unknown event name
  gw.on('bogus-event', () => {});
  // @ts-expect-error a payload of the wrong shape
  gw.on('online', (e: { nope: number }) => void e);
  gw.on('offline', (e) => void e.reason.toUpperCase());
  const c = new LonglinkClient({ url: 'tcp://127.0.0.1:1', userId: 'u', deviceId: 'd' });
  // @ts-expect-error an unknown event name
  c.on('nope', () => {});
  c.on('close', (e) => void e.willReconnect);
  // node:events' once() still takes them.
  const opened = once(c, 'state');
  c.emit('state', 'connecting');
  assert.deepEqual(await opened, ['connecting']);
  await gw.close();
});
