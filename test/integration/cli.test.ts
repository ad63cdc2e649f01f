import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, test } from 'node:test';
import { CLI, spawnCli, spawnServe } from '../helpers/procs.js';

// The CLI end to end: `longlink serve` and `longlink client` as separate
// processes, talking over real sockets, as a user would run them.

test('serve --help lists the heartbeat and keepalive options', () => {
  const help = execFileSync(process.execPath, [CLI, 'serve', '--help'], { encoding: 'utf8' });
  for (const opt of ['--tcp-port', '--ws-port', '--heartbeat-interval-ms', '--miss-budget', '--grace-ms', '--keepalive-idle-ms', '--keepalive-interval-ms', '--keepalive-count', '--user-timeout-ms', '--handshake-timeout-ms', '--max-frame-bytes']) {
    assert.ok(help.includes(opt), `serve --help mentions ${opt}`);
  }
  const clientHelp = execFileSync(process.execPath, [CLI, 'client', '--help'], { encoding: 'utf8' });
  for (const opt of ['--url', '--user', '--device', '--direction', '--interval-ms', '--json']) assert.ok(clientHelp.includes(opt));
});

test('serve refuses bad options with a clear message', () => {
  assert.throws(
    () => execFileSync(process.execPath, [CLI, 'serve', '--tcp-port', 'abc'], { encoding: 'utf8', stdio: 'pipe' }),
    (err: { stderr: string }) => /not an integer|invalid/i.test(err.stderr),
  );
});

for (const transport of ['tcp', 'ws'] as const) {
  test(`client and serve over ${transport}: heartbeats, RTT, echo, relay, acks, state`, async () => {
    const server = await spawnServe(['--heartbeat-interval-ms', '200', '--heartbeat-min-interval-ms', '100', '--log-level', 'debug']);
    after(() => server.kill());
    const alice = spawnCli(['client', '--url', server[transport], '--user', 'alice', '--device', 'a1', '--json', '--info', 'app=cli']);
    const bob = spawnCli(['client', '--url', server[transport], '--user', 'bob', '--device', 'b1', '--json']);
    after(() => alice.kill());
    after(() => bob.kill());
    const open = await alice.waitFor((l) => l.event === 'open', 5000, 'open');
    assert.equal((open.heartbeat as { intervalMs: number }).intervalMs, 200);
    await bob.waitFor((l) => l.event === 'open', 5000, 'open');
    const rtt = await alice.waitFor((l) => l.event === 'rtt', 3000, 'an rtt line');
    assert.ok(typeof rtt.sampleMs === 'number' && rtt.sampleMs >= 0);

    alice.child.stdin!.write('hello\n');
    const echo = await alice.waitFor((l) => l.event === 'message' && l.text === 'echo: hello', 3000, 'the echo');
    assert.equal(echo.seq, 1, 'pushed messages are numbered');
    await alice.waitFor((l) => l.event === 'acked' && l.seq === 1, 3000, 'the ack of the line alice sent');
    alice.child.stdin!.write('@bob hi bob\n');
    await bob.waitFor((l) => l.event === 'message' && l.text === 'alice: hi bob', 3000, 'the relayed message');
    alice.child.stdin!.write('/state mood=happy\n');
    await server.waitFor((l) => l.event === 'state' && (l.state as Record<string, string>)?.mood === 'happy', 3000, 'the state log line');
    const on = server.lines.filter((l) => l.event === 'online').map((l) => l.user);
    assert.deepEqual(on.sort(), ['alice', 'bob']);

    alice.child.stdin!.write('/quit\n');
    await server.waitFor((l) => l.event === 'offline' && l.user === 'alice', 3000, 'alice offline');
    const off = server.lines.find((l) => l.event === 'offline' && l.user === 'alice')!;
    assert.equal(off.reason, 'client-close');
    await Promise.all([alice.kill(), bob.kill(), server.kill()]);
  });
}
