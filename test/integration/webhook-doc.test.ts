import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { LonglinkClient } from '../../src/client/client.js';
import { spawnNode, spawnServe } from '../helpers/procs.js';

// docs/SERVER-API.md's webhook, as a backend written from the doc alone sees it: a Python backend
// whose verify() is the doc's own ```python block (read from the doc at start, so the example cannot
// rot) gets real deliveries from `longlink serve`: the body and headers the doc lists, a non-ASCII
// UTF-8 body verified byte for byte, a retry signed anew, and its reply back on the device.

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const BACKEND = path.join(ROOT, 'test/fixtures/doc_webhook_backend.py');
const DOC = path.join(ROOT, 'docs/SERVER-API.md');
const python = spawnSync('python3', ['--version']).status === 0 ? 'python3' : null;

test("the doc's Python verifier checks real deliveries: non-ASCII UTF-8, a retry re-signed, the documented body and headers, the reply", { skip: python ? false : 'skipped: python3 is not installed' }, async () => {
  const hook = spawnNode(BACKEND, [DOC, 'doc-secret'], python!);
  const port = Number((await hook.waitFor((l) => l.event === 'listening', 10_000, 'the backend listening')).port);
  const server = await spawnServe(['--no-admin', '--upstream-webhook', `http://127.0.0.1:${port}/hook`, '--upstream-secret', 'doc-secret']);
  const client = new LonglinkClient({ url: server.tcp, userId: 'zoë', deviceId: 'téléphone' });
  const replies: string[] = [];
  client.on('message', (m) => replies.push(Buffer.from(m.payload).toString()));
  try {
    await client.connect();
    const text = 'héllo — 你好 🙂 "quoted" \\ </script>';
    const sentAt = Date.now();
    const ascii = client.send(text, { id: 'order-7' });
    const unicode = client.send('ünïcode id', { id: 'mßg-ü' });
    for (let i = 0; i < 100 && replies.length < 2; i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(replies, [`reçu: ${text}`, 'reçu: ünïcode id'], "the backend's non-ASCII replies reached the device");
    const got = hook.lines.filter((l) => l.event === 'request') as { contentType: string; messageId: string | null; signature: string; raw: string; verified: boolean; body: Record<string, unknown>; answered: number }[];
    assert.deepEqual(got.map((l) => [l.body.id, l.answered]), [[ascii, 503], [ascii, 200], [unicode, 503], [unicode, 200]], 'each message refused once, then taken');
    for (const l of got) {
      assert.equal(l.verified, true, `the doc's verify() accepts ${l.signature} for ${Buffer.from(l.raw, 'base64').toString()}`);
      assert.match(l.contentType, /^application\/json\b/);
      assert.equal(JSON.stringify(l.body), Buffer.from(l.raw, 'base64').toString('utf8'), 'the body is JSON as sent, UTF-8');
    }
    const t = (sig: string) => Number(/(?:^|,)t=(\d+)/.exec(sig)![1]);
    assert.ok(t(got[1].signature) >= t(got[0].signature) + 1, `the retry 2 s later is signed with its own time: ${got[0].signature} then ${got[1].signature}`);
    assert.notEqual(got[1].signature, got[0].signature);
    assert.equal(got[0].messageId, ascii, 'X-Longlink-Id: the message id');
    assert.equal(got[1].messageId, ascii, 'the same X-Longlink-Id on the retry: the backend dedups by it');
    assert.equal(got[2].messageId, null, 'no X-Longlink-Id for an id that is not printable ASCII (it is in the body)');
    const b = got[0].body;
    // The fields the doc's example body shows, in its order.
    const documented = /Each message a device sends is POSTed to the backend as JSON:\s*```json\n([\s\S]*?)```/.exec(fs.readFileSync(DOC, 'utf8'))![1];
    const keys = [...documented.matchAll(/"(\w+)":/g)].map((m) => m[1]);
    assert.deepEqual(Object.keys(b), keys, 'the body has the fields the doc shows');
    assert.equal(b.type, 'message');
    assert.equal(b.user, 'zoë');
    assert.equal(b.device, 'téléphone');
    assert.equal(b.text, text);
    assert.equal(Buffer.from(b.payload as string, 'base64').toString(), text);
    assert.equal(b.seq, 1);
    assert.ok(typeof b.connectionId === 'string' && typeof b.sessionId === 'string');
    assert.ok(typeof b.receivedAt === 'number' && Math.abs((b.receivedAt as number) - sentAt) < 5_000, `receivedAt is wall ms (${b.receivedAt})`);
    assert.deepEqual(got[1].body, b, 'the retry carries the same body');
  } finally {
    client.close();
    await server.kill();
    await hook.kill();
  }
});
