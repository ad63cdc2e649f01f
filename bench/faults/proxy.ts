/**
 * A TCP relay on loopback between clients and one gateway node, so the fault
 * run can break links the way networks do: `cut` ends both sides at once (a
 * reset), `freeze` stops carrying bytes either way while both sockets stay
 * open (a half-open link: each side finds out only by its own heartbeat
 * timeout). The target port can change (a node restarted on a new port).
 */
import net from 'node:net';

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  frozen: boolean;
}

export class FaultProxy {
  private server: net.Server | null = null;
  private readonly pairs = new Set<Pair>();
  port = 0;

  constructor(public targetPort: number) {}

  async listen(): Promise<number> {
    this.server = net.createServer((client) => {
      const upstream = net.connect({ host: '127.0.0.1', port: this.targetPort });
      const pair: Pair = { client, upstream, frozen: false };
      this.pairs.add(pair);
      const end = () => {
        this.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('data', (d) => pair.frozen || upstream.write(d));
      upstream.on('data', (d) => pair.frozen || client.write(d));
      client.on('error', end);
      upstream.on('error', end);
      // A frozen link stays open on both sides until each gives up on its own.
      client.on('close', () => (pair.frozen ? upstream.destroy() : end()));
      upstream.on('close', () => (pair.frozen ? client.destroy() : end()));
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  get size(): number {
    return this.pairs.size;
  }

  private pick(random: () => number): Pair | undefined {
    const live = [...this.pairs].filter((p) => !p.frozen);
    return live.length ? live[Math.floor(random() * live.length)] : undefined;
  }

  /** Resets one link at random; false if there was none. */
  cut(random: () => number): boolean {
    const p = this.pick(random);
    if (!p) return false;
    this.pairs.delete(p);
    p.client.resetAndDestroy();
    p.upstream.resetAndDestroy();
    return true;
  }

  /** Makes one link half-open at random; false if there was none. */
  freeze(random: () => number): boolean {
    const p = this.pick(random);
    if (!p) return false;
    p.frozen = true;
    return true;
  }

  async close(): Promise<void> {
    for (const p of this.pairs) {
      p.client.destroy();
      p.upstream.destroy();
    }
    this.pairs.clear();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
