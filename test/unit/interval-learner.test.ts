import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { IntervalLearner } from '../../src/core/interval-learner.js';
import { LonglinkClient } from '../../src/client/client.js';

/** Plays heartbeats through a NAT that forgets a mapping idle for `timeoutMs`; returns what happened. */
function learn(l: IntervalLearner, timeoutMs: number, maxSteps = 20) {
  let now = 0;
  let drops = 0;
  const seen: number[] = [];
  for (let i = 0; i < maxSteps && l.record!.phase !== 'settled'; i++) {
    const gap = l.intervalMs()!;
    seen.push(gap);
    now += gap;
    if (gap < timeoutMs) l.held(gap - 1, now); // the PONG's round trip makes the measured gap a little shorter
    else {
      drops++;
      l.failed(gap, now);
    }
  }
  return { drops, seen, settled: l.record!.intervalMs, probes: l.record!.probes, now };
}

test('probe: doubles from the start while gaps hold', () => {
  const l = new IntervalLearner({ startMs: 4000 });
  l.setRange(1000, 600_000, 4000, 0);
  assert.equal(l.intervalMs(), 8000, 'the first probe is twice the safe start');
  assert.equal(l.held(7990, 8000), 'probe-held');
  assert.equal(l.intervalMs(), 16_000);
  assert.equal(l.record!.heldMs, 8000);
});

test('fail: the first failure switches to fine steps from the last gap that held, below the failed one', () => {
  const l = new IntervalLearner({ startMs: 4000 });
  l.setRange(1000, 600_000, 4000, 0);
  l.held(7990, 8000);
  l.held(15_990, 24_000);
  assert.equal(l.intervalMs(), 32_000);
  assert.equal(l.failed(32_000, 56_000), 'probe-failed');
  assert.equal(l.record!.failedMs, 32_000);
  assert.equal(l.record!.phase, 'fine');
  assert.equal(l.intervalMs(), Math.round(16_000 * 1.12), 'falls back to the last gap that held, one fine step up');
});

test('settle: just below the largest gap that held, when the next step would reach a failed gap', () => {
  for (const timeoutMs of [8000, 20_000, 45_000, 5000, 100_000, 240_000, 350_000]) {
    const l = new IntervalLearner({ startMs: 4000 });
    l.setRange(1000, 600_000, 4000, 0);
    const r = learn(l, timeoutMs);
    const ratio = r.settled / timeoutMs;
    assert.ok(ratio >= 0.8 && ratio <= 0.95, `T=${timeoutMs}: settled at ${r.settled} (${ratio.toFixed(3)} of T) via ${r.seen.join(', ')}`);
    assert.ok(r.drops <= 2, `T=${timeoutMs}: ${r.drops} drops`);
    if (timeoutMs <= 64_000) assert.ok(r.probes <= 8, `T=${timeoutMs}: ${r.probes} probe steps`);
  }
});

test('a start above the real timeout: the settled interval fails, falls back, and converges below it', () => {
  const l = new IntervalLearner({ startMs: 4000 });
  l.setRange(1000, 600_000, 4000, 0);
  let r = learn(l, 3000);
  assert.ok(r.settled > 3000, 'the unproven start misled it');
  assert.equal(l.failed(r.settled, r.now + r.settled), 'fallback');
  r = learn(l, 3000);
  const ratio = r.settled / 3000;
  assert.ok(ratio >= 0.8 && ratio <= 0.95, `settled at ${r.settled}`);
});

test('a network whose timeout exceeds the allowed range settles at its top without a failure', () => {
  const l = new IntervalLearner({ startMs: 4000 });
  l.setRange(1000, 30_000, 4000, 0);
  const r = learn(l, 1e9);
  assert.equal(r.settled, 30_000);
  assert.equal(r.drops, 0);
});

test('fall back: a failure at the settled interval halves it and climbs again below the failed gap', () => {
  const l = new IntervalLearner({ startMs: 4000 });
  l.setRange(1000, 600_000, 4000, 0);
  const first = learn(l, 20_000);
  assert.equal(l.failed(first.settled, first.now + first.settled), 'fallback');
  assert.equal(l.record!.failedMs, first.settled);
  assert.ok(l.intervalMs()! < first.settled);
  const again = learn(l, 10_000);
  const ratio = again.settled / 10_000;
  assert.ok(ratio >= 0.8 && ratio <= 0.95, `re-learned ${again.settled} for a 10 s timeout`);
});

test('a failure at a shorter gap than the interval in use teaches nothing (the link died of something else)', () => {
  const l = new IntervalLearner({ startMs: 4000 });
  l.setRange(1000, 600_000, 4000, 0);
  assert.equal(l.failed(2000, 2000), null);
  assert.equal(l.record!.failures, 0);
  assert.equal(l.intervalMs(), 8000);
});

test('re-probe: after reprobeAfterMs settled, one step above is tried', () => {
  const l = new IntervalLearner({ startMs: 4000, reprobeAfterMs: 3_600_000 });
  l.setRange(1000, 600_000, 4000, 0);
  const r = learn(l, 20_000);
  const heldMs = l.record!.heldMs;
  assert.equal(l.poll(r.now + 1000), null, 'not yet');
  assert.equal(l.poll(r.now + 3_600_000), 'reprobe');
  assert.equal(l.record!.phase, 'fine');
  assert.equal(l.intervalMs(), Math.round(heldMs * 1.12));
  // The NAT now allows 40 s: learning resumes upward from there.
  const up = learn(l, 40_000);
  assert.ok(up.settled > r.settled && up.settled / 40_000 <= 0.95, `re-settled at ${up.settled}`);
});

test('evidence: a longer idle gap that application traffic survived raises what is known to hold', () => {
  const l = new IntervalLearner({ startMs: 4000 });
  l.setRange(1000, 600_000, 4000, 0);
  assert.equal(l.intervalMs(), 8000, 'probing 8 s');
  assert.equal(l.held(11_000, 11_000), 'probe-held');
  assert.equal(l.record!.heldMs, 11_000);
  assert.equal(l.intervalMs(), 22_000, 'the next probe starts from the evidence');
});

test('a gap held far above the interval in use (over 1.5 intervals: the client stalled) is no evidence', () => {
  const l = new IntervalLearner({ startMs: 4000 });
  l.setRange(1000, 600_000, 4000, 0);
  assert.equal(l.intervalMs(), 8000);
  // What the client read after a stall may have crossed the NAT mid-stall: nothing is known to have idled 20 s.
  assert.equal(l.held(20_000, 20_000), null);
  assert.deepEqual([l.record!.heldMs, l.intervalMs()], [4000, 8000]);
  assert.equal(l.held(12_000, 20_000), 'probe-held', 'up to 1.5 intervals still counts');
  assert.equal(l.record!.heldMs, 12_000);
});

test('network switch: each network keeps its own record; an unknown one starts from the start interval', () => {
  const l = new IntervalLearner({ startMs: 4000 }, 'wifi:home');
  l.setRange(1000, 600_000, 4000, 0);
  const home = learn(l, 45_000).settled;
  l.switchNetwork('cell:carrier', 0);
  assert.equal(l.network, 'cell:carrier');
  assert.equal(l.intervalMs(), 8000, 'a new network starts over');
  const cell = learn(l, 8000).settled;
  l.switchNetwork('wifi:home', 0);
  assert.equal(l.intervalMs(), home);
  l.switchNetwork('cell:carrier', 0);
  assert.equal(l.intervalMs(), cell);
});

test('persistence: export to JSON and import; a known network starts at its learned interval', () => {
  const l = new IntervalLearner({ startMs: 4000 }, 'wifi:home');
  l.setRange(1000, 600_000, 4000, 0);
  const settled = learn(l, 20_000).settled;
  const json = JSON.stringify(l.export());
  const fresh = new IntervalLearner({ startMs: 4000 });
  fresh.import(JSON.parse(json));
  assert.equal(fresh.network, 'wifi:home');
  assert.equal(fresh.intervalMs(), settled);
  assert.equal(fresh.record!.phase, 'settled');
  assert.throws(() => fresh.import({ version: 2 } as never), { code: 'LL_ERR_INVALID_OPTION' });
  // Not objects at all, or a snapshot cut short: refused with the code, not a bare TypeError.
  for (const bad of [null, undefined, 1, 'x', { version: 1, networks: null }, { version: 1 }]) {
    assert.throws(() => fresh.import(bad as never), { code: 'LL_ERR_INVALID_OPTION' }, JSON.stringify(bad));
  }
  assert.equal(fresh.network, 'wifi:home', 'a refused snapshot leaves what was loaded');
  assert.throws(() => fresh.import({ version: 1, network: 'x', networks: { x: { heldMs: -1 } } } as never), { code: 'LL_ERR_INVALID_OPTION' });
});

test('without a start, the gateway grant seeds the network; bad options are refused', () => {
  const l = new IntervalLearner();
  assert.equal(l.intervalMs(), undefined);
  assert.equal(l.setRange(5000, 600_000, 25_000, 0), 'range');
  assert.equal(l.intervalMs(), 50_000);
  assert.throws(() => new IntervalLearner({ growth: 1 }), { code: 'LL_ERR_INVALID_OPTION' });
  assert.throws(() => new IntervalLearner({ margin: 1 }), { code: 'LL_ERR_INVALID_OPTION' });
});

test('a failure after a gap far longer than the interval in use (a stalled or suspended client) teaches nothing', () => {
  const l = new IntervalLearner({ startMs: 4000 });
  l.setRange(1000, 600_000, 4000, 0);
  const r = learn(l, 20_000);
  const before = { ...l.record! };
  // The client's loop was blocked (or the device slept) for 10 minutes; its heartbeat went out then, unanswered.
  assert.equal(l.failed(before.intervalMs + 600_000, r.now + before.intervalMs + 600_000), null);
  assert.deepEqual(l.record, before);
  // While probing too: a stalled probe is not the NAT's answer.
  const p = new IntervalLearner({ startMs: 4000 });
  p.setRange(1000, 600_000, 4000, 0);
  assert.equal(p.intervalMs(), 8000);
  assert.equal(p.failed(60_000, 60_000), null);
  assert.equal(p.record!.failedMs, null);
  // A gap a little late (timer jitter, the PONG's round trip) still counts.
  assert.equal(p.failed(8400, 70_000), 'probe-failed');
});

test('an imported settled record is re-probed reprobeAfterMs after the import, whatever the old process\'s clock said', () => {
  const H = 3_600_000;
  const a = new IntervalLearner({ startMs: 4000 });
  a.setRange(1000, 600_000, 4000, 50 * H);
  let now = 50 * H; // the first process had been up 50 h (a monotonic clock)
  while (a.record!.phase !== 'settled') {
    const gap = a.intervalMs()!;
    now += gap;
    if (gap < 45_000) a.held(gap - 1, now);
    else a.failed(gap, now);
  }
  const saved = JSON.parse(JSON.stringify(a.export()));

  const b = new IntervalLearner({ startMs: 4000 });
  b.import(saved);
  // The new process's clock starts near 0.
  b.setRange(1000, 600_000, 4000, 1000);
  const s = b.record!.intervalMs;
  let reprobedAt: number | null = null;
  for (let t = 1000; t <= 12 * H && reprobedAt === null; t += s) {
    b.held(s - 1, t);
    if (b.poll(t) === 'reprobe') reprobedAt = t;
  }
  assert.ok(reprobedAt !== null && reprobedAt >= 6 * H && reprobedAt < 6 * H + 1000 + s, `re-probed at ${reprobedAt} (settledAt ${saved.networks.default.settledAt})`);
});

test('import: fractional intervals are rounded, non-finite ones refused (they would go into HELLO)', () => {
  const l = new IntervalLearner();
  l.import({ version: 1, network: 'n', networks: { n: { heldMs: 10_000.4, failedMs: 12_000.6, phase: 'fine', intervalMs: 11_200.5, probes: 1, failures: 1, settledAt: null } } });
  assert.deepEqual([l.record!.heldMs, l.record!.failedMs, l.record!.intervalMs], [10_000, 12_001, 11_201]);
  assert.throws(() => l.import({ version: 1, network: 'n', networks: { n: { heldMs: Infinity, failedMs: null, phase: 'grow', intervalMs: 1000, probes: 0, failures: 0, settledAt: null } } }), { code: 'LL_ERR_INVALID_OPTION' });
  assert.throws(() => new IntervalLearner({ startMs: Infinity }), { code: 'LL_ERR_INVALID_OPTION' });
});

// NaN (or 0, or less) made every poll() right after settling a re-probe above the settled interval:
// on a NAT that drops it, a link lost each time the learner settled, for ever.
test('adaptive.reprobeAfterMs: NaN, 0 or negative is refused like the other learner options', () => {
  for (const reprobeAfterMs of [NaN, 0, -1]) {
    assert.throws(() => new IntervalLearner({ startMs: 4000, reprobeAfterMs }), /reprobeAfterMs/, `learner ${reprobeAfterMs}`);
    assert.throws(() => new LonglinkClient({ url: 'tcp://h:1', userId: 'u', deviceId: 'd', adaptive: { reprobeAfterMs } }), /reprobeAfterMs/, `client ${reprobeAfterMs}`);
  }
});

test('ADAPTIVE.md\'s bounds for the lab\'s 4 s start hold for every T from 8 to 45 s: the probe steps it states, two lost links, 80-95% of T', () => {
  const doc = fs.readFileSync(new URL('../../../docs/ADAPTIVE.md', import.meta.url), 'utf8').replace(/\s+/g, ' ');
  const stated = Number(/with the lab's 4 s start and T from 8 to 45 s, at most (\d+)/.exec(doc)?.[1]);
  assert.ok(stated > 0, 'ADAPTIVE.md states the bound');
  let worst = { probes: 0, T: 0 };
  for (let T = 8000; T <= 45_000; T += 50) {
    const l = new IntervalLearner({ startMs: 4000 });
    l.setRange(1000, 600_000, 4000, 0);
    const r = learn(l, T);
    assert.equal(l.record!.phase, 'settled', `T ${T}`);
    assert.ok(r.drops <= 2, `T ${T}: ${r.drops} links lost`);
    assert.ok(r.settled / T >= 0.8 && r.settled / T <= 0.95, `T ${T}: settled at ${r.settled}`);
    if (r.probes > worst.probes) worst = { probes: r.probes, T };
  }
  assert.ok(worst.probes <= stated, `${worst.probes} probe steps behind a ${worst.T} ms NAT; ADAPTIVE.md says at most ${stated}`);
});

test('networks remembered are bounded (maxNetworks, 64): the least recently used is forgotten, the current never; the bound holds on import', () => {
  const l = new IntervalLearner({ startMs: 4000 }, 'wifi:home');
  l.setRange(1000, 600_000, 4000, 0);
  const home = learn(l, 45_000).settled;
  // An app naming networks by BSSID: a thousand seen once each, home visited now and then.
  for (let i = 0; i < 1000; i++) {
    l.switchNetwork(`bssid:${i}`, 0);
    if (i % 50 === 0) l.switchNetwork('wifi:home', 0);
  }
  const snap = l.export();
  assert.equal(Object.keys(snap.networks).length, 64);
  assert.ok('bssid:999' in snap.networks, 'the current network is kept');
  assert.ok('wifi:home' in snap.networks, 'a network used recently is kept');
  assert.ok(!('bssid:0' in snap.networks), 'the least recently used are forgotten');
  l.switchNetwork('wifi:home', 0);
  assert.equal(l.intervalMs(), home, 'what was learned for a kept network is intact');

  const small = new IntervalLearner({ startMs: 4000, maxNetworks: 3 });
  small.import(snap);
  assert.deepEqual(Object.keys(small.export().networks).length, 3);
  assert.ok('bssid:999' in small.export().networks, 'the snapshot\'s current network survives the bound');
  for (const maxNetworks of [0, 1.5, NaN]) assert.throws(() => new IntervalLearner({ maxNetworks }), /maxNetworks/);
});
