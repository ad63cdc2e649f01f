import { clientAddr } from './topology.js';
import { LabRun, labPolicy, type Variant, type ScenarioReport } from './scenarios.js';
import { tuneDetector } from '../core/detector-tuning.js';
import { measuredNetwork } from '../core/network-model.js';
import type { NetworkStats } from '../gateway/gateway.js';

/**
 * The lab's scenarios. Times are scaled down from the field (a NAT timeout of
 * seconds, not minutes) so a run takes a minute or two; the ratios are what
 * carry over: heartbeat interval below the NAT timeout, detection bound of
 * interval × missBudget + grace.
 */
export interface ScenarioOptions {
  log?: (m: string) => void;
  /** Multiplies every wait (not the detection bounds): >1 for a slower machine. */
  windowScale?: number;
}

export interface Scenario {
  name: string;
  title: string;
  run(o: ScenarioOptions): Promise<ScenarioReport>;
}

const KEEPALIVE = { keepaliveIdleMs: 1000, keepaliveIntervalMs: 1000, keepaliveCount: 3 };
const probes = { pongTimeoutMs: 1000, probeCount: 1, probeIntervalMs: 500 };
/** The delay relay of the lossy scenarios: each chunk held base + U(0, jitter) ms (tests bound detection by its longest hold). */
export const LOSSY_RELAY = { baseMs: 20, jitterMs: 600 } as const;
const lossyDelay = `${LOSSY_RELAY.baseMs} ms + U(0, ${LOSSY_RELAY.jitterMs} ms) delay`;

/** App heartbeat every `interval` ms, sent by the client (longlink's default mode), with TCP keepalive under it. */
export const heartbeat = (name: string, interval: number, extra: Partial<Variant['gateway']> = {}): Variant => ({
  name,
  gateway: { heartbeat: labPolicy(interval), probes, keepalive: { ...KEEPALIVE, userTimeoutMs: 5000 }, wheelTickMs: 50, ...extra },
  client: { intervalMs: interval, probes, keepalive: { ...KEEPALIVE, userTimeoutMs: 5000 } },
});

/** No application heartbeat; TCP keepalive (1 s idle, 1 s interval, 3 probes) on both ends, optionally TCP_USER_TIMEOUT. */
export const keepaliveOnly = (name: string, userTimeoutMs = 0): Variant => ({
  name,
  gateway: { heartbeat: labPolicy('off'), probes, keepalive: { ...KEEPALIVE, userTimeoutMs }, wheelTickMs: 50 },
  client: { intervalMs: 3_600_000, probes, keepalive: { ...KEEPALIVE, userTimeoutMs } },
});

export const heartbeatOff = (name: string): Variant => ({
  name,
  gateway: { heartbeat: labPolicy('off'), probes, wheelTickMs: 50 },
  client: { intervalMs: 3_600_000, probes },
});

/** The application heartbeat alone, no TCP keepalive under it (the gateway's and client's defaults). */
export const heartbeatAlone = (name: string, interval: number): Variant => {
  const v = heartbeat(name, interval);
  return { ...v, gateway: { ...v.gateway, keepalive: {} }, client: { ...v.client, keepalive: {} } };
};

/**
 * The nat-idle scenario's variants: a heartbeat every `intervalMs`, and the same link with it off.
 * The heartbeat runs alone: with `heartbeat()`'s TCP keepalive (1 s idle) under it, the keepalive
 * probes alone kept the mapping, so the scenario showed the same with the heartbeat off.
 */
export const natIdleVariants = (intervalMs: number): Variant[] => [heartbeatAlone(`heartbeat ${intervalMs / 1000} s`, intervalMs), heartbeatOff('heartbeats off')];

async function withRun(
  name: string,
  title: string,
  variants: Variant[],
  lab: Parameters<typeof LabRun.open>[2],
  body: (run: LabRun) => Promise<void>,
): Promise<ScenarioReport> {
  const startedAt = new Date().toISOString();
  const run = await LabRun.open(name, variants, lab);
  try {
    await body(run);
  } finally {
    await run.close();
  }
  const relay = lab.jitter ? `delay ${lab.jitter.baseMs} ms + U(0, ${lab.jitter.jitterMs}) ms` : null;
  return { scenario: name, title, startedAt, lab: { natTimeoutSec: lab.natTimeoutSec, strict: lab.strict ?? true, relay }, results: run.results };
}

export const SCENARIOS: Scenario[] = [
  {
    name: 'nat-idle',
    title: 'Idle link behind a strict NAT with a 5 s timeout: heartbeat every 2 s versus none',
    run: (o) => {
      const s = o.windowScale ?? 1;
      return withRun('nat-idle', SCENARIOS[0].title, natIdleVariants(2000), { natTimeoutSec: 5, log: o.log }, async (run) => {
        for (const r of run.running) await run.idleThenPush(r, 'idle', 15_000 * s, 8000 * s);
      });
    },
  },
  {
    name: 'frozen-peer',
    title: 'Peer process frozen (SIGSTOP): TCP keepalive alone versus the application heartbeat',
    run: (o) => {
      const s = o.windowScale ?? 1;
      return withRun('frozen-peer', SCENARIOS[1].title, [keepaliveOnly('keepalive only'), heartbeat('heartbeat 1 s', 1000)], { natTimeoutSec: 30, log: o.log }, async (run) => {
        for (const r of run.running) {
          await run.episode(r, 'client frozen', {
            inject: () => r.clients.freeze(),
            heal: () => r.clients.thaw(),
            windowMs: 15_000 * s,
            sides: { server: true, client: false },
            note: 'the frozen client cannot notice; its kernel still answers TCP',
          });
          await run.episode(r, 'gateway frozen', {
            inject: () => r.gateway.freeze(),
            heal: () => r.gateway.thaw(),
            windowMs: 15_000 * s,
            sides: { server: false, client: true },
            note: 'the frozen gateway cannot notice; its kernel still answers TCP',
          });
        }
      });
    },
  },
  {
    name: 'blackhole',
    title: 'Blackhole in both directions with unacknowledged data in flight',
    run: (o) => {
      const s = o.windowScale ?? 1;
      const variants = [keepaliveOnly('keepalive only'), keepaliveOnly('keepalive + TCP_USER_TIMEOUT 5 s', 5000), heartbeat('heartbeat 1 s', 1000)];
      return withRun('blackhole', SCENARIOS[2].title, variants, { natTimeoutSec: 60, log: o.log }, async (run) => {
        for (const r of run.running) {
          await run.episode(r, 'blackhole both ways, data in flight', {
            inject: () => run.lab.addFault({ kind: 'blackhole', client: r.index, direction: 'both' }),
            heal: () => run.lab.clearFaults(),
            windowMs: 30_000 * s,
            push: true,
            note: 'Linux retransmits unacknowledged data for about 15 min (tcp_retries2 = 15) and sends no keepalive probe meanwhile',
          });
        }
      });
    },
  },
  {
    name: 'path-faults',
    title: 'Other silent and loud path faults with the application heartbeat (1 s)',
    run: (o) => {
      const s = o.windowScale ?? 1;
      return withRun('path-faults', SCENARIOS[3].title, [heartbeat('heartbeat 1 s', 1000)], { natTimeoutSec: 30, log: o.log }, async (run) => {
        const r = run.running[0];
        // One-way faults: the side that still hears its peer starts counting
        // again from what it hears (the gateway's probe, or one more PING the
        // client's stalled TCP still got out), so its bound from the fault
        // grows by that much.
        await run.episode(r, 'blackhole client to server only', {
          inject: () => run.lab.addFault({ kind: 'blackhole', client: 0, direction: 'up' }),
          heal: () => run.lab.clearFaults(),
          windowMs: 15_000 * s,
          boundExtraMs: { client: 1000 + 500 + 50 + 50 },
          note: 'the client hears the gateway\'s probe at 1.5 s and counts again from it; the gateway\'s CLOSE waits behind TCP retransmissions',
        });
        await run.episode(r, 'blackhole server to client only', {
          inject: () => run.lab.addFault({ kind: 'blackhole', client: 0, direction: 'down' }),
          heal: () => run.lab.clearFaults(),
          windowMs: 15_000 * s,
          boundExtraMs: { server: 1000 },
          note: 'one more client PING gets through after the fault; the gateway counts silence from it',
        });
        await run.episode(r, 'NAT state flushed (rebinding)', {
          inject: () => run.lab.flushNat(),
          heal: () => {},
          windowMs: 15_000 * s,
          note: `strict NAT: packets of the forgotten mapping from ${clientAddr(0)} are dropped as invalid`,
        });
        const stats = await r.clients.stats();
        const port = (stats.clients as { localPort: number }[])[0].localPort;
        await run.episode(r, 'TCP RST injected by the NAT', {
          inject: () => run.lab.addFault({ kind: 'reset', client: 0, port }),
          heal: () => run.lab.clearFaults(),
          windowMs: 15_000 * s,
        });
        await run.episode(r, 'client link down', {
          inject: () => run.lab.link(0, false),
          heal: () => run.lab.link(0, true),
          windowMs: 15_000 * s,
        });
      });
    },
  },
  {
    name: 'loss-jitter',
    title: `No failure, 5% loss each way and ${lossyDelay}: false disconnects of the fixed, phi and freshness detectors, then a real blackhole to show what each costs in detection time`,
    run: (o) => {
      const s = o.windowScale ?? 1;
      // The clients' own check is made lenient (3 s for a PONG, two more probes)
      // so that the gateway's detector is what is compared.
      const lenient = (v: Variant): Variant => ({ ...v, clients: 20, client: { ...v.client, probes: { pongTimeoutMs: 3000, probeCount: 2, probeIntervalMs: 1000 } } });
      const variants: Variant[] = [
        lenient(heartbeat('fixed (silence > 2 intervals + 0.5 s)', 1000)),
        lenient(heartbeat('phi accrual (dead at phi 8)', 1000, { detector: { kind: 'phi' } })),
        lenient(heartbeat('freshness (next heartbeat 1.5 s late)', 1000, { detector: { kind: 'freshness' } })),
      ];
      return withRun('loss-jitter', SCENARIOS[4].title, variants, { natTimeoutSec: 30, jitter: LOSSY_RELAY, log: o.log }, async (run) => {
        for (const r of run.running) await run.lab.addFault({ kind: 'loss', client: r.index, percent: 5, direction: 'both' });
        await Promise.all(run.running.map((r) => run.quiet(r, '5% loss + jitter, 20 clients, no failure', 60_000 * s, 'every close here is a false disconnect')));
        for (const r of run.running) {
          await run.episode(r, 'then a blackhole both ways (true failure)', {
            inject: () => run.lab.addFault({ kind: 'blackhole', client: r.index, direction: 'both' }),
            heal: () => run.lab.removeFault((f) => f.kind === 'blackhole' && f.client === r.index),
            windowMs: 15_000 * s,
            note: 'bounds do not count the relay delay; phi has no fixed bound',
          });
        }
      });
    },
  },
  {
    name: 'tuned',
    title: `The configurator in the lab: the path measured by the gateway under 5% loss each way and ${lossyDelay}, a policy tuned for "detect within 6 s, at most one false suspicion per connection-month", then 60 s with no failure and a real blackhole`,
    run: async (o) => {
      const s = o.windowScale ?? 1;
      const startedAt = new Date().toISOString();
      const labOpts = { natTimeoutSec: 30, jitter: LOSSY_RELAY, ...(o.log ? { log: o.log } : {}) };
      // The heartbeat alone, the policy being tuned (no TCP keepalive under it), with the clients' own check lenient.
      const lenient = (v: Variant): Variant => ({
        ...v,
        clients: 20,
        gateway: { ...v.gateway, keepalive: {} },
        client: { ...v.client, keepalive: {}, probes: { pongTimeoutMs: 3000, probeCount: 2, probeIntervalMs: 1000 } },
      });
      const lossy = async (run: LabRun) => {
        for (const r of run.running) await run.lab.addFault({ kind: 'loss', client: r.index, percent: 5, direction: 'both' });
      };
      // 1. Measure: 20 clients at 1 s; the gateway keeps each heartbeat's lateness and the empty slots.
      const measure = await LabRun.open('tuned', [lenient(heartbeat('measuring at 1 s', 1000))], labOpts);
      let stats: NetworkStats;
      try {
        await lossy(measure);
        await measure.quiet(measure.running[0], '5% loss + jitter, 20 clients: the gateway measures the path', 40_000 * s, 'false disconnects here are the measuring policy\'s');
        stats = (await measure.running[0].gateway.network()).stats as NetworkStats;
      } finally {
        await measure.close();
      }
      // 2. Tune from what it measured (the delay: half the RTT the clients reported).
      const t = stats.tcp;
      const net = measuredNetwork(t.heartbeats, t.rtt ? t.rtt.meanMs / 2 : 0, 'the lab gateway');
      const target = { detectWithinMs: 6000, falseSuspicionsPerMonth: 1, minIntervalMs: 500, maxIntervalMs: 5000 };
      const result = tuneDetector(target, net);
      const tuned = { network: { heartbeats: net.heartbeats, lossRate: net.lossRate, lateP999Ms: Math.round(net.lateP999Ms), delayMeanMs: Math.round(net.delayMeanMs) }, target, result, measured: stats };
      const report = (results: ScenarioReport['results']): ScenarioReport => ({ scenario: 'tuned', title: SCENARIOS.find((x) => x.name === 'tuned')!.title, startedAt, lab: { natTimeoutSec: 30, strict: true, relay: `delay ${LOSSY_RELAY.baseMs} ms + U(0, ${LOSSY_RELAY.jitterMs}) ms` }, results, tuned });
      if (!result.ok) return report(measure.results);
      // 3. Run the tuned policy on the same path: no failure, then a blackhole.
      const base = heartbeat(`tuned: ${result.detector}, heartbeat ${result.intervalMs} ms, bound ${result.intervalMs * result.missBudget + result.graceMs} ms`, result.intervalMs, {
        detector: { kind: result.detector },
      });
      const variant = lenient({ ...base, gateway: { ...base.gateway, heartbeat: { ...labPolicy(result.intervalMs), maxIntervalMs: result.intervalMs, missBudget: result.missBudget, graceMs: result.graceMs } } });
      const run = await LabRun.open('tuned', [variant], labOpts);
      try {
        await lossy(run);
        await run.quiet(run.running[0], '5% loss + jitter, 20 clients, no failure', 60_000 * s, `the target allows ${(20 * 60 * s * target.falseSuspicionsPerMonth / (30 * 24 * 3600)).toExponential(1)} false suspicions in this span`);
        await run.episode(run.running[0], 'then a blackhole both ways (true failure)', {
          inject: () => run.lab.addFault({ kind: 'blackhole', client: 0, direction: 'both' }),
          heal: () => run.lab.removeFault((f) => f.kind === 'blackhole' && f.client === 0),
          windowMs: Math.max(15_000 * s, 2 * target.detectWithinMs),
          note: `target: detected within ${target.detectWithinMs / 1000} s of the last heartbeat (the bound shown does not count the relay delay)`,
        });
      } finally {
        await run.close();
      }
      return report([...measure.results, ...run.results]);
    },
  },
];

export const scenarioNames = () => SCENARIOS.map((x) => x.name);
