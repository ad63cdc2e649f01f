import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ERROR_CODES } from '../../src/protocol/error-codes.js';
import { CloseCodes, errorCodeFor, reasonForCode, shouldReconnect } from '../../src/protocol/errors.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const ERRORS_MD = fs.readFileSync(path.join(ROOT, 'docs/ERRORS.md'), 'utf8');

function* sources(dir: string): Generator<string> {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* sources(p);
    else if (p.endsWith('.ts')) yield p;
  }
}

test('docs/ERRORS.md lists every code, with the right reconnect for each close code', () => {
  for (const [reason, code] of Object.entries(CloseCodes) as [keyof typeof CloseCodes, number][]) {
    assert.ok(ERRORS_MD.includes(`| \`${errorCodeFor(reason)}\` | ${code} \`${reason}\` | ${shouldReconnect(code) ? 'yes' : 'no'} |`), `${errorCodeFor(reason)} in ERRORS.md`);
  }
  for (const [code, v] of Object.entries(ERROR_CODES)) assert.ok(ERRORS_MD.includes(`| \`${code}\` | ${v.area} | ${v.meaning} |`), `${code} in ERRORS.md`);
  const listed = new Set(ERRORS_MD.match(/`LL_ERR_[A-Z_]+`/g)!.map((c) => c.slice(1, -1)));
  const known = new Set([...Object.keys(ERROR_CODES), ...Object.keys(CloseCodes).map((r) => errorCodeFor(r as keyof typeof CloseCodes))]);
  for (const c of listed) assert.ok(known.has(c), `ERRORS.md lists ${c}, which the code does not have`);
});

test('every code thrown in src/ is a known one', () => {
  const known = new Set([...Object.keys(ERROR_CODES), ...Object.keys(CloseCodes).map((r) => errorCodeFor(r as keyof typeof CloseCodes))]);
  const used = new Set<string>();
  for (const file of sources(path.join(ROOT, 'src'))) for (const m of fs.readFileSync(file, 'utf8').matchAll(/'(LL_ERR_[A-Z_]+)'/g)) used.add(m[1]);
  assert.ok(used.size > 20);
  for (const c of used) assert.ok(known.has(c), `${c} is thrown but not in ERROR_CODES (src/protocol/error-codes.ts) or CloseCodes`);
});

test('an unknown permanent close code is read as permanent, an unknown transient one as transient', () => {
  assert.equal(reasonForCode(4599), 'policy-violation');
  assert.equal(shouldReconnect(CloseCodes[reasonForCode(4599)]), false);
  assert.equal(reasonForCode(4399), 'transport-error');
  assert.equal(shouldReconnect(CloseCodes[reasonForCode(4399)]), true);
});
