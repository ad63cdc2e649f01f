import fs from 'node:fs';
import os from 'node:os';
import readline from 'node:readline';
import { Command, Option } from 'commander';
import { LonglinkClient } from '../client/client.js';
import { DEFAULT_TCP_PORT } from '../gateway/options.js';
import { DEFAULT_PROBES } from '../core/heartbeat-policy.js';
import { exitOnUsageError, int, keyValue, readOptionFile } from './parse.js';
import { escapeControls } from './escape.js';

/**
 * `longlink client`: connects, prints every event, sends each stdin line as a
 * message. Lines starting with / are commands: /state k=v, /probe,
 * /network ID (adaptive heartbeat: the device moved to network ID), /quit.
 */

/** How long /quit and Ctrl-C wait for what was typed to be acknowledged (README). */
const QUIT_FLUSH_MS = 5000;

/** A learner state file written by an earlier run, if there is one. */
function loadState(file: string | undefined): { state: import('../core/interval-learner.js').LearnerSnapshot } | null {
  if (!file || !fs.existsSync(file)) return null;
  try {
    return { state: JSON.parse(fs.readFileSync(file, 'utf8')) };
  } catch (err) {
    throw new Error(`--learner-state ${file}: ${(err as Error).message} (fix or delete the file)`);
  }
}

/** A bad option: one line naming it, exit 2 (as `serve`), not a stack trace. */
function badOption(message: string): never {
  // One line, whatever the message holds (a JSON parser's quotes the file's own newlines).
  process.stderr.write(`longlink client: ${escapeControls(message)}\n`);
  process.exit(2);
}

export function clientCommand(): Command {
  return new Command('client')
    .description('connect to a gateway, print events, send lines typed on stdin')
    // Exit 1 means the gateway ended the session for good (README): a bad flag is 2, as for serve.
    .exitOverride(exitOnUsageError)
    .option('--url <url>', 'gateway URL: tcp://host:port, tls://host:port, ws://host:port/longlink or wss://…; several, comma-separated, for a cluster', `tcp://127.0.0.1:${DEFAULT_TCP_PORT}`)
    .option('--user <id>', 'user id', `user-${process.pid}`)
    .option('--device <id>', 'device id; the default, <host>-cli, is the same every run, so what was queued while it was offline arrives on its next run (give two clients of one user on one host different ids)', `${os.hostname()}-cli`)
    .option('--token <token>', 'auth token sent in HELLO (or set LONGLINK_TOKEN: a flag shows in ps)')
    .option('--tls-ca <file>', 'tls:// and wss://: trust this CA certificate (PEM), for a private or self-signed gateway certificate')
    .addOption(new Option('--direction <who>', 'who sends heartbeats').choices(['client', 'server']).default('client'))
    .option('--interval-ms <ms>', 'heartbeat interval to announce (default: the gateway\'s); with --adaptive, the start', int)
    .option('--adaptive', 'learn the longest interval the network allows (probe, fall back, settle)')
    .option('--network <id>', 'with --adaptive: name of the network the device is on (e.g. wifi:home)')
    .option('--learner-state <file>', 'with --adaptive: load what was learned from this JSON file and save it back')
    .option('--pong-timeout-ms <ms>', 'wait for an answer to a heartbeat', int, DEFAULT_PROBES.pongTimeoutMs)
    .option('--probe-count <n>', 'quick probes after a missed answer', int, DEFAULT_PROBES.probeCount)
    .option('--probe-interval-ms <ms>', 'wait after each quick probe', int, DEFAULT_PROBES.probeIntervalMs)
    .option('--info <key=value>', 'client info sent in HELLO (repeatable)', keyValue, {})
    .option('--no-reconnect', 'do not reconnect after the link is lost')
    .option('--json', 'print events as JSON lines')
    .action(async (o) => {
      // Given without what they act with, these were taken and used nowhere: no state was loaded
      // or saved, no network named, no certificate trusted.
      for (const flag of ['--network', '--learner-state'] as const) {
        if (!o.adaptive && o[flag === '--network' ? 'network' : 'learnerState'] !== undefined) badOption(`${flag} needs --adaptive`);
      }
      if (o.tlsCa !== undefined && !String(o.url).split(',').some((u) => /^(tls|wss):/i.test(u.trim()))) badOption('--tls-ca needs a tls:// or wss:// --url');
      let client: LonglinkClient;
      try {
        client = new LonglinkClient({
          url: String(o.url).split(','),
          userId: o.user,
          deviceId: o.device,
          token: o.token ?? (process.env.LONGLINK_TOKEN || undefined),
          direction: o.direction,
          intervalMs: o.intervalMs,
          adaptive: o.adaptive ? { ...(o.network ? { network: o.network } : {}), ...(loadState(o.learnerState) ?? {}) } : false,
          clientInfo: o.info,
          probes: { pongTimeoutMs: o.pongTimeoutMs, probeCount: o.probeCount, probeIntervalMs: o.probeIntervalMs },
          reconnect: { enabled: o.reconnect },
          ...(o.tlsCa ? { tls: { ca: readOptionFile('--tls-ca', o.tlsCa) } } : {}),
        });
      } catch (err) {
        badOption((err as Error).message);
      }
      const print = (event: string, data: Record<string, unknown>, text: string) => {
        if (o.json) console.log(JSON.stringify({ event, ...data }));
        // Text from the gateway (messages, close reasons) may carry terminal control sequences: shown escaped.
        else console.log(`[${new Date().toISOString().slice(11, 23)}] ${escapeControls(text)}`);
      };
      client.on('state', (s) => print('state', { state: s }, `state ${s}`));
      client.on('open', (w) =>
        print('open', { sessionId: w.sessionId, resumed: w.resumed, heartbeat: w.heartbeat },
          `open session=${w.sessionId}${w.resumed ? ' (resumed)' : ''} heartbeat every ${w.heartbeat.intervalMs} ms, sent by the ${w.heartbeat.direction}`),
      );
      client.on('rtt', (r) => print('rtt', { ...r }, `rtt ${r.sampleMs.toFixed(2)} ms (smoothed ${r.srttMs.toFixed(2)} ms)`));
      client.on('message', (m) => {
        const text = Buffer.from(m.payload).toString('utf8');
        print('message', { text, id: m.id, seq: m.seq }, `message #${m.seq ?? '-'}: ${text}`);
      });
      client.on('acked', (a) => print('acked', { ...a }, `acked #${a.seq} (${a.id})`));
      client.on('session-lost', (e) => print('session-lost', { ...e }, 'the gateway did not know our session: a new one began'));
      let quitting = false;
      client.on('close', (e) => {
        print('close', { ...e }, `closed ${e.code} ${e.reason}${e.willReconnect ? '' : ' (not reconnecting)'}`);
        // The gateway ended the session for good (kicked, refused, replaced; or any loss with
        // --no-reconnect): the run is over, and a script or supervisor is told by the exit code.
        if (!e.willReconnect && !quitting) {
          rl.close();
          setTimeout(() => process.exit(1), 50);
        }
      });
      client.on('warning', (w) => print('warning', { ...w }, `warning from the gateway: ${w.code} ${w.reason}`));
      client.on('reconnecting', (r) => print('reconnecting', { ...r }, `reconnecting in ${r.delayMs} ms (attempt ${r.attempt})`));
      client.on('interval', (e) => {
        print('interval', { ...e }, `heartbeat interval ${e.intervalMs} ms on ${e.network} (${e.change}, ${e.phase})`);
        if (o.learnerState && client.learner) fs.writeFileSync(o.learnerState, JSON.stringify(client.learner.export(), null, 2) + '\n');
      });

      const rl = readline.createInterface({ input: process.stdin, terminal: false });
      rl.on('line', (line) => {
        // readline still hands over the rest of a chunk after rl.close(): after /quit nothing more is
        // read (a second /quit was taken for a second Ctrl-C and exited before the flush).
        if (quitting) return;
        if (line === '/quit') return quit();
        if (line === '/probe') return client.networkChanged();
        if (line.startsWith('/network ')) return client.networkChanged(line.slice(9).trim());
        if (line.startsWith('/state ')) {
          try {
            const delta = line.slice(7).split(/\s+/).filter(Boolean).reduce((acc, kv) => keyValue(kv, acc), {} as Record<string, string>);
            client.updateState(delta, { flush: true });
          } catch (err) {
            // A mistyped command is the person's to fix, not the end of the session.
            print('error', { error: (err as Error).message }, `(/state: ${(err as Error).message}; write /state key=value ...)`);
          }
          return;
        }
        try {
          const id = client.send(line);
          if (client.state !== 'open') print('queued', { id }, `(not connected; queued as ${id})`);
        } catch (err) {
          print('error', { error: (err as Error).message }, `(not sent: ${(err as Error).message})`);
        }
      });
      const quit = () => {
        // A second Ctrl-C does not wait for the outbox (and says, by exit 3, if it left some behind).
        if (quitting) process.exit(client.pendingCount > 0 ? 3 : 0);
        quitting = true;
        rl.close();
        // Lines typed just before are sent and acknowledged first (at most 5 s in all); what is left is said.
        // close() sends only over an open link: lines that came before the first WELCOME (piped
        // `hi` then `/quit`) were all dropped at once, so the link is waited for within those 5 s.
        const deadline = Date.now() + QUIT_FLUSH_MS;
        const linkUp = client.pendingCount > 0 && (client.state === 'connecting' || client.state === 'reconnecting')
          ? new Promise<void>((resolve) => {
              const done = () => (clearTimeout(t), client.off('open', done), client.off('close', ended), resolve());
              // A failed attempt (willReconnect) is no reason to stop waiting; a refusal for good is.
              const ended = (e: { willReconnect: boolean }) => !e.willReconnect && done();
              const t = setTimeout(done, QUIT_FLUSH_MS);
              client.on('open', done);
              client.on('close', ended);
            })
          : Promise.resolve();
        void linkUp.then(() => client.close({ flushMs: Math.max(0, deadline - Date.now()) })).then((left) => {
          if (left.length > 0) print('unsent', { ids: left.map((m) => m.id) }, `(${left.length} message${left.length === 1 ? '' : 's'} not acknowledged by the gateway: not sent)`);
          // A script piping lines in learns from the exit code whether they all went through (README).
          setTimeout(() => process.exit(left.length > 0 ? 3 : 0), 50);
        });
      };
      rl.on('close', () => {
        // stdin ended (for example a pipe): keep running until a signal, or until the session ends for good.
      });
      process.on('SIGINT', quit);
      process.on('SIGTERM', quit);
      client.connect().catch((err) => {
        // Ctrl-C while connecting: the person left, the connect did not fail.
        if (quitting) return;
        print('error', { error: String(err?.message ?? err) }, `cannot connect: ${err?.message ?? err}`);
        process.exit(1);
      });
      // The client's timers are unref'd; keep the process alive while it runs.
      setInterval(() => {}, 1 << 30);
    });
}

