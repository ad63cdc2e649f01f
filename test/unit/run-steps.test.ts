import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runSteps, unawaited } from '../../src/gateway/run-steps.js';

test('steps that all answer at once finish in the same turn, with a plain value', () => {
  const seen: unknown[] = [];
  const out = runSteps(
    (function* () {
      seen.push(yield 1);
      seen.push(yield 'two');
      seen.push(yield undefined);
      return 'done';
    })(),
  );
  assert.equal(out, 'done');
  assert.deepEqual(seen, [1, 'two', undefined]);
});

test('from the first promise on the steps go on asynchronously, each answer handed back in', async () => {
  const seen: unknown[] = [];
  let after = false;
  const out = runSteps(
    (function* () {
      seen.push(yield 1);
      seen.push(yield Promise.resolve(2));
      seen.push(yield 3); // a plain value after a promise: no extra turn needed, but still in order
      seen.push(yield { then: (ok: (v: number) => void) => ok(4) }); // any thenable
      return seen.length;
    })(),
  );
  after = true;
  assert.ok(out instanceof Promise);
  assert.deepEqual(seen, [1], 'nothing past the promise ran in this turn');
  assert.equal(await out, 4);
  assert.deepEqual(seen, [1, 2, 3, 4]);
  assert.ok(after);
});

test('a rejected call is thrown back in at its yield, where the steps may catch it', async () => {
  const out = runSteps(
    (function* () {
      try {
        yield Promise.reject(new Error('store down'));
        return 'not here';
      } catch (err) {
        return `caught ${(err as Error).message}`;
      }
    })(),
  );
  assert.equal(await out, 'caught store down');
});

test('a rejection the steps do not catch rejects the result; a throw of the steps is not thrown back in', async () => {
  await assert.rejects(
    runSteps(
      (function* () {
        yield Promise.reject(new Error('lost'));
      })(),
    ) as Promise<unknown>,
    /lost/,
  );
  let catches = 0;
  const out = runSteps(
    (function* () {
      yield Promise.resolve();
      try {
        yield 1;
      } catch {
        catches++;
      }
      throw new Error('the steps failed');
    })(),
  );
  await assert.rejects(out as Promise<unknown>, /the steps failed/);
  assert.equal(catches, 0);
});

test('a throw before any promise is thrown to the caller at once', () => {
  assert.throws(
    () =>
      runSteps(
        (function* () {
          yield 1;
          throw new Error('refused');
        })(),
      ),
    /refused/,
  );
});

test('unawaited: a failure thrown at once or rejected later goes to onError; a plain answer to nobody', async () => {
  const errors: string[] = [];
  const onError = (e: unknown) => errors.push((e as Error).message);
  unawaited(() => undefined, onError);
  unawaited(() => {
    throw new Error('at once');
  }, onError);
  unawaited(() => Promise.reject(new Error('later')), onError);
  unawaited(() => Promise.resolve(), onError);
  assert.deepEqual(errors, ['at once']);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(errors, ['at once', 'later']);
});
