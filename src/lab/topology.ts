import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { OptionError } from '../protocol/errors.js';
import { run, inNs } from './exec.js';
import { clientIf, faultRuleset, natRuleset, SERVER_IF, type FaultRule } from './ruleset.js';

/**
 * A lab network: client hosts behind one NAT router, and a server host, each
 * its own network namespace, joined by veth pairs. Nothing touches the root
 * namespace. Names carry the creating pid, so `sweepStaleLabs` can delete
 * the leftovers of a lab whose process died.
 *
 *   client i (10.0.{10+i}.2) --c{i}/eth0-- router --srv/eth0-- server (10.0.2.2)
 *
 * The router masquerades towards the server, so the server sees every client
 * as 10.0.2.1, and conntrack's TCP established timeout is the NAT's idle
 * timeout.
 */
export interface LabOptions {
  clients?: number;
  /** conntrack TCP established timeout in the router: the NAT's idle timeout. */
  natTimeoutSec?: number;
  /** Drop packets that match no mapping (nf_conntrack_tcp_loose=0, ct state invalid drop). */
  strict?: boolean;
  /** Divert client traffic for these server ports to delaying relays (see delay-relay.ts) in the router. */
  relays?: { serverPort: number; relayPort: number }[];
}

export const SERVER_ADDR = '10.0.2.2';
export const ROUTER_OUTSIDE_ADDR = '10.0.2.1';
export const clientAddr = (i: number) => `10.0.${10 + i}.2`;
const routerInsideAddr = (i: number) => `10.0.${10 + i}.1`;

const PREFIX = 'll-';
/** Client subnets are 10.0.(10+i).0/24: beyond this many the addresses are not addresses. */
export const MAX_CLIENTS = 245;
/** conntrack keeps the timeout in jiffies in an int; a day is far beyond any NAT the lab plays. */
export const MAX_NAT_TIMEOUT_SEC = 86_400;

export class Lab {
  readonly id: string;
  readonly server: string;
  readonly router: string;
  readonly clients: string[];
  private natTimeout: number;
  readonly strict: boolean;
  private faults: FaultRule[] = [];
  private faultChange: Promise<void> = Promise.resolve();
  private readonly procs = new Set<ChildProcess>();
  private torn = false;
  private tearing: Promise<void> | null = null;

  private constructor(readonly options: Required<Omit<LabOptions, 'relays'>> & Pick<LabOptions, 'relays'>) {
    this.id = `${process.pid}-${randomBytes(3).toString('hex')}`;
    this.server = `${PREFIX}${this.id}-srv`;
    this.router = `${PREFIX}${this.id}-rtr`;
    this.clients = Array.from({ length: options.clients }, (_, i) => `${PREFIX}${this.id}-c${i}`);
    this.natTimeout = options.natTimeoutSec;
    this.strict = options.strict;
  }

  get namespaces(): string[] {
    return [this.server, this.router, ...this.clients];
  }

  /** Builds the network; on any failure tears down what was built and rethrows. */
  static async create(o: LabOptions = {}): Promise<Lab> {
    // Refused before the first namespace: a bad count used to build them all and fail at the first bad address.
    const clients = o.clients ?? 1;
    if (!Number.isInteger(clients) || clients < 1 || clients > MAX_CLIENTS) throw new OptionError('clients', `an integer from 1 to ${MAX_CLIENTS}, got ${clients}`);
    checkNatTimeout(o.natTimeoutSec ?? 30);
    const lab = new Lab({ clients: o.clients ?? 1, natTimeoutSec: o.natTimeoutSec ?? 30, strict: o.strict ?? true, relays: o.relays });
    labs.add(lab);
    hookExit();
    // A signal meanwhile waits for the build (see teardownOnSignals): torn down mid-build, the
    // namespaces the build went on adding would stay.
    const built = lab.build();
    building.add(built);
    try {
      await built;
    } catch (err) {
      await (untilExit() ?? lab.teardown());
      throw err;
    } finally {
      building.delete(built);
    }
    return lab;
  }

  private async build(): Promise<void> {
    const { server, router } = this;
    for (const ns of this.namespaces) {
      await run('ip', ['netns', 'add', ns]);
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    await run('ip', ['-n', router, 'link', 'add', SERVER_IF, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', server]);
    await run('ip', ['-n', router, 'addr', 'add', `${ROUTER_OUTSIDE_ADDR}/24`, 'dev', SERVER_IF]);
    await run('ip', ['-n', router, 'link', 'set', SERVER_IF, 'up']);
    await run('ip', ['-n', server, 'addr', 'add', `${SERVER_ADDR}/24`, 'dev', 'eth0']);
    await run('ip', ['-n', server, 'link', 'set', 'eth0', 'up']);
    for (const [i, ns] of this.clients.entries()) {
      await run('ip', ['-n', router, 'link', 'add', clientIf(i), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      await run('ip', ['-n', router, 'addr', 'add', `${routerInsideAddr(i)}/24`, 'dev', clientIf(i)]);
      await run('ip', ['-n', router, 'link', 'set', clientIf(i), 'up']);
      await run('ip', ['-n', ns, 'addr', 'add', `${clientAddr(i)}/24`, 'dev', 'eth0']);
      await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
      await run('ip', ['-n', ns, 'route', 'add', 'default', 'via', routerInsideAddr(i)]);
    }
    // The server has no route to the client subnets: only NAT makes replies possible.
    await this.sysctl(router, 'net.ipv4.ip_forward', '1');
    await inNs(router, 'nft', ['-f', '-'], natRuleset({ clients: this.clients.length, strict: this.strict, relays: this.options.relays }));
    await this.applyFaults();
    // conntrack's sysctls appear once the nft ct rules have loaded it for this namespace.
    await this.setNatTimeout(this.natTimeout);
    await this.sysctl(router, 'net.netfilter.nf_conntrack_tcp_loose', this.strict ? '0' : '1');
    await this.sysctl(router, 'net.netfilter.nf_conntrack_tcp_be_liberal', '0');
  }

  private sysctl(ns: string, key: string, value: string): Promise<string> {
    return inNs(ns, 'sysctl', ['-q', '-w', `${key}=${value}`]);
  }

  /** The NAT's idle timeout in force (conntrack TCP established), in seconds. */
  get natTimeoutSec(): number {
    return this.natTimeout;
  }

  /**
   * The NAT's idle timeout for established TCP mappings; applies to existing mappings at their next
   * packet. Whole seconds from 1: it was rounded and raised to 1 without a word (`nat-timeout 0` in
   * `lab up` gave 1 s, "done"), and natTimeoutSec kept the value the lab was built with.
   */
  async setNatTimeout(sec: number): Promise<void> {
    checkNatTimeout(sec);
    await this.sysctl(this.router, 'net.netfilter.nf_conntrack_tcp_timeout_established', String(sec));
    this.natTimeout = sec;
  }

  /** The router's current TCP mappings (conntrack -L), as text lines. */
  async mappings(): Promise<string[]> {
    const out = await inNs(this.router, 'conntrack', ['-L', '-p', 'tcp']).catch(() => '');
    return out.split('\n').filter((l) => l.startsWith('tcp'));
  }

  /** NAT rebinding: forget every mapping (or one client's), as a NAT reboot or an address change does. */
  async flushNat(client?: number): Promise<void> {
    const args = client === undefined ? ['-F'] : ['-D', '-s', clientAddr(client)];
    await inNs(this.router, 'conntrack', args).catch((err) => {
      // conntrack -D exits non-zero when nothing matched.
      if (!/0 flow entries/.test(String(err.message))) throw err;
    });
  }

  /** Applied first, kept only once in force: a fault the rules refuse must not poison the next ones. */
  addFault(f: FaultRule): Promise<void> {
    return this.setFaults((cur) => [...cur, f]);
  }

  /** Removes the faults matching `pred`, leaving the others in force. */
  removeFault(pred: (f: FaultRule) => boolean): Promise<void> {
    return this.setFaults((cur) => cur.filter((f) => !pred(f)));
  }

  clearFaults(): Promise<void> {
    return this.setFaults(() => []);
  }

  /**
   * One change at a time, each from the faults the one before left: two at once (lab up's schedule
   * and its stdin, two items at the same second) each started from the same list, and the one
   * that finished last dropped the other's fault from the table, though both said done.
   */
  private setFaults(next: (cur: FaultRule[]) => FaultRule[]): Promise<void> {
    const step = this.faultChange.then(async () => {
      const faults = next(this.faults);
      const bad = faults.find((f) => f.client >= this.clients.length);
      if (bad) throw new RangeError(`fault client ${bad.client}: this lab has clients 0 to ${this.clients.length - 1}`);
      await this.applyFaults(faults);
      this.faults = faults;
    });
    this.faultChange = step.catch(() => undefined);
    return step;
  }

  get activeFaults(): readonly FaultRule[] {
    return this.faults;
  }

  private async applyFaults(faults: FaultRule[] = this.faults): Promise<void> {
    // Replace the table whole: add (so delete cannot fail), delete, then add the new one, in one transaction.
    await inNs(this.router, 'nft', ['-f', '-'], `table ip ll_fault {}\ndelete table ip ll_fault\n${faultRuleset(faults)}`);
  }

  /** Brings a client's access link down (carrier loss) or up again. */
  async link(client: number, up: boolean): Promise<void> {
    await run('ip', ['-n', this.router, 'link', 'set', clientIf(client), up ? 'up' : 'down']);
    if (up) {
      await run('ip', ['-n', this.clients[client], 'route', 'replace', 'default', 'via', routerInsideAddr(client)]);
    }
  }

  /** Bytes seen at the router for each client, up (client to server) and down. */
  async bytes(): Promise<{ up: number; down: number }[]> {
    const out = JSON.parse(await inNs(this.router, 'nft', ['-j', 'list', 'counters', 'table', 'ip', 'll']));
    const res = this.clients.map(() => ({ up: 0, down: 0 }));
    for (const item of out.nftables as Record<string, { name: string; bytes: number }>[]) {
      const c = item.counter;
      const m = c && /^(up|down)_(\d+)$/.exec(c.name);
      if (m) res[Number(m[2])][m[1] as 'up' | 'down'] = c.bytes;
    }
    return res;
  }

  /** Starts a process inside one of the lab's namespaces; it is killed at teardown. */
  spawn(ns: string, cmd: string, args: string[]): ChildProcess {
    if (this.torn) throw new Error('lab is torn down');
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.procs.add(child);
    child.once('exit', () => this.procs.delete(child));
    return child;
  }

  /**
   * Kills every process in the lab's namespaces and deletes them. A second
   * call (a signal while a `finally` tears down) gets the same promise, and
   * the lab stays in `labs` until it is done: one that left it at the start
   * let the signal handler exit mid-teardown, namespaces left.
   */
  teardown(): Promise<void> {
    if (this.tearing) return this.tearing;
    this.torn = true;
    for (const c of this.procs) {
      c.kill('SIGCONT');
      c.kill('SIGKILL');
    }
    this.tearing = removeNamespaces(this.namespaces).finally(() => labs.delete(this));
    return this.tearing;
  }
}

/** conntrack takes whole seconds: 2.5 became 3 in the kernel while the reports said 2.5. */
function checkNatTimeout(t: number): void {
  if (!(Number.isInteger(t) && t >= 1 && t <= MAX_NAT_TIMEOUT_SEC)) throw new OptionError('natTimeoutSec', `whole seconds from 1 to ${MAX_NAT_TIMEOUT_SEC}, got ${t}`);
}

async function removeNamespaces(names: string[]): Promise<void> {
  for (const ns of names) {
    // Bounded: caught mid-spawn (a signal while agents start), it has been seen to hang for seconds.
    const pids = await run('ip', ['netns', 'pids', ns], undefined, 2000).catch(() => '');
    for (const p of pids.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(p), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await run('ip', ['netns', 'del', ns]).catch(() => undefined);
  }
}

/**
 * The last resort, at exit: labs still standing when the process ends without their teardown (an
 * uncaught error, such as EPIPE from `lab up | head`, or a process.exit) are deleted synchronously.
 * They were left standing until a `lab clean`.
 */
let exitHooked = false;
function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', () => {
    for (const lab of labs) {
      for (const ns of lab.namespaces) {
        try {
          const pids = execFileSync('ip', ['netns', 'pids', ns], { timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] });
          for (const p of String(pids).split(/\s+/).filter(Boolean)) {
            try {
              process.kill(Number(p), 'SIGKILL');
            } catch {
              // already gone
            }
          }
          execFileSync('ip', ['netns', 'del', ns], { timeout: 5000, stdio: 'ignore' });
        } catch {
          // gone already, or ip failed: `lab clean` is still there
        }
      }
    }
  });
}

/** Deletes lab namespaces whose creating process is gone (a crashed or killed run). */
export async function sweepStaleLabs(): Promise<string[]> {
  const out = await run('ip', ['netns', 'list']).catch(() => '');
  const stale: string[] = [];
  for (const line of out.split('\n')) {
    const name = line.split(' ')[0];
    const m = /^ll-(\d+)-[0-9a-f]+-/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = pid === process.pid;
    if (!alive) {
      try {
        process.kill(pid, 0);
        alive = true;
      } catch {
        alive = false;
      }
    }
    if (!alive) stale.push(name);
  }
  await removeNamespaces(stale);
  return stale;
}

// Labs still standing when the process is interrupted are torn down first, once any being built is.
const labs = new Set<Lab>();
const building = new Set<Promise<void>>();
let stopping = false;

/**
 * Set once a signal is tearing the labs down: what was being set up fails
 * (its processes killed) and must wait for the exit rather than throw, which
 * would end the process before the teardown is done.
 */
export function untilExit(): Promise<never> | null {
  return stopping ? new Promise<never>(() => {}) : null;
}
let hooked = false;
export function teardownOnSignals(): void {
  if (hooked) return;
  hooked = true;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      // A second Ctrl-C (or a SIGTERM after it) must not cut the teardown short: with `once` it
      // met the default action and left namespaces. Each step is bounded; SIGKILL still ends it.
      if (stopping) return;
      // What was starting fails as its lab goes (an agent that never answers): that is the point
      // of stopping, not a crash that would exit before the teardown is done.
      process.on('unhandledRejection', () => {});
      stopping = true;
      void Promise.allSettled([...building])
        .then(() => Promise.allSettled([...labs].map((l) => l.teardown())))
        // 128 + the signal's number, as a shell reports a process the signal ended: 130, 143, 129.
        .then(() => process.exit(128 + os.constants.signals[sig]));
    });
  }
}

export async function teardownAll(): Promise<void> {
  await Promise.allSettled([...labs].map((l) => l.teardown()));
}
