import assert from 'node:assert/strict';
import { test } from 'node:test';
import { optionMisuse, serveCommand } from '../../src/cli/serve.js';

// Options that act only with another one, given without it: accepted, and then used nowhere.

/** The serve command with `args` parsed as flags (its action not run). */
function parsed(args: string[]) {
  const cmd = serveCommand();
  cmd.parseOptions(args);
  return cmd;
}

test('--keepalive-interval-ms or --keepalive-count without --keepalive-idle-ms is refused, naming the missing flag', () => {
  for (const args of [['--keepalive-interval-ms', '10000'], ['--keepalive-count', '3'], ['--keepalive-idle-ms', '0', '--keepalive-interval-ms', '10000', '--keepalive-count', '3']]) {
    const { errors } = optionMisuse(parsed(args));
    assert.equal(errors.length, 1, args.join(' '));
    assert.match(errors[0]!, /--keepalive-idle-ms/, args.join(' '));
    assert.match(errors[0]!, new RegExp(args.at(-2)!), args.join(' '));
  }
  assert.deepEqual(optionMisuse(parsed(['--keepalive-idle-ms', '60000', '--keepalive-interval-ms', '10000', '--keepalive-count', '3'])).errors, []);
  assert.deepEqual(optionMisuse(parsed(['--user-timeout-ms', '30000'])).errors, [], 'TCP_USER_TIMEOUT stands alone');
  assert.deepEqual(optionMisuse(parsed([])).errors, []);
});

test('--jwt-issuer or --jwt-audience without a JWT key is refused: no token was checked at all, and no no-auth warning on loopback', () => {
  for (const args of [['--jwt-issuer', 'https://id.example'], ['--jwt-audience', 'longlink']]) {
    const { errors } = optionMisuse(parsed(args));
    assert.equal(errors.length, 1, args.join(' '));
    assert.match(errors[0]!, new RegExp(`${args[0]} needs a key`));
    assert.match(errors[0]!, /--jwt-secret/);
  }
  assert.deepEqual(optionMisuse(parsed(['--jwt-issuer', 'https://id.example', '--jwt-audience', 'longlink', '--jwt-secret', 'x'.repeat(32)])).errors, []);
  assert.deepEqual(optionMisuse(parsed(['--jwt-audience', 'longlink', '--jwks-url', 'https://id.example/jwks'])).errors, []);
});
