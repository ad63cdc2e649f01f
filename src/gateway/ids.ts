import { randomFillSync } from 'node:crypto';

/**
 * Random ids for connections and sessions: 96 random bits as 16 base64url
 * characters. Drawn from a pooled buffer and encoded natively, so each id is
 * one flat string; `randomUUID()` builds a chain of about 14 string pieces
 * (some 450 bytes of heap per connection kept for the connection's life).
 */
const ID_BYTES = 12;
const pool = Buffer.allocUnsafe(ID_BYTES * 256);
let offset = pool.length;

export function newId(): string {
  if (offset + ID_BYTES > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const id = pool.toString('base64url', offset, offset + ID_BYTES);
  offset += ID_BYTES;
  return id;
}
