import assert from 'node:assert/strict';
import { test } from 'node:test';
import { spawnSync } from 'node:child_process';
import { CLI, spawnCli } from '../helpers/procs.js';

// `npm run demo` as a newcomer runs it: a gateway, its dashboard and a fleet
// that connects, chats, freezes and drops, here for a bounded time.
test('the demo runs a gateway, its dashboard and a live fleet, and stops by itself', async () => {
  const p = spawnCli(['demo', '--json', '--admin-port', '0', '--clients', '24', '--duration-ms', '16000']);
  try {
    const ready = await p.waitFor((x) => x.event === 'ready', 10_000, 'the ready line');
    const dashboard = ready.dashboard as string;
    assert.match(dashboard, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const page = await fetch(dashboard);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<html/i);
    const progress = await p.waitFor((x) => x.event === 'progress' && (x.t as number) >= 10, 15_000, 'progress at 10 s');
    assert.ok((progress.online as number) >= 12, `most of the fleet is online (${progress.online})`);
    const fleet = progress.fleet as { started: number; chats: number };
    assert.equal(fleet.started, 24);
    assert.ok(fleet.chats > 0, 'they chat');
    assert.ok((progress.pingsIn as number) > 0 && (progress.pingsOut as number) > 0, 'heartbeats both ways');
    const overview = await (await fetch(new URL('api/overview', dashboard))).json();
    assert.ok(overview.online.devices > 0);
    await p.waitFor((x) => x.event === 'stopped', 15_000, 'the demo to stop');
  } finally {
    await p.kill();
  }
});

test('demo --admin-port out of range is refused by name before anything starts, not a RangeError stack', () => {
  const r = spawnSync(process.execPath, [CLI, 'demo', '--admin-port', '70000', '--clients', '1', '--duration-ms', '1000', '--json'], { encoding: 'utf8', timeout: 20_000 });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /--admin-port.*expected a port, 0 to 65535/);
  assert.doesNotMatch(r.stderr + r.stdout, /RangeError|"event":"ready"/);
});
