import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ManualClock } from '../../src/core/clock.js';
import { activeDetectionMs, type ProbeOptions } from '../../src/core/heartbeat-policy.js';
import { HeartbeatScheduler, type HeartbeatAction } from '../../src/core/heartbeat-scheduler.js';

// interval 1000; after a PING wait 500 ms, then 2 probes 200 ms apart:
//   silent peer, last heard at 0: ping at 1000, probes at 1500 and 1700, dead at 1900
//   = activeDetectionMs(1000, PROBES)
const PROBES: ProbeOptions = { pongTimeoutMs: 500, probeCount: 2, probeIntervalMs: 200 };
const make = (now = 0, intervalMs = 1000, probes = PROBES) => new HeartbeatScheduler(intervalMs, probes, now);

/** Polls every millisecond in [from, to] and returns the non-'none' actions with their times. */
function pollEvery(s: HeartbeatScheduler, from: number, to: number, onPing?: (now: number) => void): [HeartbeatAction, number][] {
  const out: [HeartbeatAction, number][] = [];
  for (let now = from; now <= to; now++) {
    const a = s.poll(now);
    if (a !== 'none') {
      out.push([a, now]);
      if (a === 'ping' || a === 'probe') {
        s.sent(now);
        onPing?.(now);
      }
    }
  }
  return out;
}

/**
 * The owner's loop as the client and gateway run it: one timer armed at
 * nextWakeAt, re-armed after each poll and whenever received() says so. The
 * peer answers each PING after `answerMs` (or never, if null) until `peerDiesAt`.
 */
function simulate(opts: {
  s: HeartbeatScheduler;
  clock: ManualClock;
  until: number;
  answerMs?: number | null;
  peerDiesAt?: number;
  outbound?: number[];
  /** Outbound application traffic every this many ms, until `until`. */
  outboundEvery?: number;
  inbound?: number[];
}): [HeartbeatAction, number][] {
  const { s, clock } = opts;
  const log: [HeartbeatAction, number][] = [];
  let handle: unknown = null;
  const arm = () => {
    if (handle) clock.clearTimeout(handle);
    handle = null;
    const at = s.nextWakeAt();
    if (at !== Infinity) handle = clock.setTimeout(wake, at - clock.now());
  };
  const receive = () => {
    if (s.received(clock.now())) arm();
  };
  const wake = () => {
    handle = null;
    const now = clock.now();
    const a = s.poll(now);
    if (a !== 'none') log.push([a, now]);
    if (a === 'ping' || a === 'probe') {
      s.sent(now);
      const alive = opts.peerDiesAt === undefined || now < opts.peerDiesAt;
      if (alive && opts.answerMs != null) clock.setTimeout(receive, opts.answerMs);
    }
    if (a !== 'dead') arm();
  };
  for (const t of opts.outbound ?? []) clock.setTimeout(() => s.sent(clock.now()), t - clock.now());
  const every = opts.outboundEvery;
  if (every) {
    const tick = () => {
      s.sent(clock.now());
      if (clock.now() + every <= opts.until) clock.setTimeout(tick, every);
    };
    clock.setTimeout(tick, every);
  }
  for (const t of opts.inbound ?? []) clock.setTimeout(receive, t - clock.now());
  arm();
  clock.advanceTo(opts.until);
  return log;
}

describe('HeartbeatScheduler: when to PING', () => {
  test('a fresh link is healthy and first wakes one interval after creation', () => {
    const s = make(5000);
    assert.equal(s.phase, 'healthy');
    assert.equal(s.interval, 1000);
    assert.equal(s.lastHeardAt, 5000);
    assert.equal(s.nextWakeAt(), 6000);
  });

  test('an idle link pings exactly one interval after the last traffic, not 1 ms earlier', () => {
    const s = make();
    assert.equal(s.poll(0), 'none');
    assert.equal(s.poll(999), 'none');
    assert.equal(s.poll(1000), 'ping');
    assert.equal(s.phase, 'awaiting');
  });

  test('traffic both ways suppresses pings: the ping comes an interval after the older of the two', () => {
    const s = make();
    s.sent(600);
    s.received(700);
    assert.equal(s.nextWakeAt(), 1600);
    assert.equal(s.poll(1000), 'none');
    assert.equal(s.poll(1599), 'none');
    assert.equal(s.poll(1600), 'ping');
  });

  test('continuous traffic in both directions never pings', () => {
    const s = make();
    for (let t = 0; t < 100_000; t += 250) {
      s.sent(t);
      s.received(t + 100);
      assert.equal(s.poll(t + 200), 'none');
      assert.equal(s.nextWakeAt(), t + 1000);
    }
  });

  test('outbound traffic alone does not suppress the ping (in-idle)', () => {
    const s = make();
    const actions = [];
    for (let t = 100; t <= 1000; t += 100) {
      s.sent(t);
      actions.push(s.poll(t));
    }
    assert.deepEqual(actions.slice(0, 9), new Array(9).fill('none'));
    assert.equal(actions[9], 'ping', 'heard nothing for 1000 ms');
  });

  test('inbound traffic alone does not suppress the ping (out-idle keeps NAT mappings fresh)', () => {
    const s = make();
    for (let t = 100; t < 1000; t += 100) {
      assert.equal(s.received(t), false, 'nothing outstanding to settle');
      assert.equal(s.poll(t), 'none');
    }
    s.received(1000);
    assert.equal(s.poll(1000), 'ping', 'sent nothing for 1000 ms');
  });

  test('nextWakeAt is the earliest time a PING could be due', () => {
    const s = make();
    s.sent(300);
    assert.equal(s.nextWakeAt(), 1000, 'inbound still idle since 0');
    s.received(800);
    assert.equal(s.nextWakeAt(), 1300, 'now outbound is the older');
    assert.equal(s.poll(1299), 'none');
    assert.equal(s.poll(1300), 'ping');
  });

  test('a late poll still pings (and the owner decides when it is sent)', () => {
    const s = make();
    assert.equal(s.poll(5000), 'ping');
    assert.equal(s.nextWakeAt(), 5500, 'the PONG timeout runs from the poll');
  });
});

describe('HeartbeatScheduler: PONG timeout, probes, dead', () => {
  test('a silent peer: ping, probes at pongTimeout and each probeInterval, dead at the exact ms', () => {
    const s = make();
    const log = pollEvery(s, 0, 5000);
    assert.deepEqual(log, [
      ['ping', 1000],
      ['probe', 1500],
      ['probe', 1700],
      ['dead', 1900],
    ]);
    assert.equal(1900, activeDetectionMs(1000, PROBES));
  });

  test('phase and nextWakeAt through the sequence', () => {
    const s = make();
    assert.equal(s.poll(1000), 'ping');
    s.sent(1000);
    assert.equal(s.phase, 'awaiting');
    assert.equal(s.nextWakeAt(), 1500);
    assert.equal(s.poll(1499), 'none');
    assert.equal(s.poll(1500), 'probe');
    assert.equal(s.phase, 'suspect');
    assert.equal(s.nextWakeAt(), 1700);
    assert.equal(s.poll(1699), 'none');
    assert.equal(s.poll(1700), 'probe');
    assert.equal(s.nextWakeAt(), 1900);
    assert.equal(s.poll(1899), 'none', 'not 1 ms early');
    assert.equal(s.poll(1900), 'dead');
    assert.equal(s.phase, 'dead');
    assert.equal(s.nextWakeAt(), Infinity);
  });

  test('once dead, it stays dead and asks for nothing', () => {
    const s = make();
    pollEvery(s, 0, 1900);
    assert.equal(s.poll(1901), 'none');
    assert.equal(s.poll(1e9), 'none');
    s.sent(2000);
    s.received(2000);
    assert.equal(s.phase, 'dead');
    assert.equal(s.nextWakeAt(), Infinity);
    assert.equal(s.poll(1e9 + 1), 'none');
    assert.equal(s.checkNow(3000), false);
  });

  test('probeCount 0: dead right at the PONG timeout', () => {
    const s = make(0, 1000, { pongTimeoutMs: 500, probeCount: 0, probeIntervalMs: 200 });
    assert.deepEqual(pollEvery(s, 0, 3000), [
      ['ping', 1000],
      ['dead', 1500],
    ]);
  });

  test('outbound traffic while awaiting does not settle the PING', () => {
    const s = make();
    assert.equal(s.poll(1000), 'ping');
    s.sent(1100);
    s.sent(1400);
    assert.equal(s.phase, 'awaiting');
    assert.equal(s.poll(1500), 'probe');
  });

  test('dead at most activeDetectionMs after the last frame heard: sooner when out-idle pinged first', () => {
    const s = make();
    s.sent(100);
    s.received(450);
    const log = pollEvery(s, 0, 10_000);
    assert.deepEqual(log, [
      ['ping', 1100], // out-idle since 100
      ['probe', 1600],
      ['probe', 1800],
      ['dead', 2000],
    ]);
    assert.ok(2000 < 450 + activeDetectionMs(1000, PROBES));
  });

  test('dead exactly activeDetectionMs after the last frame heard when outbound traffic keeps flowing', () => {
    const s = make();
    s.received(450);
    const log: [HeartbeatAction, number][] = [];
    for (let now = 0; now <= 10_000; now++) {
      if (now % 100 === 0) s.sent(now); // application data, never answered
      const a = s.poll(now);
      if (a !== 'none') log.push([a, now]);
    }
    assert.deepEqual(log, [
      ['ping', 1450], // in-idle since 450
      ['probe', 1950],
      ['probe', 2150],
      ['dead', 2350],
    ]);
    assert.equal(2350, 450 + activeDetectionMs(1000, PROBES));
  });
});

describe('HeartbeatScheduler: received()', () => {
  test('returns true when it settles an outstanding PING, false otherwise', () => {
    const s = make();
    assert.equal(s.received(100), false, 'healthy: nothing to settle');
    assert.equal(s.poll(1100), 'ping');
    s.sent(1100);
    assert.equal(s.received(1130), true);
    assert.equal(s.phase, 'healthy');
    assert.equal(s.lastHeardAt, 1130);
    assert.equal(s.received(1140), false, 'already settled');
  });

  test('settling moves the next wake-up earlier than the armed PONG timeout could be', () => {
    const s = make();
    s.poll(1000);
    s.sent(1000);
    assert.equal(s.nextWakeAt(), 1500);
    assert.equal(s.received(1040), true);
    assert.equal(s.nextWakeAt(), 2000, 'an interval after the PING was sent');
    assert.equal(s.poll(1999), 'none');
    assert.equal(s.poll(2000), 'ping');
  });

  test('any inbound frame settles, also during the probes, and the probe budget starts over', () => {
    const s = make();
    s.poll(1000);
    s.sent(1000);
    s.poll(1500);
    s.sent(1500);
    assert.equal(s.phase, 'suspect');
    assert.equal(s.received(1650), true);
    assert.equal(s.phase, 'healthy');
    // Next silence: full PONG timeout and both probes again.
    const log = pollEvery(s, 1651, 10_000);
    assert.deepEqual(log, [
      ['ping', 2500],
      ['probe', 3000],
      ['probe', 3200],
      ['dead', 3400],
    ]);
  });

  test('a PONG arriving exactly at the timeout, before the poll, wins', () => {
    const s = make();
    s.poll(1000);
    s.sent(1000);
    assert.equal(s.received(1500), true);
    assert.equal(s.poll(1500), 'none');
  });

  test('a poll at the timeout before the PONG is processed counts as missed', () => {
    const s = make();
    s.poll(1000);
    s.sent(1000);
    assert.equal(s.poll(1500), 'probe');
    assert.equal(s.received(1500), true, 'the late PONG still settles');
    assert.equal(s.phase, 'healthy');
  });
});

describe('HeartbeatScheduler: checkNow()', () => {
  test('starts a quick check: the caller probes now, and the check counts as one of probeCount', () => {
    const s = make();
    assert.equal(s.checkNow(300), true);
    assert.equal(s.phase, 'suspect');
    assert.equal(s.nextWakeAt(), 500);
    assert.equal(s.poll(499), 'none');
    assert.equal(s.poll(500), 'probe');
    s.sent(500);
    assert.equal(s.nextWakeAt(), 700);
    assert.equal(s.poll(699), 'none');
    assert.equal(s.poll(700), 'dead', 'probeCount (2) probes, 200 ms each');
  });

  test('refused while a check or PING is already outstanding, and when dead', () => {
    const s = make();
    assert.equal(s.checkNow(100), true);
    assert.equal(s.checkNow(150), false);
    const t = make();
    t.poll(1000);
    assert.equal(t.checkNow(1100), false, 'a PING is already awaiting its answer');
    assert.equal(t.nextWakeAt(), 1500, 'unchanged');
  });

  test('an answer settles it; a new check is then allowed', () => {
    const s = make();
    s.checkNow(300);
    assert.equal(s.received(320), true);
    assert.equal(s.phase, 'healthy');
    assert.equal(s.checkNow(400), true);
  });

  test('with probeCount 0 the check still waits one probe interval', () => {
    const s = make(0, 1000, { pongTimeoutMs: 500, probeCount: 0, probeIntervalMs: 200 });
    assert.equal(s.checkNow(300), true);
    assert.equal(s.poll(499), 'none');
    assert.equal(s.poll(500), 'dead');
  });
});

describe('HeartbeatScheduler: setIntervalMs and Infinity', () => {
  test('a shorter interval brings the next ping forward; a longer one pushes it back', () => {
    const s = make();
    s.setIntervalMs(400);
    assert.equal(s.interval, 400);
    assert.equal(s.nextWakeAt(), 400);
    assert.equal(s.poll(399), 'none');
    assert.equal(s.poll(400), 'ping');
    s.sent(400);
    s.received(410);
    s.setIntervalMs(5000);
    assert.equal(s.nextWakeAt(), 5400);
    assert.equal(s.poll(5399), 'none');
    assert.equal(s.poll(5400), 'ping');
  });

  test('shortening the interval below the time already idle pings at the next poll', () => {
    const s = make();
    assert.equal(s.poll(800), 'none');
    s.setIntervalMs(500);
    assert.equal(s.nextWakeAt(), 500, 'overdue');
    assert.equal(s.poll(800), 'ping');
  });

  test('setIntervalMs does not disturb an outstanding PING', () => {
    const s = make();
    s.poll(1000);
    s.setIntervalMs(100);
    assert.equal(s.nextWakeAt(), 1500);
    assert.equal(s.poll(1200), 'none');
  });

  test('an Infinity interval never pings and never wakes', () => {
    const s = make(0, Infinity);
    assert.equal(s.nextWakeAt(), Infinity);
    for (const t of [0, 1000, 1e6, 1e12, Number.MAX_SAFE_INTEGER]) assert.equal(s.poll(t), 'none');
    assert.equal(s.phase, 'healthy');
  });

  test('an Infinity interval still runs a quick check to the end', () => {
    const s = make(0, Infinity);
    assert.equal(s.checkNow(1e6), true);
    assert.equal(s.poll(1e6 + 200), 'probe');
    assert.equal(s.poll(1e6 + 400), 'dead');
  });

  test('switching to Infinity stops pings; switching back resumes them', () => {
    const s = make();
    s.setIntervalMs(Infinity);
    assert.equal(s.poll(50_000), 'none');
    s.setIntervalMs(1000);
    assert.equal(s.poll(50_000), 'ping', 'idle long past the interval');
  });
});

describe('HeartbeatScheduler: driven on a ManualClock', () => {
  test('an answering peer: one PING per interval, never a probe', () => {
    const clock = new ManualClock(0);
    const log = simulate({ s: make(), clock, until: 10_500, answerMs: 30 });
    assert.deepEqual(log, [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10_000].map((t) => ['ping', t]));
  });

  test('a peer that dies: the next PING goes unanswered and the link is dead at the exact ms, within activeDetectionMs of the last answer', () => {
    const clock = new ManualClock(0);
    const s = make();
    const log = simulate({ s, clock, until: 20_000, answerMs: 30, peerDiesAt: 3500 });
    // Last PING answered: sent 3000, answered 3030; next PING an interval after it was sent.
    assert.deepEqual(log.slice(-4), [
      ['ping', 4000],
      ['probe', 4500],
      ['probe', 4700],
      ['dead', 4900],
    ]);
    assert.equal(s.lastHeardAt, 3030);
    assert.ok(4900 <= 3030 + activeDetectionMs(1000, PROBES), 'the documented bound');
    assert.equal(clock.pendingTimers, 0, 'nothing armed once dead');
  });

  test('two-way traffic suppresses every PING; when inbound stops, the PING follows an interval later', () => {
    const clock = new ManualClock(0);
    const traffic = Array.from({ length: 20 }, (_, i) => 300 + i * 300); // 300 .. 6000
    const log = simulate({ s: make(), clock, until: 6509, answerMs: 10, outbound: traffic, inbound: traffic.filter((t) => t <= 4500) });
    assert.deepEqual(log, [['ping', 5500]], 'outbound alone does not suppress: 1000 ms after inbound stopped at 4500');
  });

  test('a PONG that arrives while probing re-arms the owner for the next interval', () => {
    const clock = new ManualClock(0);
    // Answers take 600 ms: longer than the PONG timeout, so each PING causes one probe.
    const log = simulate({ s: make(), clock, until: 3999, answerMs: 600 });
    assert.deepEqual(log, [
      ['ping', 1000],
      ['probe', 1500],
      ['ping', 2500], // settled at 1600 (the PING's answer); an interval after the probe at 1500
      ['probe', 3000],
    ]);
  });

  /** Inbound frames at cumulative gaps, each shorter than `limit`, so none comes after the link could be dead. */
  const inboundTimes = (gaps: number[], limit: number): number[] => {
    const out: number[] = [];
    let t = 0;
    for (const g of gaps) {
      if (g >= limit) break;
      t += g;
      out.push(t);
    }
    return out;
  };

  const probesArb = fc.record({
    pongTimeoutMs: fc.integer({ min: 1, max: 3000 }),
    probeCount: fc.integer({ min: 0, max: 4 }),
    probeIntervalMs: fc.integer({ min: 1, max: 1000 }),
  });

  test('property: a silent peer is declared dead no sooner than pongTimeout + probes and no later than activeDetectionMs after the last frame heard', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5000 }),
        probesArb,
        fc.array(fc.integer({ min: 1, max: 20_000 }), { maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 40_000 }), { maxLength: 20 }),
        (intervalMs, probes, inGaps, outbound) => {
          const clock = new ManualClock(0);
          const s = new HeartbeatScheduler(intervalMs, probes, 0);
          const detect = activeDetectionMs(intervalMs, probes);
          const ins = inboundTimes(inGaps, probes.pongTimeoutMs + probes.probeCount * probes.probeIntervalMs);
          const lastHeard = ins.at(-1) ?? 0;
          const log = simulate({ s, clock, until: lastHeard + detect + 30_000, answerMs: null, inbound: ins, outbound });
          const [last, at] = log.at(-1)!;
          assert.equal(last, 'dead');
          assert.equal(log.filter(([a]) => a === 'dead').length, 1);
          assert.equal(s.lastHeardAt, lastHeard);
          assert.ok(at <= lastHeard + detect, `dead at ${at}, later than ${lastHeard} + ${detect}`);
          assert.ok(at >= lastHeard + detect - intervalMs, `dead at ${at}, too soon after ${lastHeard}`);
        },
      ),
      { numRuns: 200 },
    );
  });

  test('property: with steady outbound traffic, dead comes exactly activeDetectionMs after the last frame heard', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 20, max: 5000 }),
        probesArb,
        fc.array(fc.integer({ min: 1, max: 20_000 }), { maxLength: 10 }),
        (intervalMs, probes, inGaps) => {
          const clock = new ManualClock(0);
          const s = new HeartbeatScheduler(intervalMs, probes, 0);
          const detect = activeDetectionMs(intervalMs, probes);
          const ins = inboundTimes(inGaps, detect);
          const lastHeard = ins.at(-1) ?? 0;
          const until = lastHeard + detect + 10_000;
          const log = simulate({ s, clock, until, answerMs: null, inbound: ins, outboundEvery: Math.ceil(intervalMs / 2) });
          assert.deepEqual(log.at(-1), ['dead', lastHeard + detect]);
          // Traffic both ways kept the link quiet until inbound stopped.
          assert.equal(log[log.length - 2 - probes.probeCount][0], 'ping');
          assert.equal(log[log.length - 2 - probes.probeCount][1], lastHeard + intervalMs);
        },
      ),
      { numRuns: 100 },
    );
  });

  test('property: a PING is asked for only when one direction has been idle a whole interval', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2000 }),
        fc.array(fc.tuple(fc.constantFrom('in', 'out', 'poll'), fc.integer({ min: 0, max: 700 })), { maxLength: 200 }),
        (intervalMs, events) => {
          const s = new HeartbeatScheduler(intervalMs, { pongTimeoutMs: 100, probeCount: 1, probeIntervalMs: 100 }, 0);
          let now = 0;
          let lastIn = 0;
          let lastOut = 0;
          for (const [kind, gap] of events) {
            now += gap;
            if (kind === 'in') {
              s.received(now);
              lastIn = now;
            } else if (kind === 'out') {
              s.sent(now);
              lastOut = now;
            } else {
              const healthy = s.phase === 'healthy';
              const a = s.poll(now);
              if (healthy) {
                const idle = now - lastIn >= intervalMs || now - lastOut >= intervalMs;
                assert.equal(a, idle ? 'ping' : 'none', `at ${now}: in ${lastIn}, out ${lastOut}`);
                if (!idle) assert.ok(s.nextWakeAt() > now);
              }
              if (a === 'dead') return;
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('HeartbeatScheduler: the owner\'s own stalls', () => {
  test('the part of the last wait the owner spent stalled is added to it, never more than the wait itself', () => {
    // Silent peer: ping at 1000, probes at 1500 and 1700, the last wait ends at 1900.
    const stalled = (s: number) => ({ stalledWithin: (from: number, to: number) => Math.max(0, Math.min(to, 1950) - Math.max(from, 1950 - s)) });
    const at = (owner: { stalledWithin(from: number, to: number): number }) => {
      const s = make();
      for (let now = 0; now <= 10_000; now++) if (s.poll(now, owner) === 'dead') return now;
      return -1;
    };
    assert.equal(at(stalled(0)), 1900, 'no stall: as before');
    assert.equal(at(stalled(150)), 2050, 'a 150 ms stall in the wait: 150 ms more');
    // A stall that began before the wait counts only from the wait's start, and at most its 200 ms.
    assert.equal(at(stalled(5000)), 2100);
  });
});
