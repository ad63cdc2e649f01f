import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { test } from 'node:test';
import { sameSecret } from '../../src/admin/admin-server.js';

// The admin token and the server API's key are compared by sameSecret. It returned at once when the
// lengths differed, so how long a refusal took told a caller the key's length. No timing is measured
// here: what is checked is that every comparison goes through timingSafeEqual, on inputs of one length.

const KEY = 'k3y-0f-the-server-api-0123456789';

test('sameSecret takes the key and refuses any other, of any length', () => {
  assert.equal(sameSecret(KEY, KEY), true);
  for (const wrong of ['', 'k', KEY.slice(0, -1), `${KEY}x`, KEY.replace('k', 'K'), KEY.repeat(100), 'é'.repeat(KEY.length / 2)]) {
    assert.equal(sameSecret(wrong, KEY), false, JSON.stringify(wrong.slice(0, 40)));
  }
  assert.equal(sameSecret('', ''), true, 'the same (empty) string');
});

test('sameSecret compares inputs of one fixed length whatever the given length: no early return on a length that differs', () => {
  const real = crypto.timingSafeEqual;
  const lengths: number[] = [];
  crypto.timingSafeEqual = ((a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
    lengths.push(a.byteLength, b.byteLength);
    return real(a, b);
  }) as typeof real;
  syncBuiltinESMExports(); // the module's named import sees the spy
  try {
    for (const given of ['', 'k', KEY, `${KEY}x`, KEY.repeat(100)]) sameSecret(given, KEY);
  } finally {
    crypto.timingSafeEqual = real;
    syncBuiltinESMExports();
  }
  assert.equal(lengths.length, 10, `every comparison went through timingSafeEqual (${lengths.length / 2} of 5)`);
  assert.equal(new Set(lengths).size, 1, `one length compared: ${[...new Set(lengths)]}`);
});
