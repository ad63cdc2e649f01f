import { LonglinkClient } from '../client/client.js';
import { dial, type DialOptions } from '../client/connect.js';
import { FreezableLink } from './freezable-link.js';
import { seededRandom } from '../core/backoff.js';

export interface FleetOptions {
  tcpUrl: string;
  wsUrl: string;
  clients: number;
  seed: number;
  /** Scales every pause in the script (1 = the pace a person can follow on the dashboard). */
  pace?: number;
}

export interface FleetStats {
  started: number;
  chats: number;
  freezes: number;
  drops: number;
  leaves: number;
  stateUpdates: number;
}

const NAMES = ['ada', 'bo', 'cy', 'dee', 'eli', 'fay', 'gus', 'hal', 'ivy', 'jo', 'kim', 'lu', 'max', 'ned', 'oli', 'pia', 'quin', 'rex', 'sol', 'tia'];
const MOODS = ['typing', 'idle', 'away', 'busy', 'reading'];

interface Member {
  userId: string;
  deviceId: string;
  client: LonglinkClient;
  link: FreezableLink | null;
}

/**
 * Simulated devices for the demo: real clients over loopback (TCP and
 * WebSocket, client- and server-sent heartbeats, fixed and adaptive intervals), each
 * following a random script: chat, update piggybacked state, freeze (hung
 * app: the gateway convicts it by heartbeat), drop the socket, leave and
 * come back. Every timer stops with `stop()`.
 */
export class Fleet {
  readonly stats: FleetStats = { started: 0, chats: 0, freezes: 0, drops: 0, leaves: 0, stateUpdates: 0 };
  private readonly members: Member[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly random: () => number;
  private stopped = false;

  constructor(private readonly o: FleetOptions) {
    this.random = seededRandom(o.seed);
  }

  start(): void {
    for (let i = 0; i < this.o.clients; i++) {
      // Arrive over the first seconds, as a fleet does after a deploy.
      this.later(this.random() * 4000, () => this.join(i));
    }
  }

  private later(ms: number, fn: () => void): void {
    if (this.stopped) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.stopped) fn();
    }, ms * (this.o.pace ?? 1));
    this.timers.add(t);
  }

  private pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.random() * xs.length)];
  }

  private join(i: number): void {
    const userId = `${NAMES[i % NAMES.length]}${i >= NAMES.length ? Math.floor(i / NAMES.length) : ''}`;
    const deviceId = this.random() < 0.5 ? 'phone' : 'laptop';
    const ws = i % 3 === 0;
    // A third hand the heartbeat to the gateway (as a background tab would): their RTT shows on the dashboard.
    const direction = i % 3 === 1 ? 'server' : 'client';
    const member: Member = { userId, deviceId, client: null as unknown as LonglinkClient, link: null };
    member.client = new LonglinkClient({
      url: ws ? this.o.wsUrl : this.o.tcpUrl,
      userId,
      deviceId,
      direction,
      intervalMs: this.pick([2000, 3000, 4000, 5000]),
      // The rest learn their interval (announced to the gateway as it changes).
      ...(i % 3 === 2 ? { adaptive: { network: 'loopback' } } : {}),
      clientInfo: { app: 'demo', platform: deviceId === 'phone' ? 'android' : 'linux' },
      reconnect: { initialDelayMs: 500, maxDelayMs: 5000 },
      dial: async (url: string, opts: DialOptions) => {
        const link = new FreezableLink(await dial(url, opts));
        member.link = link;
        return link;
      },
    });
    this.members.push(member);
    this.stats.started++;
    member.client.connect().catch(() => {});
    this.act(member);
  }

  /** The next thing this device does, a few seconds from now. */
  private act(m: Member): void {
    this.later(2000 + this.random() * 6000, () => {
      const r = this.random();
      if (m.client.state !== 'open') return this.act(m);
      if (r < 0.5) {
        const to = this.pick(this.members);
        m.client.send(`@${to.userId} hello from ${m.userId}`);
        this.stats.chats++;
      } else if (r < 0.75) {
        m.client.updateState({ mood: this.pick(MOODS), battery: String(20 + Math.floor(this.random() * 80)) });
        this.stats.stateUpdates++;
      } else if (r < 0.85 && m.link) {
        // A hung app: silent until the gateway's detector closes the link, then the client recovers.
        const link = m.link;
        link.frozen = true;
        this.stats.freezes++;
        this.later(25_000, () => {
          link.frozen = false;
          if (!link.closed) link.destroy();
        });
      } else if (r < 0.93 && m.link) {
        m.link.destroy();
        this.stats.drops++;
      } else {
        m.client.close();
        this.stats.leaves++;
        this.later(3000 + this.random() * 8000, () => {
          m.client.connect().catch(() => {});
        });
      }
      this.act(m);
    });
  }

  /** Devices whose client is open now. */
  get openCount(): number {
    return this.members.filter((m) => m.client.state === 'open' || m.client.state === 'suspect').length;
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const m of this.members) m.client.close();
  }
}
