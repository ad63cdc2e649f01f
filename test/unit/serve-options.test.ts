import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_WORKERS, optionMisuse, serveCommand } from '../../src/cli/serve.js';
import type { CommanderError } from 'commander';
import { MAX_TIMER_MS } from '../../src/core/heartbeat-policy.js';

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

test('options that act only with another one, given without it, are warned about by name; defaults and used options are not', () => {
  const cases: [string[], RegExp][] = [
    [['--redis-prefix', 'x:'], /^--redis-prefix needs --redis/],
    [['--lease-ms', '5000'], /^--lease-ms needs --redis/],
    [['--redis-wait-replicas', '1'], /^--redis-wait-replicas needs --redis or --upstream-redis-stream/],
    [['--redis', 'redis://127.0.0.1:1', '--max-queued-bytes-total', '1000'], /^--max-queued-bytes-total applies to the in-memory store only/],
    [['--tls-reload-poll-ms', '1000'], /^--tls-reload-poll-ms needs --tls-cert/],
    [['--connect-hook-secret', 's'], /^--connect-hook-secret needs --connect-hook/],
    [['--upstream-secret', 's'], /^--upstream-secret needs --upstream-webhook/],
    [['--upstream-webhook', 'http://127.0.0.1:1/u', '--upstream-stream-maxlen', '10'], /^--upstream-stream-maxlen needs --upstream-redis-stream/],
    [['--upstream-events', 'online'], /^--upstream-events needs --upstream-webhook or --upstream-redis-stream/],
    [['--app', 'none', '--relay-total', '5'], /^--relay-total needs the built-in relay/],
    [['--no-admin', '--api-key', 'k'], /^--api-key has no effect with --no-admin/],
    [['--worker-hung-ms', '5000'], /^--worker-hung-ms needs --workers above 1/],
    [['--log-file-count', '3'], /^--log-file-count needs --log-file/],
    [['--no-ws', '--ws-port', '9000'], /^--ws-port has no effect with --no-ws/],
    [['--handshakes-per-second', '0', '--handshake-burst', '50'], /^--handshake-burst has no effect with --handshakes-per-second 0/],
    [['--handshakes-per-second', '0', '--handshake-source-share', '0.5'], /^--handshake-source-share has no effect with --handshakes-per-second 0/],
    [['--max-data-per-second', '0', '--data-burst', '100'], /^--data-burst has no effect with --max-data-per-second 0/],
    [['--min-ping-gap-ms', '0', '--ping-burst', '5'], /^--ping-burst has no effect with --min-ping-gap-ms 0/],
  ];
  for (const [args, warning] of cases) {
    const { warnings, errors } = optionMisuse(parsed(args));
    assert.deepEqual(errors, [], args.join(' '));
    assert.equal(warnings.length, 1, `${args.join(' ')}: ${JSON.stringify(warnings)}`);
    assert.match(warnings[0]!, warning);
  }
  for (const args of [[], ['--redis', 'redis://127.0.0.1:1', '--redis-prefix', 'x:', '--lease-ms', '5000'], ['--upstream-redis-stream', 'redis://127.0.0.1:1', '--redis-wait-replicas', '1', '--upstream-stream', 's', '--upstream-events', 'online'], ['--workers', '2', '--worker-hung-ms', '5000'], ['--no-ws', '--no-admin'], ['--handshake-burst', '50', '--data-burst', '100', '--ping-burst', '5'], ['--min-ping-gap-ms', '100', '--ping-burst', '5']]) {
    assert.deepEqual(optionMisuse(parsed(args)).warnings, [], args.join(' '));
  }
});

test('an option from the environment or the file counts as given, a default does not', () => {
  const cmd = parsed([]);
  cmd.setOptionValueWithSource('redisPrefix', 'x:', 'env');
  cmd.setOptionValueWithSource('logFileCount', 3, 'config');
  assert.deepEqual(optionMisuse(cmd).warnings.map((w) => w.split(' ')[0]), ['--redis-prefix', '--log-file-count']);
});

test('a LONGLINK_* variable no option reads is warned about, naming the nearest known one; known ones and other prefixes are not', async () => {
  const { unknownEnv } = await import('../../src/cli/config.js');
  const cmd = parsed([]);
  const env = { LONGLINK_REDIS_URL: 'redis://r:6379', LONGLINK_TCP_PORTT: '7000', LONGLINK_TCP_PORT: '7000', LONGLINK_ZZZZZZZZZZZZZZZZ: '1', LONGLINK_TOKEN: 't', PATH: '/bin' };
  assert.deepEqual(unknownEnv(cmd, env, ['LONGLINK_TOKEN']), [
    'LONGLINK_REDIS_URL is not a longlink serve variable (did you mean LONGLINK_REDIS?): ignored',
    'LONGLINK_TCP_PORTT is not a longlink serve variable (did you mean LONGLINK_TCP_PORT?): ignored',
    'LONGLINK_ZZZZZZZZZZZZZZZZ is not a longlink serve variable: ignored',
  ]);
  assert.deepEqual(unknownEnv(cmd, { LONGLINK_NO_WS: '1', LONGLINK_CONFIG: 'f.yaml', LONGLINK_JWT_SECRET: 's' }), []);
});

test('an unknown key in the config file is refused naming the nearest known key', async () => {
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const { applyConfigFile } = await import('../../src/cli/config.js');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'll-cfg-'));
  try {
    const file = path.join(dir, 'c.yaml');
    fs.writeFileSync(file, 'tcp-portt: 7000\nredis-url: redis://r:6379\n');
    assert.throws(() => applyConfigFile(parsed([]), file), (err: Error) => {
      assert.match(err.message, /unknown keys tcp-portt \(did you mean tcp-port\?\), redis-url \(did you mean redis\?\)/);
      return true;
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('--tls-reload-poll-ms beyond a timer\'s range is a usage error: fs.watchFile threw on it after the listeners were up, and serve died with a stack trace', () => {
  for (const bad of ['5000000000', String(MAX_TIMER_MS + 1), '0']) {
    const cmd = serveCommand().exitOverride().configureOutput({ writeErr: () => {} });
    assert.throws(() => cmd.parseOptions(['--tls-reload-poll-ms', bad]), (e: CommanderError) => e.code === 'commander.invalidArgument', bad);
  }
  assert.equal(parsed(['--tls-reload-poll-ms', String(MAX_TIMER_MS)]).opts().tlsReloadPollMs, MAX_TIMER_MS);
});

test("--workers whose admin ports (--admin-port + 1 + i) run past 65535 is refused: those workers failed to listen and were replaced for ever while the others served", () => {
  const { errors } = optionMisuse(parsed(['--redis', 'redis://127.0.0.1:1', '--workers', '3', '--admin-port', '65533']));
  assert.equal(errors.length, 1, String(errors));
  assert.match(errors[0]!, /--admin-port 65533 with --workers 3/);
  assert.deepEqual(optionMisuse(parsed(['--redis', 'redis://127.0.0.1:1', '--workers', '2', '--admin-port', '65533'])).errors, [], 'the last worker at 65535');
  assert.deepEqual(optionMisuse(parsed(['--redis', 'redis://127.0.0.1:1', '--workers', '3', '--admin-port', '0'])).errors, [], 'any free port');
  assert.deepEqual(optionMisuse(parsed(['--redis', 'redis://127.0.0.1:1', '--workers', '3', '--admin-port', '65533', '--no-admin'])).errors, [], 'no admin port');
  assert.deepEqual(optionMisuse(parsed(['--admin-port', '65535'])).errors, [], 'one process uses --admin-port itself');
});

test('--drain-window-ms and --drain-ack-timeout-ms are at most an hour (as POST /api/drain): refused at start, not by the drain at SIGTERM', () => {
  for (const flag of ['--drain-window-ms', '--drain-ack-timeout-ms']) {
    for (const bad of ['3600001', String(2 ** 32)]) {
      const cmd = serveCommand().exitOverride().configureOutput({ writeErr: () => {} });
      assert.throws(() => cmd.parseOptions([flag, bad]), (e: CommanderError) => e.code === 'commander.invalidArgument', `${flag} ${bad}`);
    }
    assert.equal(parsed([flag, '3600000']).opts()[flag === '--drain-window-ms' ? 'drainWindowMs' : 'drainAckTimeoutMs'], 3600_000);
    assert.equal(parsed([flag, '0']).opts()[flag === '--drain-window-ms' ? 'drainWindowMs' : 'drainAckTimeoutMs'], 0);
  }
});

test('--workers above MAX_WORKERS is a usage error: 100000 (a typo, an extra zero in LONGLINK_WORKERS) was taken, and the primary forked that many processes until the host ran out of memory', () => {
  for (const bad of ['100000', String(MAX_WORKERS + 1)]) {
    const cmd = serveCommand().exitOverride().configureOutput({ writeErr: () => {} });
    assert.throws(() => cmd.parseOptions(['--workers', bad]), (e: CommanderError) => e.code === 'commander.invalidArgument' && e.message.includes(`at most ${MAX_WORKERS}`), bad);
  }
  assert.equal(parsed(['--workers', String(MAX_WORKERS)]).opts().workers, MAX_WORKERS);
  assert.equal(parsed(['--workers', '1']).opts().workers, 1);
});

// Flags each armed as one timer (or handed to a deadline that is one): past 2^31 − 1 ms Node fires it
// after 1 ms. A usage error names the flag; it used to start, then fail every request at once.
const TIMER_FLAGS = ['--upstream-timeout-ms', '--handshake-timeout-ms', '--lease-ms', '--redis-command-timeout-ms'];

test('serve flags armed as a timer beyond 2^31 − 1 ms (or 0) are usage errors', () => {
  for (const flag of TIMER_FLAGS) {
    for (const bad of [String(MAX_TIMER_MS + 1), '3000000000', '0']) {
      const cmd = serveCommand().exitOverride().configureOutput({ writeErr: () => {} });
      assert.throws(() => cmd.parseOptions([flag, bad]), (e: CommanderError) => e.code === 'commander.invalidArgument', `${flag} ${bad}`);
    }
    assert.doesNotThrow(() => parsed([flag, String(MAX_TIMER_MS)]), flag);
  }
});
