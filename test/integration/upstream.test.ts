import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { LonglinkClient } from '../../src/client/client.js';
import { webhookSignature } from '../../src/upstream/webhook.js';
import { spawnNode, spawnServe } from '../helpers/procs.js';
import { redisUnavailable, startRedis } from '../helpers/redis.js';

// Upstream through a webhook, to a backend that is not Node (Python, standard library only),
// down for 10 s while the device keeps sending: nothing is acknowledged to the device while the backend refuses;
// once it is back, every message reaches it exactly once (by id), signed, and its replies reach
// the device.

const BACKEND = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures/webhook_backend.py');
const python = spawnSync('python3', ['--version']).status === 0 ? 'python3' : null;

test('a webhook backend that is down loses nothing: no ack before it has the message, each message once after it returns', { skip: python ? false : 'skipped: python3 is not installed (apt-get install python3)' }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'longlink-hook-'));
  const down = path.join(dir, 'DOWN');
  fs.writeFileSync(down, '');
  const hook = spawnNode(BACKEND, [down, 'hook-secret'], python!);
  const port = Number((await hook.waitFor((l) => l.event === 'listening', 10_000, 'the backend listening')).port);
  const server = await spawnServe(['--no-admin', '--upstream-webhook', `http://127.0.0.1:${port}/hook`, '--upstream-secret', 'hook-secret']);
  const client = new LonglinkClient({ url: server.tcp, userId: 'alice', deviceId: 'phone' });
  const acked: string[] = [];
  const replies: string[] = [];
  client.on('acked', (a) => acked.push(a.id));
  client.on('message', (m) => replies.push(Buffer.from(m.payload).toString()));
  try {
    assert.equal(server.lines.find((l) => l.event === 'listening')!.app, 'none', 'with an upstream, no relay unless asked for');
    await client.connect();
    // Down for 10 s, the device sending all along (one message every 500 ms).
    const downAt = Date.now();
    const ids = [client.send('m0')];
    await hook.waitFor((l) => l.event === 'refused', 10_000, 'the backend refusing');
    for (let i = 1; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 500));
      ids.push(client.send(`m${i}`));
    }
    await new Promise((r) => setTimeout(r, Math.max(0, downAt + 10_000 - Date.now())));
    assert.deepEqual(acked, [], 'nothing acknowledged while the backend is down');
    fs.rmSync(down);
    const upAt = Date.now();
    for (let i = 0; i < 300 && acked.length < ids.length; i++) await new Promise((r) => setTimeout(r, 100));
    console.log(`webhook outage: down ${upAt - downAt} ms, ${ids.length} messages sent meanwhile, all acknowledged ${Date.now() - upAt} ms after it returned`);
    assert.deepEqual(acked, ids, 'every message acknowledged, in order, once the backend had it');
    const got = hook.lines.filter((l) => l.event === 'message');
    assert.deepEqual(got.map((l) => l.id), ids, 'the backend got each message exactly once, in order');
    assert.ok(got.every((l) => l.signed === true && l.user === 'alice' && l.device === 'phone'));
    for (let i = 0; i < 50 && replies.length < ids.length; i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(replies, ids.map((_, i) => `got m${i}`), "the backend's replies reached the device");
    // The Python backend's check (the documented one) refuses a delivery signed 10 minutes ago, as a
    // replayed capture would be, and a timestamp moved forward; the same body signed now passes.
    const body = JSON.stringify({ type: 'message', user: 'alice', device: 'phone', id: 'replayed', text: 'again' });
    const now = Math.floor(Date.now() / 1000);
    const deliver = (sig: string) => fetch(`http://127.0.0.1:${port}/hook`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-longlink-signature': sig }, body }).then((r) => r.status);
    assert.equal(await deliver(webhookSignature('hook-secret', body, now - 600)), 401, 'replayed 10 minutes later');
    assert.equal(await deliver(webhookSignature('hook-secret', body, now - 600).replace(`t=${now - 600},`, `t=${now},`)), 401, 'its timestamp moved');
    assert.equal(await deliver(webhookSignature('hook-secret', body, now)), 200, 'fresh');
    await hook.waitFor((l) => l.id === 'replayed' && l.signed === true, 5_000, "the backend's line for the fresh one");
    assert.deepEqual(hook.lines.filter((l) => l.id === 'replayed').map((l) => l.signed), [false, false, true]);
  } finally {
    client.close();
    await server.kill();
    await hook.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const noRedis = redisUnavailable();

test('upstream to a Redis stream: acknowledged once XADD succeeded (not while Redis stalls writes), read by a shell consumer group with redis-cli', { skip: noRedis ? `skipped: ${noRedis}` : false }, async () => {
  const redis = await startRedis();
  const server = await spawnServe(['--no-admin', '--upstream-redis-stream', redis.url, '--upstream-stream', 'devices', '--upstream-events', 'online,offline,replaced']);
  const client = new LonglinkClient({ url: server.tcp, userId: 'bob', deviceId: 'watch' });
  const second = new LonglinkClient({ url: server.tcp, userId: 'bob', deviceId: 'watch' });
  const acked: string[] = [];
  client.on('acked', (a) => acked.push(a.id));
  const cli = (...args: string[]) => execFileSync('redis-cli', ['-u', redis.url, ...args], { encoding: 'utf8' });
  try {
    assert.equal(server.lines.find((l) => l.event === 'listening')!.app, 'none');
    await client.connect();
    // Redis stops taking writes for 1.5 s: XADD waits, and nothing is acknowledged meanwhile.
    cli('CLIENT', 'PAUSE', '1500', 'WRITE');
    const ids = Array.from({ length: 5 }, (_, i) => client.send(`reading ${i}`));
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(acked, [], 'nothing acknowledged before XADD');
    for (let i = 0; i < 100 && acked.length < ids.length; i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(acked, ids);
    // A backend worker in the shell: a consumer group, read everything new, acknowledge it.
    const out = execFileSync('bash', ['-c', `redis-cli -u ${redis.url} XGROUP CREATE devices workers 0 >/dev/null && redis-cli -u ${redis.url} --no-raw XREADGROUP GROUP workers sh-1 COUNT 100 STREAMS devices '>'`], { encoding: 'utf8' });
    for (const id of ids) assert.equal(out.split(`"${id}"`).length - 1, 1, `${id} read once by the group`);
    assert.match(out, /"user"\s+\d+\)\s+"bob"/);
    // Lifecycle events went to the same stream: online; replaced, naming the link that took over, when a
    // second link of the same device does (no offline, no second online); offline with its reason once it leaves.
    await second.connect();
    second.close();
    let entries = '';
    for (let i = 0; i < 50 && !entries.includes('offline'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      entries = cli('--no-raw', 'XRANGE', 'devices', '-', '+');
    }
    assert.match(entries, /"type"\s+\d+\)\s+"online"/);
    assert.match(entries, /"type"\s+\d+\)\s+"replaced"[\s\S]*"by_connection"\s+\d+\)\s+"[\w-]+"[\s\S]*"stale"\s+\d+\)\s+"false"/);
    assert.match(entries, /"type"\s+\d+\)\s+"offline"[\s\S]*"reason"\s+\d+\)\s+"client-close"/);
    assert.equal(cli('XLEN', 'devices').trim(), '8', 'five messages, one online, one replaced, one offline');
  } finally {
    client.close();
    second.close();
    await server.kill();
    await redis.stop();
  }
});
