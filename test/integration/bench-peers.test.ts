import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mosquittoUnavailable, PEERS, runPeer } from '../../bench/peers/run.js';

// The benchmark's machinery at a small size: every peer's server and the load
// generator really exchange heartbeats, counted at the client, so a broken
// peer setup cannot pass silently. No timing is asserted here; the numbers
// belong to `npm run bench`. Each run starts with a small warm-up (connections
// opened and closed before the measured set-up), as the benchmark's runs do.

const COUNT = 30;
const STEADY_S = 2;
const noMosquitto = mosquittoUnavailable();

for (const peer of PEERS) {
  const skip = peer === 'mosquitto' && noMosquitto ? `skipped: ${noMosquitto}` : false;
  test(`bench peer ${peer}: ${COUNT} connections answer their heartbeats and get every fan-out message`, { skip }, async () => {
    const r = await runPeer(peer, { count: COUNT, intervalMs: 500, steadyS: STEADY_S, settleS: 0.5, fanoutRounds: 3, warmup: 10 });
    assert.equal(r.warmup?.connections, 10, 'the warm-up opened its connections before the measured set-up');
    assert.equal(r.connections, COUNT);
    assert.equal(r.failed, 0);
    assert.ok(r.clientSetupCpuUsPerConnection > 0, 'the load generator reports its own CPU over the set-up');
    const expected = (COUNT * STEADY_S * 1000) / 500;
    assert.ok(r.roundTrips >= expected * 0.7 && r.roundTrips <= expected * 1.3, `${r.roundTrips} round trips, about ${expected} expected`);
    assert.ok(r.bytesPerRoundTrip >= 2 && r.bytesPerRoundTrip <= 64, `${r.bytesPerRoundTrip} bytes per round trip`);
    assert.ok(Number.isFinite(r.cpuUsPerRoundTrip) && r.rssPerConnectionKB > -1000);
    assert.equal(r.fanoutMessages, 3 * COUNT, 'every fan-out message reached every client');
  });
}

test('setup-alloc: every peer opens every connection and reports allocation per set-up, longlink with its own code among the sites', async () => {
  const { execFileSync } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const script = fileURLToPath(new URL('../../bench/setup-alloc.js', import.meta.url));
  for (const peer of ['longlink-tcp', 'net-hello', 'longlink-ws', 'ws']) {
    const out = execFileSync(process.execPath, [script, peer, '--count', '200', '--warmup', '50', '--top', '40'], { encoding: 'utf8', timeout: 60_000 });
    const m = /(\d+) bytes allocated per set-up/.exec(out);
    assert.ok(m && Number(m[1]) > 500, out);
    assert.equal(/src\/gateway\//.test(out), peer.startsWith('longlink'), out);
    // The WebSocket peers' set-up goes through ws's upgrade (longlink-ws's too: ws makes the handshake).
    assert.equal(/ws\/lib\/websocket-server/.test(out), peer.endsWith('ws'), out);
  }
  // --kept promoted: what outlived the young generation, a part of what was allocated.
  const kept = execFileSync(process.execPath, [script, 'longlink-ws', '--count', '200', '--warmup', '50', '--kept', 'promoted'], { encoding: 'utf8', timeout: 60_000 });
  assert.match(kept, /\d+ bytes allocated and outliving the young generation per set-up/);
  const compiles = execFileSync(process.execPath, [script, 'longlink-tcp', '--count', '200', '--warmup', '50', '--compiles'], { encoding: 'utf8', timeout: 60_000 });
  assert.match(compiles, /\d+ functions optimized by TurboFan during the measured set-ups/);
  assert.match(compiles, /µs of CPU per set-up/);
});
