import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BenchArgsError, parseBenchArgs } from '../../bench/bench-args.js';
import { runHold } from '../../bench/hold-bench.js';
import { roundRatios } from '../../bench/ratios.js';

const BENCH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench/heartbeat-bench.js');

describe('bench command line', () => {
  test('unknown and misspelt flags are refused, naming what the mode takes', () => {
    assert.throws(() => parseBenchArgs(['--hepl']), (e: Error) => e instanceof BenchArgsError && /--hepl/.test(e.message) && /--count/.test(e.message));
    assert.throws(() => parseBenchArgs(['--scale', '--count', '5']), (e: Error) => e instanceof BenchArgsError && /--target/.test(e.message));
    assert.throws(() => parseBenchArgs(['--scale', '--storm']), /one mode per run/);
    assert.throws(() => parseBenchArgs(['--count', 'many']).num('count'), /must be a number/);
  });

  test('results go to a scratch folder unless --publish or --out', () => {
    assert.equal(parseBenchArgs([]).out, 'bench-out/peers');
    assert.equal(parseBenchArgs(['--hold']).out, 'bench-out/hold');
    assert.equal(parseBenchArgs(['--publish']).out, 'docs/bench');
    assert.equal(parseBenchArgs(['--scale', '--out', '/tmp/x']).out, '/tmp/x');
    assert.equal(parseBenchArgs(['--hold', '--hold-s', '60']).num('hold-s'), 60);
    assert.equal(parseBenchArgs(['--scale', '--workers', '1']).auto('workers'), 1);
    assert.equal(parseBenchArgs(['--scale']).auto('workers'), 'auto');
  });

  test('--help prints every mode and runs nothing; a bad flag exits 2 before anything runs', () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'll-bench-cli-'));
    try {
      const help = spawnSync(process.execPath, [BENCH, '--help'], { cwd, encoding: 'utf8', timeout: 20_000 });
      assert.equal(help.status, 0, help.stderr);
      for (const m of ['--hold', '--scale', '--storm', '--fuzz', '--publish', '--repeat']) assert.match(help.stdout, new RegExp(m));
      const bad = spawnSync(process.execPath, [BENCH, '--hold', '--conections', '5'], { cwd, encoding: 'utf8', timeout: 20_000 });
      assert.equal(bad.status, 2);
      assert.match(bad.stderr, /--conections/);
      assert.deepEqual(fs.readdirSync(cwd), [], 'nothing written');
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });

  test('the other bench tools print their usage on --help and run nothing', () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'll-bench-cli-'));
    try {
      for (const [tool, flag] of [['profile-server', '--setup'], ['setup-alloc', '--against'], ['fast-path', '--rounds'], ['redis-load', '--cluster'], ['detector-sim', '--hours']]) {
        const help = spawnSync(process.execPath, [path.join(path.dirname(BENCH), `${tool}.js`), '--help'], { cwd, encoding: 'utf8', timeout: 20_000 });
        assert.equal(help.status, 0, `${tool}: ${help.stderr}`);
        assert.ok(help.stdout.includes(flag) && !help.stdout.includes(' * '), `${tool} prints its usage as text: ${help.stdout.slice(0, 200)}`);
      }
      assert.deepEqual(fs.readdirSync(cwd), [], 'nothing written');
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });
});

test('ratios are taken within a round, then the median of the rounds', () => {
  // The case: the floor drifts between rounds.
  const runs = [
    { round: 0, peer: 'net', us: 19.7 },
    { round: 0, peer: 'll', us: 22.1 },
    { round: 1, peer: 'net', us: 14.1 },
    { round: 1, peer: 'll', us: 19.0 },
    { round: 2, peer: 'net', us: 14.5 },
    { round: 2, peer: 'll', us: 16.8 },
  ];
  const r = roundRatios(runs, (x) => x.peer === 'll', (x) => x.peer === 'net', (x) => x.us)!;
  assert.deepEqual(
    r.perRound.map((x) => +x.toFixed(2)),
    [1.12, 1.35, 1.16],
  );
  assert.equal(+r.median.toFixed(2), 1.16, 'the median of per-round ratios, not 19.0 / 14.5 = 1.31');
  assert.equal(+r.min.toFixed(2), 1.12);
  assert.equal(+r.max.toFixed(2), 1.35);
  assert.equal(roundRatios([{ round: 0, peer: 'll', us: 1 }], (x) => x.peer === 'll', (x) => x.peer === 'net', (x) => x.us), null);
});

test('the long hold at a small size: both peers at once, every window measured, nothing closed, report and chart written', { timeout: 120_000 }, async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'll-hold-'));
  try {
    const r = await runHold({ connections: 300, intervalMs: 1000, holdS: 6, sampleS: 2, peers: ['net', 'longlink-tcp'], servers: 1, out, rampTimeoutS: 60 }, () => {});
    for (const peer of ['net', 'longlink-tcp'] as const) {
      const ws = r.windows.filter((w) => w.peer === peer);
      assert.equal(ws.length, 3, `${peer}: three windows`);
      for (const w of ws) {
        assert.equal(w.open, 300);
        assert.equal(w.closed, 0);
        assert.ok(w.heartbeats >= 300 * 2 * 0.7, `${peer}: ${w.heartbeats} heartbeats in a 2 s window`);
        assert.ok(w.cpuUsPerHeartbeat > 0 && w.rssMB > 0);
      }
    }
    const ll = r.windows.filter((w) => w.peer === 'longlink-tcp');
    assert.ok(ll.every((w) => w.armsPerS !== null && w.armsPerS > 0 && w.armsPerS <= 40), `runner arms/s: ${ll.map((w) => w.armsPerS)}`);
    assert.ok(r.summary['longlink-tcp'].ratioLast !== null);
    for (const f of ['hold.json', 'hold.md', 'hold.svg']) assert.ok(fs.statSync(path.join(out, f)).size > 200, f);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});
