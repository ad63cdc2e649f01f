import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertPayloadFits, dataFrameBound, GENERATED_ID_SHAPE, payloadRoom } from '../../src/protocol/data-frame-size.js';
import { encodeFrame } from '../../src/protocol/frame-codec.js';
import { FrameType } from '../../src/protocol/frames.js';

const WIDEST = 2 ** 53 - 1;

test('the bound holds for any seq and ack a DATA frame is given, and is reached at the widest', () => {
  for (const payload of [0, 1, 127, 128, 16_383, 16_384, 65_000]) {
    for (const id of [undefined, '', 'm', GENERATED_ID_SHAPE, 'é'.repeat(100)]) {
      const idBytes = id === undefined ? undefined : Buffer.byteLength(id);
      const bound = dataFrameBound(payload, idBytes);
      for (const seq of [undefined, 1, 300, WIDEST]) {
        for (const ack of [undefined, 0, WIDEST]) {
          const f = encodeFrame({ type: FrameType.DATA, payload: new Uint8Array(payload), ...(id !== undefined ? { id } : {}), ...(seq !== undefined ? { seq } : {}), ...(ack !== undefined ? { ack } : {}) });
          assert.ok(f.length <= bound, `${payload} bytes, id ${idBytes}, seq ${seq}, ack ${ack}: ${f.length} > ${bound}`);
          if (seq === WIDEST && ack === WIDEST) assert.equal(f.length, bound, 'exact at the widest');
        }
      }
    }
  }
});

test('payloadRoom is the largest payload that fits; one byte more is refused with LL_ERR_PAYLOAD_TOO_LARGE, saying how much fits', () => {
  for (const max of [64, 1024, 64 * 1024, 1 << 20]) {
    for (const id of [undefined, '', GENERATED_ID_SHAPE]) {
      const idBytes = id === undefined ? undefined : Buffer.byteLength(id);
      const room = payloadRoom(max, idBytes);
      assert.ok(dataFrameBound(room, idBytes) <= max && dataFrameBound(room + 1, idBytes) > max, `${max}, id ${idBytes}: ${room}`);
      assertPayloadFits(new Uint8Array(room), id, max);
      assert.throws(() => assertPayloadFits(new Uint8Array(room + 1), id, max), (e: Error & { code?: string }) => e.code === 'LL_ERR_PAYLOAD_TOO_LARGE' && e.message.includes(`at most ${room} bytes`));
    }
  }
  assert.equal(payloadRoom(64 * 1024, 36), 65_536 - 61, 'the default limit leaves 61 bytes of a frame to the fields around a payload with a generated id');
});
