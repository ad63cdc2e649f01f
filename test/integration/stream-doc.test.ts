import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { LonglinkClient } from '../../src/client/client.js';
import { spawnServe } from '../helpers/procs.js';
import { redisUnavailable, startRedis } from '../helpers/redis.js';

// docs/SERVER-API.md's Redis stream worker, run as the doc writes it: its redis-cli lines (read from
// the doc, pointed at a test Redis) create the group, read what devices sent and acknowledge it, and
// each entry has the fields the doc lists, no more, no fewer.

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const DOC = fs.readFileSync(path.join(ROOT, 'docs/SERVER-API.md'), 'utf8');
const noRedis = redisUnavailable();

test("the doc's redis-cli worker reads and acknowledges devices' messages, with the fields the doc lists", { skip: noRedis ? `skipped: ${noRedis}` : false }, async () => {
  const block = /### Redis Streams\s*```sh\n([\s\S]*?)```/.exec(DOC)![1].trim().split('\n');
  assert.match(block[0], /^longlink serve --upstream-redis-stream \S+ --upstream-stream devices$/);
  const listed = /Each message is one `XADD` \(fields ([^)]*)\)/.exec(DOC)![1];
  const fields = [...listed.matchAll(/`(\w+)`/g)].map((m) => m[1]);
  const redis = await startRedis();
  // The doc's redis-cli lines, as a shell runs them, against this Redis.
  const sh = (line: string) => execFileSync('bash', ['-c', line.replace(/^redis-cli /, `redis-cli -u ${redis.url} `)], { encoding: 'utf8' });
  sh(block[1]);
  const server = await spawnServe(['--no-admin', ...block[0].split(' ').slice(2).map((a) => (a.startsWith('redis://') ? redis.url : a))]);
  const client = new LonglinkClient({ url: server.tcp, userId: 'zoë', deviceId: 'watch' });
  const acked: string[] = [];
  client.on('acked', (a) => acked.push(a.id));
  try {
    await client.connect();
    const ids = [client.send('héllo 🙂', { id: 'm-1' }), client.send('two', { id: 'm-2' })];
    for (let i = 0; i < 50 && acked.length < ids.length; i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(acked, ids);
    // redis-cli's raw output (not a terminal): the stream's name, then each entry's id and its field, value pairs.
    const out = sh(block[2]).split('\n').filter((l) => l !== '');
    assert.equal(out[0], 'devices');
    const entries: { id: string; f: Record<string, string>; names: string[] }[] = [];
    for (const line of out.slice(1)) {
      const last = entries.at(-1);
      if (/^\d+-\d+$/.test(line) && (!last || last.names.length === fields.length * 2)) entries.push({ id: line, f: {}, names: [] });
      else last!.names.push(line);
    }
    for (const e of entries) for (let i = 0; i < e.names.length; i += 2) e.f[e.names[i]] = e.names[i + 1];
    assert.equal(entries.length, 2, out.join('\n'));
    for (const e of entries) assert.deepEqual(e.names.filter((_, i) => i % 2 === 0), fields, 'the fields the doc lists, in its order');
    assert.deepEqual(entries.map((e) => e.f.id), ids);
    assert.equal(entries[0].f.type, 'message');
    assert.equal(entries[0].f.user, 'zoë');
    assert.equal(entries[0].f.device, 'watch');
    assert.equal(Buffer.from(entries[0].f.payload, 'base64').toString(), 'héllo 🙂');
    assert.equal(entries[0].f.seq, '1');
    assert.ok(Math.abs(Number(entries[0].f.received_at) - Date.now()) < 10_000, `received_at is wall ms (${entries[0].f.received_at})`);
    for (const e of entries) assert.equal(sh(block[3].replace('<entry-id>', e.id)).trim(), '1', `XACK ${e.id}`);
    assert.equal(sh(`redis-cli XPENDING devices workers`).split('\n')[0], '0', 'nothing pending once acknowledged');
  } finally {
    client.close();
    await server.kill();
    await redis.stop();
  }
});
