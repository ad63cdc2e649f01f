import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { request } from 'node:http';
import { test } from 'node:test';
import { LonglinkClient } from '../../src/client/client.js';
import { spawnServe } from '../helpers/procs.js';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// The server API from a backend that is not Node: a Python program (standard library only)
// pushes to a device connected to `longlink serve --app none`, reads presence, sends a batch,
// and is refused with the field named when it sends nonsense, or without its key.

const BACKEND = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures/backend.py');
const python = spawnSync('python3', ['--version']).status === 0 ? 'python3' : null;

test('a Python backend pushes through the server API, reads presence, batches, and is refused with the field named', { skip: python ? false : 'skipped: python3 is not installed (apt-get install python3)' }, async () => {
  const server = await spawnServe(['--app', 'none', '--api-key', 'k-123', '--log-level', 'info']);
  const listening = server.lines.find((l) => l.event === 'listening')!;
  assert.equal(listening.app, 'none');
  const apiBase = String(listening.serverApi);
  const client = new LonglinkClient({ url: server.tcp, userId: 'alice', deviceId: 'phone' });
  const got: string[] = [];
  client.on('message', (m) => got.push(Buffer.from(m.payload).toString('base64')));
  try {
    await client.connect();
    // Not execFileSync: this process holds the device, which must keep answering while Python calls.
    const out = await new Promise<string>((resolve, reject) => {
      const p = spawn(python!, [BACKEND, apiBase, 'k-123'], { stdio: ['ignore', 'pipe', 'inherit'] });
      let text = '';
      p.stdout.on('data', (d) => (text += d));
      const t = setTimeout(() => (p.kill(), reject(new Error(`backend.py timed out: ${text}`))), 60_000);
      p.once('exit', (code) => (clearTimeout(t), code === 0 ? resolve(text) : reject(new Error(`backend.py exited ${code}: ${text}`))));
    });
    const calls = out.trim().split('\n').map((l) => JSON.parse(l) as { call: string; status: number; body: Record<string, unknown> });
    const [presence, text, jsonPush, devicePush, nobody, many, batch, bad, noKey, noOp] = calls;
    assert.equal(presence.status, 200);
    assert.deepEqual((presence.body.users as { user: string; online: boolean }[]).map((u) => [u.user, u.online]), [['alice', true], ['nobody', false]]);
    assert.equal(text.status, 200);
    assert.deepEqual({ ...text.body, devices: undefined }, { user: 'alice', id: 'py-1', delivered: 1, status: 'ok', devices: undefined });
    assert.deepEqual(text.body.devices, [{ deviceId: 'phone', status: 'delivered' }]);
    assert.equal(jsonPush.body.status, 'ok');
    assert.equal(devicePush.body.delivered, 1);
    assert.equal(nobody.body.status, 'unknown-user');
    assert.deepEqual((many.body.results as { user: string; status: string }[]).map((r) => [r.user, r.status]), [['alice', 'ok'], ['nobody', 'unknown-user']]);
    const results = batch.body.results as Record<string, unknown>[];
    assert.equal(results[0].status, 'ok');
    assert.match(String((results[1].error as { message: string }).message), /give exactly one of text, json, base64/);
    assert.equal((results[2].users as unknown[]).length, 1);
    assert.equal(bad.status, 400);
    const msg = String((bad.body.error as { message: string }).message);
    assert.match(msg, /unknown field bogus/);
    assert.match(msg, /ttlMs: /);
    assert.equal(noKey.status, 401);
    assert.equal(noOp.status, 404);
    // Every error answer is {"error": {"code", "message"}}, its code one SERVER-API.md names.
    const page = fs.readFileSync(path.join(path.dirname(BACKEND), '../../docs/SERVER-API.md'), 'utf8');
    for (const [call, code] of [[bad, 'LL_ERR_BAD_REQUEST'], [noKey, 'LL_ERR_UNAUTHORIZED'], [noOp, 'LL_ERR_NOT_FOUND']] as const) {
      assert.deepEqual(Object.keys(call.body), ['error']);
      assert.deepEqual(Object.keys(call.body.error as object), ['code', 'message']);
      assert.equal((call.body.error as { code: string }).code, code);
      assert.ok(page.includes(code), `SERVER-API.md names ${code}`);
    }
    // Every push reached the device, once each, in order.
    await new Promise((r) => setTimeout(r, 200));
    const texts = got.map((b) => Buffer.from(b, 'base64'));
    assert.deepEqual(texts.map((b) => b.toString()), ['hello from python', '{"kind":"order","n":7}', Buffer.from([0, 1, 2]).toString(), 'to many', 'in a batch']);
    // The OpenAPI document is served.
    const doc = (await (await fetch(`${apiBase}openapi.json`)).json()) as { openapi: string; paths: Record<string, unknown> };
    assert.equal(doc.openapi, '3.1.0');
    assert.ok(doc.paths['/v1/push'] && doc.paths['/v1/batch']);
  } finally {
    client.close();
    await server.kill();
  }
});

test('docs/openapi.json is the document the server serves (regenerate it from openApiDocument when the API changes)', async () => {
  const { openApiDocument } = await import('../../src/admin/server-api.js');
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
  const fs = await import('node:fs');
  const version = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version as string;
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(root, 'docs/openapi.json'), 'utf8')), JSON.parse(JSON.stringify(openApiDocument(version))));
  // Asked for with no credential: built once (about 1 ms of CPU), not per request.
  assert.equal(openApiDocument(version), openApiDocument(version));
});

test('every status the server API answers is in its OpenAPI document (403 without a key off loopback, 415, 429, 503 from a store that fails)', async () => {
  const { AdminServer } = await import('../../src/admin/admin-server.js');
  const { Gateway } = await import('../../src/gateway/gateway.js');
  const { MemoryStore } = await import('../../src/gateway/stores/memory-store.js');
  const store = new MemoryStore();
  const gw = new Gateway({ tcp: false, ws: false, store });
  await gw.listen();
  const admin = new AdminServer(gw, { port: 0 });
  const port = (await admin.listen()).port;
  try {
    const doc = (await (await fetch(`http://127.0.0.1:${port}/v1/openapi.json`)).json()) as { paths: Record<string, { post: { responses: Record<string, unknown> } }> };
    // node:http, not fetch: fetch does not let a caller set Host.
    const post = (op: string, body: string, headers: Record<string, string> = {}) =>
      new Promise<number>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path: `/v1/${op}`, method: 'POST', headers: { 'content-type': 'application/json', ...headers } }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        });
        req.on('error', reject);
        req.end(body);
      });
    const seen = new Map<string, number[]>();
    const answer = async (op: string, r: Promise<number>) => seen.set(op, [...(seen.get(op) ?? []), await r]);
    for (const op of ['push', 'broadcast', 'presence', 'disconnect', 'kick', 'batch']) {
      await answer(op, post(op, '{"bogus":1}'));
      await answer(op, post(op, '{}', { host: 'gateway.example' }));
      await answer(op, post(op, '{}', { 'content-type': 'text/plain' }));
    }
    Object.assign(store, { knownDevices: () => Promise.reject(new Error('connect ECONNREFUSED')), devices: () => Promise.reject(new Error('connect ECONNREFUSED')) });
    await answer('push', post('push', '{"user":"u","text":"x"}'));
    await answer('presence', post('presence', '{"users":["u"]}'));
    for (const [op, statuses] of seen) {
      for (const s of [...statuses, 429]) assert.ok(doc.paths[`/v1/${op}`].post.responses[String(s)], `${op}: ${s} is in the document`);
    }
    assert.deepEqual(seen.get('push'), [400, 403, 415, 503]);
  } finally {
    await admin.close();
    await gw.close();
  }
});

test('once its gateway is drained (POST /api/drain, the admin port still open), the server API answers 503 LL_ERR_CLOSED with Retry-After, not unknown-user for everyone', async () => {
  const { AdminServer } = await import('../../src/admin/admin-server.js');
  const { Gateway } = await import('../../src/gateway/gateway.js');
  const gw = new Gateway({ tcp: { port: 0 }, ws: false });
  const a = await gw.listen();
  const admin = new AdminServer(gw, { port: 0 });
  const port = (await admin.listen()).port;
  const post = (path: string, body: unknown) => fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const device = new LonglinkClient({ url: `tcp://127.0.0.1:${a.tcp!.port}`, userId: 'alice', deviceId: 'phone', reconnect: { enabled: false } });
  try {
    await device.connect();
    assert.equal((await post('/v1/push', { user: 'alice', text: 'before', waitMs: 0 })).status, 200);
    assert.equal((await post('/api/drain', { windowMs: 0, ackTimeoutMs: 200 })).status, 202);
    for (let i = 0; i < 100 && gw.connectionCount > 0; i++) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 300));
    for (const [op, body] of [['push', { user: 'alice', text: 'after' }], ['presence', { users: ['alice'] }], ['batch', { commands: [{ op: 'kick', args: { user: 'alice' } }] }]] as const) {
      const r = await post(`/v1/${op}`, body);
      const text = await r.text();
      assert.equal(r.status, 503, `${op}: ${text}`);
      assert.equal(JSON.parse(text).error.code, 'LL_ERR_CLOSED');
      assert.equal(r.headers.get('retry-after'), '1');
    }
  } finally {
    device.close();
    await admin.close();
    await gw.close();
  }
});
