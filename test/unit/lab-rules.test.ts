import assert from 'node:assert/strict';
import { test } from 'node:test';
import { faultRuleset, natRuleset } from '../../src/lab/ruleset.js';
import { markdownTable, svgChart } from '../../src/lab/report.js';
import type { ScenarioReport } from '../../src/lab/scenarios.js';

test('the NAT ruleset masquerades towards the server and, when strict, drops packets of forgotten mappings', () => {
  const strict = natRuleset({ clients: 2, strict: true });
  assert.match(strict, /oifname "srv" masquerade/);
  assert.equal(strict.match(/ct state invalid counter drop/g)?.length, 2, 'forward and input');
  assert.match(strict, /iifname "c1" counter name "up_1"/);
  assert.doesNotMatch(natRuleset({ clients: 1, strict: false }), /invalid/);
  assert.match(natRuleset({ clients: 1, strict: true, relays: [{ serverPort: 7001, relayPort: 7101 }] }), /tcp dport 7001 redirect to :7101/);
});

test('faults: blackhole and loss by direction, reset for one connection, an empty table clears all', () => {
  const up = faultRuleset([{ kind: 'blackhole', client: 0, direction: 'up' }]);
  assert.match(up, /iifname "c0" counter drop/);
  assert.doesNotMatch(up, /oifname "c0"/);
  const loss = faultRuleset([{ kind: 'loss', client: -1, percent: 5, direction: 'both' }]);
  assert.match(loss, /iifname "c\*" numgen random mod 10000 < 500 counter drop/);
  assert.match(loss, /oifname "c\*" numgen random mod 10000 < 500 counter drop/);
  const rst = faultRuleset([{ kind: 'reset', client: 1, port: 40000 }]);
  assert.match(rst, /iifname "c1" tcp sport 40000 counter reject with tcp reset/);
  assert.match(rst, /oifname "c1" tcp dport 40000 counter reject with tcp reset/);
  assert.doesNotMatch(faultRuleset([]), /drop|reject/);
  assert.throws(() => faultRuleset([{ kind: 'loss', client: 0, percent: 0, direction: 'up' }]), RangeError);
  // What `lab up` types in: refused, not made into something else or into a rule that matches nothing.
  assert.throws(() => faultRuleset([{ kind: 'blackhole', client: 0, direction: 'sideways' as 'up' }]), /direction/);
  assert.throws(() => faultRuleset([{ kind: 'blackhole', client: Number.NaN, direction: 'up' }]), /client/);
  assert.throws(() => faultRuleset([{ kind: 'loss', client: 0.5, percent: 5, direction: 'up' }]), /client/);
  assert.throws(() => faultRuleset([{ kind: 'blackhole', client: -2, direction: 'up' }]), /client/);
  assert.throws(() => faultRuleset([{ kind: 'reset', client: 0, port: 0 }]), /port/);
  assert.match(faultRuleset([{ kind: 'blackhole', client: -1, direction: 'down' }]), /oifname "c\*" counter drop/);
});

test('reports: the Markdown table and the SVG show detections, misses, bounds and false disconnects', () => {
  const base = {
    scenario: 's', variant: 'v', windowMs: 10_000, serverBoundMs: 2550, clientBoundMs: 2500, serverReason: null, clientReason: null,
    reconnectMs: null, delivered: null, deliveryMs: null, falseDisconnects: 0, heartbeats: { client: 3, server: 1 }, bytes: { up: 300, down: 200 }, note: '',
  };
  const rep: ScenarioReport = {
    scenario: 's', title: 'T', startedAt: '2026-01-01T00:00:00Z', lab: { natTimeoutSec: 5, strict: true, relay: null },
    results: [
      { ...base, kind: 'fault', fault: 'blackhole', serverDetectMs: 2100, clientDetectMs: null, serverReason: 'heartbeat-timeout' },
      { ...base, kind: 'fault', frozen: 'client', fault: 'client frozen', serverDetectMs: 1900, clientDetectMs: null },
      { ...base, kind: 'idle', fault: 'idle 8 s', serverDetectMs: null, clientDetectMs: null, delivered: false },
      { ...base, kind: 'quiet', fault: 'loss', serverDetectMs: null, clientDetectMs: null, falseDisconnects: 2, falseBy: { server: 2, client: 0 } },
    ],
  };
  const md = markdownTable(rep);
  assert.match(md, /\| client frozen \| 1\.90 s \(bound 2\.55 s\) \| frozen, cannot notice \|/);
  assert.match(md, /\| v \| blackhole \| 2\.10 s \(bound 2\.55 s\) heartbeat-timeout \| not within 10 s \(bound 2\.50 s\) \|/);
  assert.match(md, /\| 2 \(gateway 2, client 0\) \|/);
  const svg = svgChart([rep]);
  assert.match(svg, /^<svg[^>]+>/);
  assert.match(svg, /2\.10 s/);
  assert.match(svg, /client: not noticed/);
  assert.match(svg, /2 false disconnects/);
  assert.match(svg, /client: frozen, cannot notice/);
  assert.match(svg, /push after the idle span lost/);
  assert.match(md, /\| v \| idle 8 s \| no close \| no close \| — \| lost on the dead link \|/);
  assert.match(svg, /<\/svg>\n$/);
  assert.doesNotMatch(md + svg, /over the bound/, 'nothing here is past its bound');
  // A detection past longlink's bound is said so in both, not left for the reader to compare.
  const late: ScenarioReport = { ...rep, results: [{ ...base, kind: 'fault', fault: 'late', serverDetectMs: 3100, clientDetectMs: 2400 }] };
  assert.match(markdownTable(late), /\| 3\.10 s \(bound 2\.55 s\) \*\*over the bound\*\* \| 2\.40 s \(bound 2\.50 s\) \|/);
  const lateSvg = svgChart([late]);
  assert.equal(lateSvg.match(/over the bound/g)?.length, 1);
  assert.match(lateSvg, /fill="#c33"/);
});

test('adaptive report: the table compares clients per NAT timeout and the chart draws the interval and lost links', async () => {
  const { adaptiveMarkdown, adaptiveSvg } = await import('../../src/lab/adaptive-report.js');
  const row = {
    timeoutSec: 8, spanMs: 600_000, drops: 2, heartbeats: 100, heartbeatsPerHour: 600, minimumPerHour: 474, bytes: { up: 1, down: 1 },
  };
  const rep = {
    startedAt: '2026-01-01T00:00:00Z',
    options: { timeoutsSec: [8], spanMs: 600_000, startMs: 4000, fixedMs: [27_000] },
    rows: [
      { ...row, variant: 'adaptive', adaptive: true, dropsWhileLearning: 2, dropsAfterSettled: 0, settledMs: 7440, settledShareOfT: 0.93, probeSteps: 3, learnedInMs: 40_000, heartbeatsPerHourAfterSettled: 484 },
      { ...row, variant: 'fixed 27 s', adaptive: false, drops: 20, dropsWhileLearning: null, dropsAfterSettled: null, settledMs: null, settledShareOfT: null, probeSteps: null, learnedInMs: null, heartbeatsPerHourAfterSettled: null },
    ],
    timelines: [{ timeoutSec: 8, points: [{ atMs: 0, intervalMs: 8000, change: 'range' }, { atMs: 40_000, intervalMs: 7440, change: 'settled' }], drops: [20_000, 40_000] }],
  };
  const md = adaptiveMarkdown(rep);
  assert.match(md, /\| 8 s \| adaptive \| 7\.4 s \(93%\) \| 3 \| 2 \| 40\.0 s \| 0 \| 2 \| 100 \| 600 \| 484 \| 474 \| \+2% \|/);
  assert.match(md, /\| 8 s \| fixed 27 s \| — \|/);
  const svg = adaptiveSvg(rep);
  assert.match(svg, /NAT timeout 8 s/);
  assert.equal(svg.match(/>×</g)?.length, 2, 'one cross per lost link');
  assert.match(svg, /20 links lost/);
});

test('a loss fault drops what it says in hundredths of a percent: 0.4 % is not a rule that never drops, 0.5 % is not 1 %', () => {
  const rule = (percent: number) => /numgen random mod (\d+) < (\d+) counter drop/.exec(faultRuleset([{ kind: 'loss', client: 0, percent, direction: 'up' }]))!;
  for (const [percent, threshold] of [[0.4, 40], [0.5, 50], [2.5, 250], [100, 10000]] as const) {
    const m = rule(percent);
    assert.equal(Number(m[2]) / Number(m[1]), threshold / 10000, `${percent}%: ${m[0]}`);
  }
  assert.throws(() => faultRuleset([{ kind: 'loss', client: 0, percent: 0.001, direction: 'up' }]), /0\.01 to 100/);
});
