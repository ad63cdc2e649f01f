import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { Redis } from 'ioredis';

/**
 * A private redis-server for one test file, on a free port of its own (a
 * Redis the machine may already run on 6379 is never touched). Nothing is
 * persisted. Null with the reason when redis-server is not installed.
 */
export interface TestRedis {
  url: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
}

export function redisUnavailable(): string | null {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return null;
  } catch {
    return 'redis-server is not installed (Debian package redis-server)';
  }
}

/** A port nothing listens on now (loopback). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export async function startRedis(): Promise<TestRedis> {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  live.add(child);
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => {}); // not up yet: retried below
    try {
      await r.connect();
      if ((await r.ping()) === 'PONG') {
        r.disconnect();
        break;
      }
    } catch {
      r.disconnect();
      if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not come up`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }
  return {
    url,
    port,
    pid: child.pid!,
    stop: async () => {
      live.delete(child);
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((res) => child.once('exit', res));
    },
  };
}
