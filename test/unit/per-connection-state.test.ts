import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DEFAULT_POLICY } from '../../src/core/heartbeat-policy.js';
import { UserDevices } from '../../src/gateway/device-map.js';
import { GrantCache } from '../../src/gateway/grant-cache.js';
import { newId } from '../../src/gateway/ids.js';

describe('per-connection state kept small', () => {
  test('UserDevices keeps a lone self-describing value inline and still answers like a map', () => {
    const m = new UserDevices<{ deviceId: string; n: number }>();
    const a = { deviceId: 'phone', n: 1 };
    assert.equal(m.set('u', 'phone', a), undefined);
    assert.equal(m.get('u', 'phone'), a);
    assert.equal(m.get('u', 'tablet'), undefined);
    const a2 = { deviceId: 'phone', n: 2 };
    assert.equal(m.set('u', 'phone', a2), a, 'replacing returns the previous value');
    const b = { deviceId: 'tablet', n: 3 };
    m.set('u', 'tablet', b);
    assert.deepEqual([...m.entries('u')].sort(), [['phone', a2], ['tablet', b]].sort());
    assert.equal(m.delete('u', 'phone'), true);
    assert.equal(m.delete('u', 'phone'), false);
    assert.deepEqual([...m.values('u')], [b]);
    assert.equal(m.delete('u', 'tablet'), true);
    assert.equal(m.userCount, 0);
  });

  test('UserDevices wraps values that do not name their device (numbers, or a mismatching deviceId)', () => {
    const n = new UserDevices<number>();
    n.set('u', 'd', 5);
    assert.equal(n.get('u', 'd'), 5);
    assert.equal(n.set('u', 'd', 7), 5);
    assert.deepEqual([...n.entries('u')], [['d', 7]]);
    const o = new UserDevices<{ deviceId: string }>();
    const odd = { deviceId: 'other' };
    o.set('u', 'd', odd);
    assert.equal(o.get('u', 'd'), odd);
    assert.equal(o.get('u', 'other'), undefined, 'keyed by the device it was set under, not by its field');
    assert.deepEqual([...o.all()], [odd]);
  });

  test('GrantCache hands out one frozen grant per interval and direction', () => {
    const c = new GrantCache(2);
    const p = { ...DEFAULT_POLICY, allowServerDirection: true };
    const a = c.get(p, { intervalMs: 30_000 });
    assert.equal(c.get(p, { intervalMs: 30_000 }), a);
    assert.ok(Object.isFrozen(a));
    const s = c.get(p, { intervalMs: 30_000, direction: 'server' });
    assert.notEqual(s, a);
    assert.equal(s.direction, 'server');
    assert.equal(a.direction, 'client');
    // Past the limit grants are still right, just not shared.
    const x = c.get(p, { intervalMs: 45_000 });
    assert.equal(x.intervalMs, 45_000);
    assert.notEqual(c.get(p, { intervalMs: 45_000 }), x);
  });

  test('newId gives unique 16-character base64url ids', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const id = newId();
      assert.match(id, /^[A-Za-z0-9_-]{16}$/);
      seen.add(id);
    }
    assert.equal(seen.size, 20_000);
  });
});
