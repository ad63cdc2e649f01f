import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TokenBucket } from '../../src/core/token-bucket.js';
import { Admission, FULL_RETRY_MS } from '../../src/gateway/admission.js';
import { sourceKey } from '../../src/gateway/source-key.js';
import { decodeFrame, encodeDelimited, encodeFrame } from '../../src/protocol/frame-codec.js';
import { FrameType } from '../../src/protocol/frames.js';

// The admission policy and its token bucket on a hand-driven clock.

test('token bucket: a burst at once, then the rate, to the millisecond', () => {
  const b = new TokenBucket(10, 3, 0);
  assert.ok(b.take(0) && b.take(0) && b.take(0));
  assert.equal(b.take(0), false);
  assert.equal(b.waitMs(0), 100);
  assert.equal(b.take(99), false);
  assert.equal(b.take(100), true);
  assert.equal(b.available(10_000), 3, 'never more than the burst');
  assert.throws(() => new TokenBucket(0, 1, 0), { code: 'LL_ERR_INVALID_OPTION' });
});

test('admission: total, per source, rate; releases free slots; refusals count nothing', () => {
  const a = new Admission({ maxConnections: 3, maxConnectionsPerSource: 2, handshakesPerSecond: 0, handshakeBurst: 1, maxPendingHandshakes: 0, maxPendingHandshakesPerSource: 0 }, 0, () => 0.5);
  assert.equal(a.admit('1.1.1.1', 0), null);
  assert.equal(a.admit('1.1.1.1', 0), null);
  const perSource = a.admit('1.1.1.1', 0)!;
  assert.equal(perSource.reason, 'too-many-connections');
  assert.equal(perSource.retryAfterMs, FULL_RETRY_MS);
  assert.equal(a.admit('2.2.2.2', 0), null);
  assert.equal(a.admit('3.3.3.3', 0)?.reason, 'too-many-connections');
  assert.deepEqual(a.stats, { admitted: 3, refusedTotal: 1, refusedPerSource: 1, refusedRate: 0, refusedRatePerSource: 0, refusedPending: 0, refusedPendingPerSource: 0 });
  a.release('1.1.1.1', false);
  assert.equal(a.connections, 2);
  assert.equal(a.admit('1.1.1.1', 0), null);
});

test('admission: an IPv6 peer counts by its /64 (one laptop has 2^64 addresses of its own), an IPv4-mapped one as its IPv4', () => {
  const a = new Admission({ maxConnections: 0, maxConnectionsPerSource: 2, handshakesPerSecond: 0, handshakeBurst: 1, maxPendingHandshakes: 0, maxPendingHandshakesPerSource: 0 }, 0, () => 0.5);
  assert.equal(a.admit('2001:db8:1:2::1', 0), null);
  assert.equal(a.admit('2001:db8:1:2:aaaa:bbbb:cccc:dddd', 0), null);
  assert.equal(a.admit('2001:0db8:0001:0002::ffff', 0)?.reason, 'too-many-connections', 'the same /64, written otherwise');
  assert.equal(a.admit('2001:db8:1:3::1', 0), null, 'the next /64 is another source');
  assert.equal(a.admit('::ffff:10.0.0.1', 0), null);
  assert.equal(a.admit('10.0.0.1', 0), null);
  assert.equal(a.admit('10.0.0.1', 0)?.reason, 'too-many-connections');
  a.release('2001:db8:1:2::9', true);
  assert.equal(a.admit('2001:db8:1:2::1', 0), null);
  assert.equal(sourceKey('1.2.3.4'), '1.2.3.4');
  assert.equal(sourceKey('::1'), '0:0:0:0::/64');
  assert.equal(sourceKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
  assert.equal(sourceKey('2001:db8::'), '2001:db8:0:0::/64');
});

test('admission: NAT64 (64:ff9b::/96) and 6to4 (2002::/16) peers count as the IPv4 address they carry: not every translated client as one source, not one host as 65,536', () => {
  const a = new Admission({ maxConnections: 0, maxConnectionsPerSource: 1, handshakesPerSecond: 0, handshakeBurst: 1, maxPendingHandshakes: 0, maxPendingHandshakesPerSource: 0 }, 0, () => 0.5);
  // Behind a NAT64 translator every IPv4 client arrives from 64:ff9b::/96: one /64 for the whole internet.
  assert.equal(a.admit('64:ff9b::c000:201', 0), null);
  assert.equal(a.admit('64:ff9b::c633:6407', 0), null, 'another IPv4 client through the translator is another source');
  assert.equal(a.admit('64:ff9b::192.0.2.1', 0)?.reason, 'too-many-connections', 'the first, written as a dotted quad');
  // A 6to4 site is 2002:<its IPv4>::/48: each of its 65,536 /64 subnets was a source of its own.
  assert.equal(a.admit('2002:cb00:7101:1::1', 0), null);
  assert.equal(a.admit('2002:cb00:7101:ffff::1', 0)?.reason, 'too-many-connections', 'another subnet of the same site');
  assert.equal(a.admit('203.0.113.1', 0)?.reason, 'too-many-connections', 'the same host over IPv4');
  assert.equal(sourceKey('64:ff9b::102:304'), '1.2.3.4');
  assert.equal(sourceKey('2002:c000:204:1::9'), '192.0.2.4');
  assert.equal(sourceKey('1:2:3::1.2.3.4'), '1:2:3:0::/64');
});

test('admission: the rate limit spreads its hints over the refill time', () => {
  const hints: number[] = [];
  let r = 0;
  const a = new Admission({ maxConnections: 0, maxConnectionsPerSource: 0, handshakesPerSecond: 100, handshakeBurst: 200, maxPendingHandshakes: 0, maxPendingHandshakesPerSource: 0 }, 0, () => (r = (r + 0.37) % 1));
  for (let i = 0; i < 200; i++) assert.equal(a.admit(`s${i}`, 0), null);
  for (let i = 0; i < 50; i++) {
    const x = a.admit('late', 0)!;
    assert.equal(x.reason, 'rate-limited');
    hints.push(x.retryAfterMs);
  }
  // Waiting 10 ms for a token, plus up to the 2 s the bucket needs to refill a burst.
  assert.ok(hints.every((h) => h >= 10 && h <= 2010));
  assert.ok(Math.max(...hints) - Math.min(...hints) > 1000, 'spread, not one instant');
  assert.equal(a.admit('late', 10), null, 'a token 10 ms later');
});

test('admission: a storm far above the burst is spread over the time the bucket needs to take those refused, not over one refill', () => {
  let r = 0;
  const a = new Admission({ maxConnections: 0, maxConnectionsPerSource: 0, handshakesPerSecond: 100, handshakeBurst: 100, maxPendingHandshakes: 0, maxPendingHandshakesPerSource: 0 }, 0, () => (r = (r + 0.61) % 1));
  for (let i = 0; i < 100; i++) assert.equal(a.admit(`s${i}`, 0), null);
  const hints: number[] = [];
  for (let i = 0; i < 3000; i++) hints.push(a.admit(`t${i}`, 0)!.retryAfterMs);
  // The first refused wait at most about a second (one refill); the 3,000th needs 30 s at 100/s.
  assert.ok(Math.max(...hints.slice(0, 50)) <= 1010, `the first ${Math.max(...hints.slice(0, 50))}`);
  const late = hints.slice(-100);
  assert.ok(Math.max(...late) > 20_000 && Math.max(...late) <= 30_010, `the last spread to ${Math.max(...late)} ms`);
  // Capped: a storm of any size is told to come back within a minute.
  for (let i = 0; i < 20_000; i++) assert.ok(a.admit(`v${i}`, 0)!.retryAfterMs <= 60_010);
});

test('admission: pending handshakes are bounded; the hint spreads the backlog over the time the current rate needs', () => {
  let r = 0;
  const a = new Admission({ maxConnections: 0, maxConnectionsPerSource: 0, handshakesPerSecond: 0, handshakeBurst: 1, maxPendingHandshakes: 100, maxPendingHandshakesPerSource: 0 }, 0, () => (r = (r + 0.61) % 1));
  for (let i = 0; i < 100; i++) assert.equal(a.admit(`s${i}`, 0), null);
  const refused = a.admit('x', 0)!;
  assert.equal(refused.reason, 'rate-limited');
  assert.ok(refused.retryAfterMs >= 500 && refused.retryAfterMs <= 2500, 'no rate measured yet: 2 s spread');
  // In the next second 100 handshakes finish, 100 more start, and 3,000 are refused.
  for (let i = 0; i < 100; i++) a.opened(`s${i}`, 1000);
  for (let i = 0; i < 100; i++) assert.equal(a.admit(`t${i}`, 1000), null);
  const hints: number[] = [];
  for (let i = 0; i < 3000; i++) hints.push(a.admit('y', 1500)!.retryAfterMs);
  // At 100 opened/s, 3,000 waiting + 100 pending need about 31 s: the last hints spread that far.
  const late = hints.slice(-100);
  assert.ok(Math.max(...late) > 20_000 && Math.max(...late) <= 31_500, `spread ${Math.max(...late)}`);
  assert.ok(Math.min(...late) >= 500);
  assert.equal(a.stats.refusedPending, 3001);
  // Pending slots free up when handshakes finish or the connection ends before it.
  a.release('t0', false); // ended before its handshake finished
  assert.equal(a.admit('z', 1500), null);
  assert.equal(a.admit('z1', 1500)?.reason, 'rate-limited');
  a.opened('t1', 1500); // one finishes its handshake
  assert.equal(a.admit('z2', 1500), null);
});

test('admission: one source cannot hold the whole handshake backlog; others still get in', () => {
  const a = new Admission({ maxConnections: 0, maxConnectionsPerSource: 1000, handshakesPerSecond: 0, handshakeBurst: 1, maxPendingHandshakes: 500, maxPendingHandshakesPerSource: 50 }, 0, () => 0.5);
  // The attack of issue 20: idle sockets from one address, as many as it may hold.
  for (let i = 0; i < 50; i++) assert.equal(a.admit('127.0.0.1', 0), null);
  const mine = a.admit('127.0.0.1', 0)!;
  assert.equal(mine.reason, 'rate-limited');
  assert.ok(mine.retryAfterMs >= 1000 && mine.retryAfterMs <= 3000);
  assert.equal(a.stats.refusedPendingPerSource, 1);
  // A newcomer from elsewhere is admitted.
  assert.equal(a.admit('127.0.0.2', 0), null);
  // The source's slots free as its handshakes finish or its sockets end.
  a.opened('127.0.0.1', 10);
  assert.equal(a.admit('127.0.0.1', 10), null);
  a.release('127.0.0.1', false);
  assert.equal(a.admit('127.0.0.1', 10), null);
  assert.equal(a.admit('127.0.0.1', 10)?.reason, 'rate-limited');
});

test('admission: one source cannot take the whole handshake rate (a connect-and-close loop); others still get in', () => {
  const limits = { maxConnections: 0, maxConnectionsPerSource: 0, handshakesPerSecond: 100, handshakeBurst: 100, maxPendingHandshakes: 0, maxPendingHandshakesPerSource: 0 };
  const a = new Admission({ ...limits, handshakeSourceShare: 0.1 }, 0, () => 0.5);
  // The attacker tries every millisecond for 10 s, each socket closed at once (nothing pending, nothing held).
  let mine = 0;
  let newcomers = 0;
  const hints: number[] = [];
  for (let t = 0; t < 10_000; t++) {
    const r = a.admit('203.0.113.7', t);
    if (r === null) {
      mine++;
      a.release('203.0.113.7', false);
    } else hints.push(r.retryAfterMs);
    // A newcomer from another address every 100 ms.
    if (t % 100 === 50) {
      assert.equal(a.admit(`198.51.100.${newcomers % 250}`, t), null, `newcomer at ${t} ms`);
      newcomers++;
    }
  }
  assert.equal(newcomers, 100);
  // Half the burst at once, its own share of the rest, and what the newcomers leave when the bucket is not contended.
  assert.ok(mine >= 50 && mine <= 100 + 10_000 * 0.1 - newcomers + 10, `the attacker got ${mine}`);
  assert.ok(a.stats.refusedRatePerSource > 9000, `refused by its share: ${a.stats.refusedRatePerSource}`);
  // Told to come back when its share has a place (at most a gap, 100 ms, away), spread over a second.
  assert.ok(hints.every((h) => h >= 1 && h <= 1100), `hints from ${Math.min(...hints)} to ${Math.max(...hints)} ms`);
  // A source alone, not contended, may take the whole burst; share 1 turns the share off (the attacker takes everything).
  const alone = new Admission({ ...limits, handshakeSourceShare: 0.1 }, 0, () => 0.5);
  let n = 0;
  while (alone.admit('203.0.113.7', 0) === null) n++;
  assert.equal(n, 61, 'down to half the burst freely (51), then its share of the burst (10)');
  const off = new Admission({ ...limits, handshakeSourceShare: 1 }, 0, () => 0.5);
  for (let i = 0; i < 100; i++) assert.equal(off.admit('203.0.113.7', 0), null);
  assert.equal(off.admit('198.51.100.1', 0)?.reason, 'rate-limited');
});

test('PONG carries a warning code; a bare PONG stays 1 byte', () => {
  const warn = { type: FrameType.PONG, warn: 4006 } as const;
  assert.deepEqual(decodeFrame(encodeFrame(warn)), warn);
  assert.equal(encodeFrame({ type: FrameType.PONG }).length, 1);
  assert.deepEqual([...encodeDelimited(warn)], [4, FrameType.PONG, 0x18, 0xa6, 0x1f]);
});
