#!/usr/bin/env node
/**
 * A lab process: a gateway or a set of clients, run inside a lab namespace
 * (`ip netns exec`), configured by one JSON argument. It prints JSON lines
 * with a wall-clock timestamp `t` (every namespace shares the kernel's clock,
 * so times from different processes compare) and reads JSON-line commands on
 * stdin. Kept apart from the CLI so the lab can freeze it with SIGSTOP.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import readline from 'node:readline';
import { Gateway } from '../gateway/gateway.js';
import type { GatewayOptions } from '../gateway/options.js';
import { LonglinkClient } from '../client/client.js';
import type { ClientOptions } from '../client/options.js';
import { applyKeepalive } from '../link/socket-tuning.js';
import { TcpLink } from '../link/tcp-link.js';

export interface GatewayAgentConfig {
  role: 'gateway';
  host: string;
  port: number;
  options: Omit<GatewayOptions, 'tcp' | 'ws'>;
}

export interface ClientsAgentConfig {
  role: 'clients';
  url: string;
  users: string[];
  options: Omit<ClientOptions, 'url' | 'userId' | 'deviceId' | 'dial'>;
}

export type AgentConfig = GatewayAgentConfig | ClientsAgentConfig;

const now = () => performance.timeOrigin + performance.now();
const emit = (ev: string, data: Record<string, unknown> = {}) => process.stdout.write(JSON.stringify({ ev, t: now(), ...data }) + '\n');

const commands = new Map<string, (c: Record<string, unknown>) => unknown>();
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(line);
  } catch {
    return;
  }
  const f = commands.get(String(c.cmd));
  if (!f) return emit('error', { error: `unknown command ${c.cmd}` });
  Promise.resolve(f(c)).catch((err) => emit('error', { cmd: c.cmd, error: String(err?.message ?? err) }));
});
process.stdin.on('end', () => process.exit(0));

async function gateway(c: GatewayAgentConfig): Promise<void> {
  const gw = new Gateway({ ...c.options, tcp: { host: c.host, port: c.port }, ws: false });
  gw.on('online', (e) => emit('online', { user: e.userId, resumed: e.resumed }));
  gw.on('offline', (e) => emit('offline', { user: e.userId, reason: e.reason, code: e.code, silentForMs: e.silentForMs }));
  gw.on('message', (m) => emit('message', { user: m.userId, text: Buffer.from(m.payload).toString() }));
  gw.on('delivered', (d) => emit('delivered', { user: d.userId, id: d.id, seq: d.seq }));
  commands.set('push', async (cmd) => {
    const r = await gw.push(String(cmd.user), String(cmd.text));
    emit('pushed', { user: cmd.user, id: r.id, devices: r.devices.length });
  });
  commands.set('stats', () => emit('stats', { traffic: gw.trafficStats(), delivery: gw.deliveryStats, connections: gw.listConnections() }));
  commands.set('network', () => emit('network', { stats: gw.networkStats() }));
  const addrs = await gw.listen();
  emit('listening', { port: addrs.tcp!.port });
}

async function clients(c: ClientsAgentConfig): Promise<void> {
  const all = new Map<string, { client: LonglinkClient; localPort: number }>();
  for (const user of c.users) {
    const entry = { client: null as unknown as LonglinkClient, localPort: 0 };
    // Our own TCP dial, to learn the local port (the lab's RST fault targets one connection).
    const dial: ClientOptions['dial'] = (url, o) =>
      new Promise((resolve, reject) => {
        const u = new URL(url);
        const socket = net.connect({ host: u.hostname, port: Number(u.port), noDelay: true });
        const timer = setTimeout(() => (socket.destroy(), reject(new Error('connect timeout'))), o.timeoutMs);
        socket.once('connect', () => {
          clearTimeout(timer);
          socket.removeAllListeners('error');
          applyKeepalive(socket, o.keepalive);
          entry.localPort = socket.localPort ?? 0;
          resolve(new TcpLink(socket, o.maxFrameBytes));
        });
        socket.once('error', (err) => (clearTimeout(timer), reject(err)));
      });
    const client = new LonglinkClient({ ...c.options, url: c.url, userId: user, deviceId: 'd0', dial });
    entry.client = client;
    all.set(user, entry);
    client.on('open', (w) => emit('open', { user, resumed: w.resumed, localPort: entry.localPort, intervalMs: w.heartbeat.intervalMs }));
    client.on('close', (e) => emit('close', { user, code: e.code, reason: e.reason, willReconnect: e.willReconnect }));
    client.on('message', (m) => emit('message', { user, text: Buffer.from(m.payload).toString(), seq: m.seq }));
    client.on('reconnecting', (r) => emit('reconnecting', { user, ...r }));
    client.on('interval', (e) => emit('interval', { user, ...e, probes: client.learner?.record?.probes ?? 0 }));
  }
  commands.set('send', (cmd) => {
    const id = all.get(String(cmd.user))!.client.send(String(cmd.text));
    emit('sent', { user: cmd.user, id });
  });
  commands.set('stats', () =>
    emit('stats', {
      clients: [...all].map(([user, e]) => ({ user, state: e.client.state, localPort: e.localPort, intervalMs: e.client.heartbeat?.intervalMs ?? null, ...e.client.stats })),
    }),
  );
  await Promise.all([...all.values()].map((e) => e.client.connect().catch((err) => emit('error', { error: String(err?.message ?? err) }))));
  emit('ready', { count: all.size });
  setInterval(() => {}, 1 << 30);
}

const config = JSON.parse(process.argv[2] ?? '{}') as AgentConfig;
if (config.role === 'gateway') await gateway(config);
else if (config.role === 'clients') await clients(config);
else {
  console.error('usage: agent.js <json config with role gateway|clients>');
  process.exit(2);
}
