import assert from 'node:assert/strict';
import { test } from 'node:test';
import { seededRandom } from '../../src/core/backoff.js';
import { erfc, phiOf, PhiAccrualDetector, zForPhi } from '../../src/core/phi-accrual-detector.js';

const close = (a: number, b: number, rel = 1e-6) => assert.ok(Math.abs(a - b) <= rel * Math.max(1, Math.abs(b)), `${a} ≉ ${b}`);

test('erfc is accurate, also far in the tail where phi lives', () => {
  close(erfc(0), 1);
  close(erfc(1), 0.157299207050285, 1e-6);
  close(erfc(-1), 1.842700792949715, 1e-6);
  close(erfc(3), 2.209049699858544e-5 / 1, 1e-6 / 2.2e-5);
  const e5 = erfc(5);
  assert.ok(Math.abs(e5 - 1.537459794428035e-12) / 1.537459794428035e-12 < 1e-6, `erfc(5) = ${e5}`);
});

test('phi of the normal tail, and its inverse', () => {
  close(phiOf(100, 100, 10), -Math.log10(0.5));
  close(phiOf(110, 100, 10), -Math.log10(0.158655253931457), 1e-6);
  for (const z of [-1, 0, 1, 2.5, 5, 8]) close(zForPhi(phiOf(z, 0, 1)), z, 1e-6);
  assert.ok(phiOf(1e9, 0, 1) === Infinity || phiOf(1e9, 0, 1) > 300);
});

test('a regular peer: alive, suspect once, dead exactly where phi crosses the threshold', () => {
  const d = new PhiAccrualDetector(1000, 0, { minStdDevMs: 100, suspectPhi: 3, deadPhi: 8 });
  for (let t = 1000; t <= 20_000; t += 1000) d.heard(t);
  const m = d.model();
  assert.equal(m.learned, true);
  assert.equal(m.meanMs, 1000);
  assert.equal(m.stdDevMs, 100, 'floored');
  const suspectAt = 20_000 + 1000 + 100 * zForPhi(3);
  const deadAt = 20_000 + 1000 + 100 * zForPhi(8);
  close(d.deadline(), deadAt, 1e-9);
  assert.equal(d.nextCheckAt(20_500), d.lastHeardAt + d.silenceForPhi(3));
  assert.equal(d.check(Math.floor(suspectAt) - 1), 'alive');
  assert.equal(d.check(Math.ceil(suspectAt)), 'suspect');
  assert.equal(d.check(Math.ceil(suspectAt) + 10), 'suspected');
  assert.equal(d.nextCheckAt(Math.ceil(suspectAt)), d.deadline());
  assert.equal(d.check(Math.floor(deadAt) - 1), 'suspected');
  assert.equal(d.check(Math.ceil(deadAt)), 'dead');
});

test('it adapts: a jittery path gets a later deadline than a steady one at the same interval', () => {
  const rnd = seededRandom(3);
  const steady = new PhiAccrualDetector(10_000, 0, { minStdDevMs: 50 });
  const jittery = new PhiAccrualDetector(10_000, 0, { minStdDevMs: 50 });
  let a = 0;
  let b = 0;
  for (let i = 0; i < 200; i++) {
    steady.heard((a += 10_000 + (rnd() - 0.5) * 20));
    jittery.heard((b += 10_000 + (rnd() - 0.5) * 2000));
  }
  const ds = steady.deadline() - steady.lastHeardAt;
  const dj = jittery.deadline() - jittery.lastHeardAt;
  assert.ok(ds < 10_500, `steady: ${ds.toFixed(0)} ms of silence`);
  assert.ok(dj > ds + 1500, `jittery: ${dj.toFixed(0)} ms of silence`);
});

test('before enough samples it uses the announced interval; a new interval restarts learning', () => {
  const d = new PhiAccrualDetector(2000, 0, { minSamples: 5, minStdDevMs: 1 });
  assert.deepEqual(d.model(), { meanMs: 2000, stdDevMs: 500, learned: false });
  for (let t = 100; t <= 1000; t += 100) d.heard(t);
  assert.equal(d.model().learned, true);
  assert.equal(d.model().meanMs, 100);
  d.setIntervalMs(5000);
  assert.deepEqual(d.model(), { meanMs: 5000, stdDevMs: 1250, learned: false });
});

test('acceptablePauseMs shifts the deadline by exactly that much; bad thresholds are refused', () => {
  const a = new PhiAccrualDetector(1000, 0, { minStdDevMs: 100 });
  const b = new PhiAccrualDetector(1000, 0, { minStdDevMs: 100, acceptablePauseMs: 3000 });
  for (let t = 1000; t <= 10_000; t += 1000) {
    a.heard(t);
    b.heard(t);
  }
  close(b.deadline() - a.deadline(), 3000, 1e-9);
  assert.throws(() => new PhiAccrualDetector(1000, 0, { suspectPhi: 9, deadPhi: 8 }), { code: 'LL_ERR_INVALID_OPTION' });
});

test('the window forgets old samples', () => {
  const d = new PhiAccrualDetector(1000, 0, { windowSize: 10, minStdDevMs: 1 });
  let t = 0;
  for (let i = 0; i < 50; i++) d.heard((t += 5000));
  for (let i = 0; i < 10; i++) d.heard((t += 1000));
  assert.equal(d.model().meanMs, 1000);
});

test('a run of data frames (heartbeats skipped meanwhile) is not learned as one long heartbeat gap', () => {
  const I = 25_000;
  const d = new PhiAccrualDetector(I, 0);
  let t = 0;
  for (let i = 0; i < 30; i++) d.heard((t += I));
  const before = d.deadline() - d.lastHeardAt;
  // Ten minutes of application traffic every 5 s: the client sends no PING meanwhile, its next
  // one counts from its last send.
  for (let i = 0; i < 120; i++) d.heard((t += 5_000), false);
  d.heard((t += I));
  for (let i = 0; i < 3; i++) d.heard((t += I));
  const after = d.deadline() - d.lastHeardAt;
  assert.ok(Math.abs(after - before) < 1000, `silence to conviction: ${Math.round(before)} ms before, ${Math.round(after)} ms after`);
  assert.ok(d.model().meanMs <= I + 1, `mean ${d.model().meanMs}`);
});

test('options that would make phi NaN (and never convict) are refused; one given as undefined keeps its default', () => {
  for (const bad of [{ minSamples: 0 }, { minSamples: 1.5 }, { windowSize: 0 }, { minSamples: 300, windowSize: 200 }, { minStdDevMs: 0 }, { minStdDevMs: NaN }, { acceptablePauseMs: -1 }]) {
    assert.throws(() => new PhiAccrualDetector(25_000, 0, bad), { code: 'LL_ERR_INVALID_OPTION' }, JSON.stringify(bad));
  }
  const d = new PhiAccrualDetector(25_000, 0, { minStdDevMs: undefined, windowSize: undefined });
  assert.equal(d.check(3_600_000), 'dead');
  assert.ok(Number.isFinite(d.deadline()));
});

test('a suspicion not yet raised is still checked when asked after its time (a re-arm before the wheel fired)', () => {
  const d = new PhiAccrualDetector(25_000, 0);
  const suspectAt = d.nextCheckAt(0);
  assert.ok(suspectAt < d.deadline());
  assert.equal(d.nextCheckAt(suspectAt + 10), suspectAt);
  assert.equal(d.check(suspectAt + 10), 'suspect');
  assert.equal(d.nextCheckAt(suspectAt + 10), d.deadline());
});

test('at exactly its nextCheckAt() or deadline() the verdict is the one scheduled there, not one wheel tick later (phi fell an ulp short half the time)', () => {
  const rnd = seededRandom(8);
  for (let run = 0; run < 200; run++) {
    const d = new PhiAccrualDetector(25_000, 0);
    let t = 0;
    const beats = 1 + Math.floor(rnd() * 12);
    for (let i = 0; i < beats; i++) d.heard((t += 25_000 + (rnd() - 0.5) * 4_000));
    const suspectAt = d.nextCheckAt(t);
    assert.ok(suspectAt < d.deadline());
    assert.equal(d.check(suspectAt), 'suspect', `run ${run}: at nextCheckAt() ${suspectAt}`);
    assert.equal(d.nextCheckAt(suspectAt), d.deadline());
    assert.equal(d.check(d.deadline()), 'dead', `run ${run}: at deadline() ${d.deadline()}`);
  }
});
