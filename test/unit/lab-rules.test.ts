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
  assert.match(loss, /iifname "c\*" numgen random mod 100 < 5 counter drop/);
  assert.match(loss, /oifname "c\*" numgen random mod 100 < 5 counter drop/);
  const rst = faultRuleset([{ kind: 'reset', client: 1, port: 40000 }]);
  assert.match(rst, /iifname "c1" tcp sport 40000 counter reject with tcp reset/);
  assert.match(rst, /oifname "c1" tcp dport 40000 counter reject with tcp reset/);
  assert.doesNotMatch(faultRuleset([]), /drop|reject/);
  assert.throws(() => faultRuleset([{ kind: 'loss', client: 0, percent: 0, direction: 'up' }]), RangeError);
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
});
