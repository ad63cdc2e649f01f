import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

interface Reflection {
  name: string;
  children?: Reflection[];
  comment?: unknown;
}

// `npm run docs` (TypeDoc) documents every option a user can pass: each member of the option
// interfaces of the gateway, its limits and delivery, the Node client and the browser client.
test('the API reference covers every option, each with its doc comment', () => {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'longlink-api-')), 'api.json');
  try {
    execFileSync(path.join(ROOT, 'node_modules/.bin/typedoc'), ['--json', out, '--logLevel', 'Error'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    const api = JSON.parse(fs.readFileSync(out, 'utf8')) as Reflection;
    const all = new Map<string, Reflection>();
    const walk = (r: Reflection) => {
      all.set(r.name, r);
      r.children?.forEach(walk);
    };
    walk(api);
    for (const name of ['GatewayOptions', 'LimitOptions', 'DeliveryOptions', 'ClientOptions', 'MemoryStoreOptions', 'RedisStoreOptions', 'LonglinkBrowserClient', 'LonglinkErrorCode']) {
      assert.ok(all.has(name), `${name} is in the reference`);
    }
    for (const name of ['LimitOptions', 'MemoryStoreOptions']) {
      const members = all.get(name)!.children ?? [];
      assert.ok(members.length >= 5, `${name} has its members`);
      const bare = members.filter((m) => !m.comment).map((m) => m.name);
      assert.ok(bare.length <= members.length / 2, `${name}: most members documented (undocumented: ${bare.join(', ')})`);
    }
  } finally {
    fs.rmSync(path.dirname(out), { recursive: true, force: true });
  }
});
