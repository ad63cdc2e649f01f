import assert from 'node:assert/strict';
import { test } from 'node:test';
import { tuneCommand, tuneMisuse } from '../../src/cli/tune.js';

/** The tune command with `args` parsed as flags (its action not run). */
function parsed(args: string[]) {
  const cmd = tuneCommand();
  cmd.parseOptions(['--detect-within', '30s', ...args]);
  return cmd;
}

test('tune: --loss or --jitter with --from is refused: the policy was picked for the measured network, not the one asked for', () => {
  for (const args of [['--from', 'net.json', '--loss', '0.05'], ['--from', 'http://127.0.0.1:7422', '--jitter', '200ms']]) {
    const { errors } = tuneMisuse(parsed(args));
    assert.equal(errors.length, 1, args.join(' '));
    assert.match(errors[0]!, new RegExp(`^${args[2]} models a network without --from`));
  }
  assert.deepEqual(tuneMisuse(parsed(['--from', 'net.json', '--delay', '40ms'])).errors, [], '--delay overrides the measured delay');
  assert.deepEqual(tuneMisuse(parsed(['--loss', '0.05', '--jitter', '200ms'])), { errors: [], warnings: [] });
});

test('tune: --transport or --token without --from (or --token with a file) is said to be ignored', () => {
  assert.deepEqual(tuneMisuse(parsed(['--transport', 'ws', '--token', 't'])).warnings, ['--transport needs --from: ignored', '--token needs --from: ignored']);
  assert.deepEqual(tuneMisuse(parsed(['--from', 'net.json', '--token', 't'])).warnings, ['--token needs --from with an admin URL: ignored']);
  assert.deepEqual(tuneMisuse(parsed(['--from', 'http://127.0.0.1:7422', '--token', 't', '--transport', 'ws'])), { errors: [], warnings: [] });
});
