import { Command } from 'commander';
import { Gateway } from '../gateway/gateway.js';
import { AdminServer, DEFAULT_ADMIN_PORT } from '../admin/admin-server.js';
import { Fleet } from '../demo/fleet.js';
import { launchChromium } from '../demo/chromium.js';
import { exitOnUsageError, int, port } from './parse.js';
import { relayChat } from './chat-relay.js';

/**
 * `longlink demo`: a gateway with its dashboard and a fleet of simulated
 * devices that connect, chat, freeze, drop and come back, so the whole system
 * can be watched alive in one command.
 */
export function demoCommand(): Command {
  return new Command('demo')
    .exitOverride(exitOnUsageError)
    .description('run a gateway, its dashboard and a fleet of simulated clients')
    .option('--clients <n>', 'simulated devices', int, 40)
    .option('--admin-port <port>', 'dashboard and admin API port (0 = any free port)', port, DEFAULT_ADMIN_PORT)
    .option('--seed <n>', 'seed of the fleet\'s script', int, 1)
    .option('--duration-ms <ms>', 'stop after this long (0 = run until Ctrl-C)', int, 0)
    .option('--screenshot <file>', 'save a PNG of the dashboard (headless Chromium) after --screenshot-after-ms')
    .option('--screenshot-after-ms <ms>', 'when to take the screenshot', int, 30_000)
    .option('--json', 'progress as JSON lines (for scripts and tests)')
    .action(async (o) => {
      const say = (human: string, data: Record<string, unknown>) => console.log(o.json ? JSON.stringify(data) : human);
      const gw = new Gateway({
        tcp: { host: '127.0.0.1', port: 0 },
        ws: { host: '127.0.0.1', port: 0 },
        // Short intervals so that a visitor sees heartbeats, suspicions and detections within seconds.
        heartbeat: { intervalMs: 5000, minIntervalMs: 1000, maxIntervalMs: 60_000, missBudget: 2, graceMs: 1000 },
        probes: { pongTimeoutMs: 2000, probeCount: 2, probeIntervalMs: 1000 },
        nodeId: 'demo',
      });
      relayChat(gw, () => {});
      const addrs = await gw.listen();
      let admin = new AdminServer(gw, { port: o.adminPort });
      let a;
      try {
        a = await admin.listen();
      } catch (err) {
        // Another gateway has the default port: the demo takes any free one rather than fail.
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
        await admin.close();
        admin = new AdminServer(gw, { port: 0 });
        a = await admin.listen();
      }
      const dashboard = `http://127.0.0.1:${a.port}/`;
      const tcpUrl = `tcp://127.0.0.1:${addrs.tcp!.port}`;
      const wsUrl = `ws://127.0.0.1:${addrs.ws!.port}${gw.options.ws ? gw.options.ws.path : ''}`;
      say(`longlink demo: gateway on ${tcpUrl} and ${wsUrl}, ${o.clients} simulated devices\ndashboard: ${dashboard}`, { event: 'ready', dashboard, tcp: tcpUrl, ws: wsUrl, clients: o.clients });

      const fleet = new Fleet({ tcpUrl, wsUrl, clients: o.clients, seed: o.seed });
      fleet.start();
      const started = Date.now();
      const progress = setInterval(() => {
        const t = admin.feed.overview();
        const secs = Math.round((Date.now() - started) / 1000);
        const det = t.detections;
        say(
          `t=${secs}s online ${t.online.devices}/${o.clients} · connections ${t.connections.total} · detections ${det} · false suspicions ${t.falseSuspicions} · chats ${fleet.stats.chats} · freezes ${fleet.stats.freezes} · drops ${fleet.stats.drops}`,
          { event: 'progress', t: secs, online: t.online.devices, connections: t.connections.total, detections: det, disconnects: t.disconnects, falseSuspicions: t.falseSuspicions, fleet: fleet.stats, pingsIn: t.traffic.pingsIn, pingsOut: t.traffic.pingsOut },
        );
      }, 5000);

      let stopping = false;
      const stop = async (code = 0) => {
        if (stopping) return;
        stopping = true;
        clearInterval(progress);
        fleet.stop();
        await admin.close();
        await gw.close();
        say('demo stopped', { event: 'stopped' });
        process.exit(code);
      };
      process.on('SIGINT', () => void stop());
      process.on('SIGTERM', () => void stop());
      if (o.screenshot) {
        setTimeout(() => {
          void screenshot(dashboard, o.screenshot).then(
            () => say(`screenshot saved to ${o.screenshot}`, { event: 'screenshot', file: o.screenshot }),
            (err: Error) => say(`screenshot failed: ${err.message}`, { event: 'screenshot-failed', error: err.message }),
          );
        }, o.screenshotAfterMs);
      }
      if (o.durationMs > 0) setTimeout(() => void stop(), o.durationMs);
    });
}

async function screenshot(url: string, file: string): Promise<void> {
  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    await page.goto(url);
    // Let the charts fill from the snapshot and a few live ticks.
    await page.waitForTimeout(3000);
    await page.screenshot({ path: file, fullPage: true });
  } finally {
    await browser.close();
  }
}
