import { randomFillSync } from 'node:crypto';

/**
 * Random ids for connections and sessions: 96 random bits as 16 base64url
 * characters. Drawn from a pooled buffer and encoded natively, so each id is
 * one flat string; `randomUUID()` builds a chain of about 14 string pieces
 * (some 450 bytes of heap per connection kept for the connection's life).
 */
const ID_BYTES = 12;
/** Resume tokens are secrets a client presents: 144 bits. */
const TOKEN_BYTES = 18;
const pool = Buffer.allocUnsafe(4096);
let offset = pool.length;

function draw(n: number): string {
  if (offset + n > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const s = pool.toString('base64url', offset, offset + n);
  offset += n;
  return s;
}

export function newId(): string {
  return draw(ID_BYTES);
}

/** A resume token: 24 base64url characters, each byte used once. */
export function newToken(): string {
  return draw(TOKEN_BYTES);
}
