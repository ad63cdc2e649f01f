import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ManualClock } from '../../src/core/clock.js';
import { RttTracker } from '../../src/core/rtt-tracker.js';

/** RFC 6298 section 2, as a reference: K and G play no part in SRTT/RTTVAR. */
function rfc6298(samples: number[]): { srtt: number; rttvar: number } {
  let srtt = NaN;
  let rttvar = NaN;
  samples.forEach((r, i) => {
    if (i === 0) {
      srtt = r; // (2.2)
      rttvar = r / 2;
    } else {
      rttvar = (1 - 1 / 4) * rttvar + (1 / 4) * Math.abs(srtt - r); // (2.3), with the old SRTT
      srtt = (1 - 1 / 8) * srtt + (1 / 8) * r;
    }
  });
  return { srtt, rttvar };
}

describe('RttTracker: matching', () => {
  test('nothing measured yet: current() is undefined, nothing outstanding', () => {
    const r = new RttTracker();
    assert.equal(r.current(), undefined);
    assert.equal(r.outstanding, 0);
  });

  test('a PONG with no outstanding PING returns undefined and changes nothing', () => {
    const r = new RttTracker();
    assert.equal(r.pongReceived(100), undefined);
    assert.equal(r.current(), undefined);
    r.pingSent(200);
    r.pongReceived(260);
    const before = r.current();
    assert.equal(r.pongReceived(300), undefined, 'a second PONG for one PING');
    assert.deepEqual(r.current(), before);
  });

  test('each PONG is matched to the oldest outstanding PING (FIFO)', () => {
    const r = new RttTracker();
    r.pingSent(0);
    r.pingSent(10);
    r.pingSent(20);
    assert.equal(r.outstanding, 3);
    assert.equal(r.pongReceived(30)?.sampleMs, 30);
    assert.equal(r.outstanding, 2);
    assert.equal(r.pongReceived(35)?.sampleMs, 25);
    assert.equal(r.pongReceived(40)?.sampleMs, 20);
    assert.equal(r.outstanding, 0);
    assert.equal(r.pongReceived(50), undefined);
  });

  test('PINGs and PONGs interleaved', () => {
    const r = new RttTracker();
    r.pingSent(1000);
    r.pingSent(1100);
    assert.equal(r.pongReceived(1150)?.sampleMs, 150);
    r.pingSent(1200);
    assert.equal(r.pongReceived(1210)?.sampleMs, 110);
    assert.equal(r.pongReceived(1260)?.sampleMs, 60);
  });

  test('a PONG timestamped before its PING gives a 0 ms sample, never negative', () => {
    const r = new RttTracker();
    r.pingSent(500);
    const s = r.pongReceived(400)!;
    assert.equal(s.sampleMs, 0);
    assert.equal(s.srttMs, 0);
    assert.equal(s.minMs, 0);
  });

  test('outstanding PINGs are capped: the 17th unanswered PING starts the queue over', () => {
    const r = new RttTracker();
    for (let i = 0; i < 16; i++) r.pingSent(i * 100);
    assert.equal(r.outstanding, 16);
    r.pingSent(5000);
    assert.equal(r.outstanding, 1);
    assert.equal(r.pongReceived(5040)?.sampleMs, 40, 'matched to the PING after the restart');
  });

  test('clearOutstanding forgets PINGs but keeps the estimate', () => {
    const r = new RttTracker();
    r.pingSent(0);
    r.pongReceived(80);
    r.pingSent(100);
    r.pingSent(200);
    r.clearOutstanding();
    assert.equal(r.outstanding, 0);
    assert.equal(r.pongReceived(300), undefined, 'a PONG from the old link matches nothing');
    assert.deepEqual(r.current(), { sampleMs: 80, srttMs: 80, rttvarMs: 40, minMs: 80 });
    r.pingSent(1000);
    assert.equal(r.pongReceived(1020)?.sampleMs, 20, 'the next PING is matched normally');
  });
});

describe('RttTracker: RFC 6298 smoothing', () => {
  test('the first sample sets SRTT = R and RTTVAR = R / 2', () => {
    const r = new RttTracker();
    r.pingSent(0);
    assert.deepEqual(r.pongReceived(100), { sampleMs: 100, srttMs: 100, rttvarMs: 50, minMs: 100 });
  });

  test('later samples: RTTVAR = 3/4 RTTVAR + 1/4 |SRTT − R| (old SRTT), then SRTT = 7/8 SRTT + 1/8 R', () => {
    const r = new RttTracker();
    const sample = (rtt: number, at: number) => {
      r.pingSent(at);
      return r.pongReceived(at + rtt)!;
    };
    sample(100, 0);
    // 0.75 × 50 + 0.25 × |100 − 200| = 62.5; 0.875 × 100 + 0.125 × 200 = 112.5
    assert.deepEqual(sample(200, 1000), { sampleMs: 200, srttMs: 112.5, rttvarMs: 62.5, minMs: 100 });
    // 0.75 × 62.5 + 0.25 × |112.5 − 50| = 62.5; 0.875 × 112.5 + 0.125 × 50 = 104.6875
    assert.deepEqual(sample(50, 2000), { sampleMs: 50, srttMs: 104.6875, rttvarMs: 62.5, minMs: 50 });
    assert.deepEqual(r.current(), { sampleMs: 50, srttMs: 104.6875, rttvarMs: 62.5, minMs: 50 });
  });

  test('a steady RTT converges: SRTT stays at R and RTTVAR decays toward 0', () => {
    const r = new RttTracker();
    let last;
    for (let i = 0; i < 60; i++) {
      r.pingSent(i * 1000);
      last = r.pongReceived(i * 1000 + 40)!;
    }
    assert.equal(last!.srttMs, 40);
    assert.ok(last!.rttvarMs < 0.001, `rttvar ${last!.rttvarMs}`);
    assert.equal(last!.minMs, 40);
  });

  test('measured through a ManualClock: the sample is exactly the elapsed milliseconds', () => {
    const clock = new ManualClock(10_000);
    const r = new RttTracker();
    const samples: number[] = [];
    for (const rtt of [37, 12, 250, 1]) {
      r.pingSent(clock.now());
      clock.setTimeout(() => samples.push(r.pongReceived(clock.now())!.sampleMs), rtt);
      clock.advance(1000);
    }
    assert.deepEqual(samples, [37, 12, 250, 1]);
    assert.equal(r.current()!.minMs, 1);
  });

  test('property: matches the RFC 6298 reference and stays within the sample range', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 10_000 }), { minLength: 1, maxLength: 100 }), (rtts) => {
        const r = new RttTracker();
        let t = 0;
        for (const rtt of rtts) {
          r.pingSent(t);
          r.pongReceived(t + rtt);
          t += rtt + 1;
        }
        const cur = r.current()!;
        const ref = rfc6298(rtts);
        assert.ok(Math.abs(cur.srttMs - ref.srtt) < 1e-9);
        assert.ok(Math.abs(cur.rttvarMs - ref.rttvar) < 1e-9);
        assert.equal(cur.sampleMs, rtts.at(-1));
        assert.equal(cur.minMs, Math.min(...rtts));
        assert.ok(cur.srttMs >= Math.min(...rtts) - 1e-9 && cur.srttMs <= Math.max(...rtts) + 1e-9);
        assert.ok(cur.rttvarMs >= 0);
      }),
      { numRuns: 300 },
    );
  });

  test('property: pipelined PINGs (up to 16) are answered in order with the right samples', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 500 }), { minLength: 1, maxLength: 16 }),
        fc.array(fc.integer({ min: 0, max: 500 }), { minLength: 16, maxLength: 16 }),
        (gaps, delays) => {
          const r = new RttTracker();
          const sent: number[] = [];
          let t = 0;
          for (const g of gaps) {
            t += g;
            sent.push(t);
            r.pingSent(t);
          }
          // Answers come back in order: each no earlier than its PING or the previous answer.
          let at = 0;
          sent.forEach((s, i) => {
            at = Math.max(at, s) + delays[i];
            assert.equal(r.pongReceived(at)?.sampleMs, at - s);
          });
          assert.equal(r.outstanding, 0);
        },
      ),
    );
  });
});
