import { performance } from 'node:perf_hooks';
import type { ClientOptions } from '../client/options.js';
import { activeDetectionMs, DEFAULT_PROBES, silenceLimitMs, type HeartbeatPolicy, type ProbeOptions } from '../core/heartbeat-policy.js';
import type { GatewayOptions } from '../gateway/options.js';
import { AgentProc, type AgentLine } from './agent-proc.js';
import { Lab, SERVER_ADDR, teardownOnSignals, untilExit } from './topology.js';

/**
 * Lab scenarios: each runs gateway and client processes in a fresh lab, injects
 * faults, and measures what each side saw. Times are from the fault to the
 * close (`offline` at the gateway, `close` at the client); null means the side
 * did not notice within the episode's window. A close with no fault behind it
 * is a false disconnect.
 */

/** One configuration compared in a scenario: its own gateway process, client namespace and clients. */
export interface Variant {
  name: string;
  gateway: Omit<GatewayOptions, 'tcp' | 'ws'>;
  client: Omit<ClientOptions, 'url' | 'userId' | 'deviceId' | 'dial'>;
  clients?: number;
}

export interface EpisodeResult {
  /** fault: a fault injected and healed; quiet: no fault at all; idle: no traffic, then a push. */
  kind: 'fault' | 'quiet' | 'idle';
  /** The side that was frozen and so could not notice anything. */
  frozen?: 'server' | 'client';
  scenario: string;
  variant: string;
  fault: string;
  /** How long the run waited for each side to notice. */
  windowMs: number;
  serverDetectMs: number | null;
  clientDetectMs: number | null;
  /** What longlink promises for this variant: the server's silence limit and the client's active-detection bound. */
  serverBoundMs: number | null;
  clientBoundMs: number | null;
  serverReason: string | null;
  clientReason: string | null;
  /** From the fault's end to the client open again (null: it never closed, or never came back). */
  reconnectMs: number | null;
  /** A message pushed into the faulty link: delivered at all, and after how long from the push. */
  delivered: boolean | null;
  deliveryMs: number | null;
  falseDisconnects: number;
  /** The false disconnects by who closed first: the gateway's detector or the client's. */
  falseBy?: { server: number; client: number };
  heartbeats: { client: number; server: number };
  bytes: { up: number; down: number };
  note: string;
}

export interface ScenarioReport {
  scenario: string;
  title: string;
  startedAt: string;
  lab: { natTimeoutSec: number; strict: boolean; relay: string | null };
  results: EpisodeResult[];
  /** The configurator's run (the tuned scenario): what the gateway measured, the target and the policy chosen. */
  tuned?: {
    network: { heartbeats: number; lossRate: number; lateP999Ms: number; delayMeanMs: number };
    target: { detectWithinMs: number; falseSuspicionsPerMonth: number };
    result: unknown;
    /** The gateway's /api/network at the end of the measuring span (`longlink tune --from <this report>` reads it). */
    measured: unknown;
  };
}

const HEARTBEAT_OFF_MS = 3_600_000;
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const BASE_PORT = 7001;
const plus = (a: number | null, b = 0) => (a === null ? null : a + b);

/** Gateway policy for a lab run: heartbeat every `intervalMs`, or effectively off (one per hour, longer than any run). */
export function labPolicy(intervalMs: number | 'off', extra: Partial<HeartbeatPolicy> = {}): Partial<HeartbeatPolicy> {
  if (intervalMs === 'off') return { intervalMs: HEARTBEAT_OFF_MS, minIntervalMs: 500, maxIntervalMs: HEARTBEAT_OFF_MS, missBudget: 2, graceMs: 500, ...extra };
  return { intervalMs, minIntervalMs: 500, maxIntervalMs: HEARTBEAT_OFF_MS, missBudget: 2, graceMs: 500, ...extra };
}

const labProbes: ProbeOptions = { pongTimeoutMs: 1000, probeCount: 1, probeIntervalMs: 500 };

/** A running variant: its gateway and clients processes. */
export interface Running {
  index: number;
  variant: Variant;
  gateway: AgentProc;
  clients: AgentProc;
  users: string[];
}

export class LabRun {
  readonly running: Running[] = [];
  readonly results: EpisodeResult[] = [];
  private relay: AgentProc | null = null;

  constructor(
    readonly lab: Lab,
    readonly scenario: string,
    private readonly log: (msg: string) => void = () => {},
  ) {}

  static async open(
    scenario: string,
    variants: Variant[],
    o: { natTimeoutSec: number; strict?: boolean; jitter?: { baseMs: number; jitterMs: number }; log?: (m: string) => void },
  ): Promise<LabRun> {
    teardownOnSignals();
    const relays = o.jitter ? variants.map((_, i) => ({ serverPort: BASE_PORT + i, relayPort: BASE_PORT + 100 + i })) : undefined;
    const lab = await Lab.create({ clients: variants.length, natTimeoutSec: o.natTimeoutSec, strict: o.strict ?? true, relays });
    const run = new LabRun(lab, scenario, o.log);
    try {
      if (o.jitter && relays) {
        const relayScript = new URL('./delay-relay.js', import.meta.url).pathname;
        const cfg = { routes: relays.map((r) => ({ listenPort: r.relayPort, target: `${SERVER_ADDR}:${r.serverPort}` })), ...o.jitter };
        run.relay = new AgentProc('relay', lab.spawn(lab.router, process.execPath, [relayScript, JSON.stringify(cfg)]));
        await run.relay.expect((l) => l.ev === 'relay-ready', 10_000, 'relay ready');
      }
      for (const [i, v] of variants.entries()) await run.start(i, v);
    } catch (err) {
      await (untilExit() ?? lab.teardown());
      throw err;
    }
    return run;
  }

  private async start(index: number, variant: Variant): Promise<void> {
    const { lab } = this;
    const port = BASE_PORT + index;
    const gateway = AgentProc.start(lab, lab.server, `gateway[${variant.name}]`, { role: 'gateway', host: SERVER_ADDR, port, options: variant.gateway });
    await gateway.expect((l) => l.ev === 'listening', 10_000, 'listening');
    const users = Array.from({ length: variant.clients ?? 1 }, (_, k) => `v${index}u${k}`);
    const clients = AgentProc.start(lab, lab.clients[index], `clients[${variant.name}]`, {
      role: 'clients',
      url: `tcp://${SERVER_ADDR}:${port}`,
      users,
      options: { reconnect: { initialDelayMs: 200, maxDelayMs: 2000 }, ...variant.client },
    });
    await clients.expect((l) => l.ev === 'ready', 15_000, 'clients ready');
    for (const u of users) await clients.expect((l) => l.ev === 'open' && l.user === u, 10_000, `open of ${u}`);
    this.running.push({ index, variant, gateway, clients, users });
  }

  async close(): Promise<void> {
    await this.lab.teardown();
  }

  /** Server silence limit and client active-detection bound for a variant, or null where its heartbeat is off. */
  bounds(v: Variant): { server: number | null; client: number | null } {
    const p = { ...labPolicy(25_000), ...v.gateway.heartbeat } as HeartbeatPolicy;
    const interval = v.client.intervalMs ?? p.intervalMs;
    if (interval >= HEARTBEAT_OFF_MS) return { server: null, client: null };
    // The phi detector has no fixed bound: it depends on what it learned.
    const fixedServer = v.gateway.detector?.kind !== 'phi';
    const probes = { ...DEFAULT_PROBES, ...v.client.probes };
    // One wheel tick of lateness on the server side.
    const tick = v.gateway.wheelTickMs ?? 100;
    return { server: fixedServer ? silenceLimitMs({ ...p, intervalMs: interval }) + tick : null, client: activeDetectionMs(interval, probes) };
  }

  private async counters(r: Running): Promise<{ client: number; server: number; up: number; down: number }> {
    const [c, g, b] = await Promise.all([r.clients.stats(), r.gateway.stats(), this.lab.bytes()]);
    const clientPings = (c.clients as { pingsSent: number }[]).reduce((a, x) => a + x.pingsSent, 0);
    const traffic = g.traffic as { pingsOut: number };
    return { client: clientPings, server: traffic.pingsOut, up: b[r.index].up, down: b[r.index].down };
  }

  /**
   * One fault on one variant: inject, wait until both sides noticed (or the
   * window passed), heal, wait for the clients to be back. `push` sends a
   * message each way right after the fault (data in flight).
   */
  async episode(
    r: Running,
    fault: string,
    o: {
      inject: () => Promise<void> | void;
      heal: () => Promise<void> | void;
      windowMs: number;
      push?: boolean;
      /** Which sides can notice: a frozen process cannot. */
      sides?: { server: boolean; client: boolean };
      /** Added to a side's bound where the fault lets frames through one way after it began (see catalog). */
      boundExtraMs?: { server?: number; client?: number };
      note?: string;
    },
  ): Promise<EpisodeResult> {
    const sides = o.sides ?? { server: true, client: true };
    const before = await this.counters(r);
    const gFrom = r.gateway.lines.length;
    const cFrom = r.clients.lines.length;
    const user = r.users[0];
    this.log(`${this.scenario}: ${r.variant.name}: ${fault}`);
    const tf = now();
    await o.inject();
    let pushAt = 0;
    if (o.push) {
      pushAt = now();
      r.gateway.command({ cmd: 'push', user, text: `in-flight ${fault}` });
      r.clients.command({ cmd: 'send', user, text: `in-flight-up ${fault}` });
    }
    const deadline = tf + o.windowMs;
    const offline = sides.server ? r.gateway.waitFor((l) => l.ev === 'offline' && l.user === user, o.windowMs, gFrom) : Promise.resolve(null);
    const closed = sides.client ? r.clients.waitFor((l) => l.ev === 'close' && l.user === user, o.windowMs, cFrom) : Promise.resolve(null);
    const [off, cl] = await Promise.all([offline, closed]);
    // Frozen sides: wait out the window so the other side has its full chance.
    if ((!sides.server || !sides.client) && now() < deadline && !(off || cl)) await sleep(deadline - now());
    const th = now();
    await o.heal();
    // A side that noticed nothing may still see the close once healed (a thawed client reads the gateway's FIN).
    const closedLate = off || cl ? null : await r.clients.waitFor((l) => l.ev === 'close' && l.user === user, 3000, cFrom);
    const reopen = off || cl || closedLate ? await r.clients.waitFor((l) => l.ev === 'open' && l.user === user && l.t > tf, 20_000, cFrom) : null;
    // Data in flight: the pushed message arrives on the healed link or after the resume.
    const got = o.push ? await r.clients.waitFor((l) => l.ev === 'message' && l.user === user && String(l.text).startsWith('in-flight'), 15_000, cFrom) : null;
    await sleep(300);
    const after = await this.counters(r);
    const closesBefore = (p: AgentProc, from: number, ev: string) => p.lines.slice(from).filter((l) => l.ev === ev && l.t < tf).length;
    const res: EpisodeResult = {
      kind: 'fault',
      ...(!sides.server ? { frozen: 'server' as const } : !sides.client ? { frozen: 'client' as const } : {}),
      scenario: this.scenario,
      variant: r.variant.name,
      fault,
      windowMs: o.windowMs,
      serverDetectMs: off ? Math.round(off.t - tf) : null,
      clientDetectMs: cl ? Math.round(cl.t - tf) : null,
      serverBoundMs: plus(this.bounds(r.variant).server, o.boundExtraMs?.server),
      clientBoundMs: plus(this.bounds(r.variant).client, o.boundExtraMs?.client),
      serverReason: off ? String(off.reason) : null,
      clientReason: cl ? String(cl.reason) : null,
      reconnectMs: reopen ? Math.round(Math.max(0, reopen.t - th)) : null,
      delivered: o.push ? got !== null : null,
      deliveryMs: got ? Math.round(got.t - pushAt) : null,
      falseDisconnects: closesBefore(r.gateway, gFrom, 'offline') + closesBefore(r.clients, cFrom, 'close'),
      heartbeats: { client: after.client - before.client, server: after.server - before.server },
      bytes: { up: after.up - before.up, down: after.down - before.down },
      note: o.note ?? '',
    };
    if (!reopen && (off || cl)) res.note = [res.note, 'did not reconnect within 20 s'].filter(Boolean).join('; ');
    this.results.push(res);
    return res;
  }

  /** A quiet span with no fault: every close in it is a false disconnect. */
  async quiet(r: Running, label: string, ms: number, note = ''): Promise<EpisodeResult> {
    const before = await this.counters(r);
    const gFrom = r.gateway.lines.length;
    const cFrom = r.clients.lines.length;
    this.log(`${this.scenario}: ${r.variant.name}: ${label} for ${ms} ms`);
    await sleep(ms);
    const after = await this.counters(r);
    const gw = r.gateway.lines.slice(gFrom).filter((l) => l.ev === 'offline');
    const cl = r.clients.lines.slice(cFrom).filter((l) => l.ev === 'close');
    const res: EpisodeResult = {
      kind: 'quiet',
      scenario: this.scenario,
      variant: r.variant.name,
      fault: label,
      windowMs: ms,
      serverDetectMs: null,
      clientDetectMs: null,
      serverBoundMs: this.bounds(r.variant).server,
      clientBoundMs: this.bounds(r.variant).client,
      serverReason: gw[0] ? String(gw[0].reason) : null,
      clientReason: cl[0] ? String(cl[0].reason) : null,
      reconnectMs: null,
      delivered: null,
      deliveryMs: null,
      // One false disconnect is one link lost; who noticed first says which detector convicted it.
      falseDisconnects: gw.length,
      falseBy: { server: gw.filter((l) => l.reason === 'heartbeat-timeout').length, client: gw.filter((l) => l.reason !== 'heartbeat-timeout').length },
      heartbeats: { client: after.client - before.client, server: after.server - before.server },
      bytes: { up: after.up - before.up, down: after.down - before.down },
      note,
    };
    this.results.push(res);
    return res;
  }

  /** Pushes one message after the link sat idle, and reports whether it arrived on the same link. */
  async idleThenPush(r: Running, label: string, idleMs: number, waitMs: number): Promise<EpisodeResult> {
    const before = await this.counters(r);
    const gFrom = r.gateway.lines.length;
    const cFrom = r.clients.lines.length;
    const user = r.users[0];
    this.log(`${this.scenario}: ${r.variant.name}: idle ${idleMs} ms, then push`);
    const t0 = now();
    await sleep(idleMs);
    const mappings = (await this.lab.mappings()).filter((m) => m.includes(`dport=${BASE_PORT + r.index} `)).length;
    const pushAt = now();
    r.gateway.command({ cmd: 'push', user, text: 'after-idle' });
    const got = await r.clients.waitFor((l) => l.ev === 'message' && l.user === user && l.text === 'after-idle', waitMs, cFrom);
    const after = await this.counters(r);
    const offs = r.gateway.lines.slice(gFrom).filter((l) => l.ev === 'offline');
    const closes = r.clients.lines.slice(cFrom).filter((l) => l.ev === 'close');
    const res: EpisodeResult = {
      kind: 'idle',
      scenario: this.scenario,
      variant: r.variant.name,
      fault: `idle ${Math.round(idleMs / 1000)} s behind a ${this.lab.natTimeoutSec} s NAT timeout`,
      windowMs: Math.round(now() - t0),
      serverDetectMs: offs[0] ? Math.round(offs[0].t - t0) : null,
      clientDetectMs: closes[0] ? Math.round(closes[0].t - t0) : null,
      serverBoundMs: this.bounds(r.variant).server,
      clientBoundMs: this.bounds(r.variant).client,
      serverReason: offs[0] ? String(offs[0].reason) : null,
      clientReason: closes[0] ? String(closes[0].reason) : null,
      reconnectMs: null,
      delivered: got !== null && closes.length === 0,
      deliveryMs: got ? Math.round(got.t - pushAt) : null,
      falseDisconnects: 0,
      heartbeats: { client: after.client - before.client, server: after.server - before.server },
      bytes: { up: after.up - before.up, down: after.down - before.down },
      note: `NAT mappings left for this link after the idle span: ${mappings}`,
    };
    this.results.push(res);
    return res;
  }
}

export type { AgentLine };
