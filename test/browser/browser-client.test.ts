import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Gateway, type MessageEvent, type OfflineEvent } from '../../src/gateway/gateway.js';
import { CloseCodes } from '../../src/protocol/errors.js';
import { sleep, waitEvent } from '../helpers/procs.js';
import { chromiumOrSkip, HiddenTab, servePage } from '../helpers/browser.js';

// The browser SDK in real Chromium against a real gateway over loopback
// WebSocket: the bundle a web app would load, in a page, including a
// background tab whose timers Chromium throttles.

// The page keeps every client event in window.log, so tests read what happened.
const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>longlink browser client</title>
<script src="/longlink.iife.js"></script>
<script>
window.log = [];
window.clients = {};
window.start = (name, opts) => {
  const c = new Longlink.LonglinkBrowserClient(opts);
  window.clients[name] = c;
  const note = (type, data) => window.log.push({ name, type, t: performance.now(), ...data });
  c.on('open', (w) => note('open', { resumed: w.resumed, direction: w.heartbeat.direction }));
  c.on('close', (e) => note('close', { code: e.code, willReconnect: e.willReconnect }));
  c.on('reconnecting', (e) => note('reconnecting', { delayMs: e.delayMs }));
  c.on('message', (m) => note('message', { text: new TextDecoder().decode(m.payload) }));
  c.on('acked', (a) => note('acked', { id: a.id }));
  c.on('state', (s) => note('state', { state: s }));
  return c.connect().then((w) => w.heartbeat.direction);
};
window.events = (name, type) => window.log.filter((e) => e.name === name && (!type || e.type === type));
// How many times a 50 ms timer chain fires in ms: about ms/50 in a visible tab, about ms/1000 when throttled.
window.timerRate = (ms) => new Promise((r) => { let n = 0; const end = performance.now() + ms; const f = () => { n++; if (performance.now() < end) setTimeout(f, 50); else r(n); }; setTimeout(f, 50); });
</script></head><body>browser client test page</body></html>`;

async function gateway(heartbeat: Record<string, number>, probes = { pongTimeoutMs: 500, probeCount: 1, probeIntervalMs: 300 }) {
  const gw = new Gateway({ tcp: false, ws: { port: 0 }, heartbeat: { minIntervalMs: 100, maxIntervalMs: 60_000, ...heartbeat }, probes, wheelTickMs: 10 });
  const a = await gw.listen();
  return { gw, url: `ws://127.0.0.1:${a.ws!.port}/longlink` };
}

async function until(what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('browser client in Chromium', () => {
  test('server-sent heartbeats, push with acknowledgements, sends acknowledged, resume with nothing lost', async (t) => {
    const exe = chromiumOrSkip(t);
    if (!exe) return;
    // Heartbeats every 300 ms, with room for a page that stalls a second on a loaded machine (CI saw the
    // client's own detector close a live link at 300 ms of grace); detection is not what this test checks.
    const { gw, url } = await gateway({ intervalMs: 300, missBudget: 2, graceMs: 1500 }, { pongTimeoutMs: 1500, probeCount: 1, probeIntervalMs: 500 });
    const site = await servePage(PAGE);
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: exe });
    try {
      const page = await browser.newPage();
      await page.goto(site.url);
      const inbound: MessageEvent[] = [];
      gw.on('message', (m) => inbound.push(m));
      const offline: OfflineEvent[] = [];
      gw.on('offline', (e) => offline.push(e));

      const direction = await page.evaluate((u) => (window as any).start('a', { url: u, userId: 'web', deviceId: 'tab', reconnect: { initialDelayMs: 100, maxDelayMs: 200 } }), url);
      assert.equal(direction, 'server', 'the browser client asks the gateway to send heartbeats');
      // Three intervals at 300 ms; polled rather than slept, since a loaded machine (CI runs Chromium beside other suites) is late.
      await until('two heartbeats from the gateway, and an answer', () => {
        const c = gw.connection('web', 'tab');
        return c !== undefined && c.stats.pingsOut >= 2 && c.rttMs !== null;
      });
      const conn = gw.connection('web', 'tab')!;
      assert.ok(conn.stats.pingsOut >= 2, `the gateway sent heartbeats (${conn.stats.pingsOut})`);
      assert.ok(conn.rttMs !== null, 'and measured the round trip from the answers');

      // Push: delivered once, acknowledged.
      const r1 = await gw.push('web', 'one');
      assert.equal(r1.devices[0].status, 'delivered');
      // Send: reaches the gateway and is acknowledged back.
      await page.evaluate(() => (window as any).clients.a.send('up'));
      await until('the message at the gateway', () => inbound.length === 1);
      assert.equal(Buffer.from(inbound[0].payload).toString(), 'up');
      await until('the acknowledgement in the page', async () => (await page.evaluate(() => (window as any).events('a', 'acked').length)) === 1);

      // The link goes; a push made meanwhile waits in the mailbox and arrives after the resume, once.
      gw.disconnect('web', 'tab', { reconnectAfterMs: 300 });
      const pushed = gw.push('web', 'two', { waitMs: 5000 });
      await until('the resume', async () => (await page.evaluate(() => (window as any).events('a', 'open').length)) === 2);
      // Offline when pushed: reported queued, then delivered from the mailbox on resume.
      assert.equal((await pushed).devices[0].status, 'queued');
      await until('the queued push in the page', async () => (await page.evaluate(() => (window as any).events('a', 'message').length)) === 2);
      const log = (await page.evaluate(() => (window as any).events('a'))) as { type: string; resumed?: boolean; text?: string; code?: number }[];
      assert.deepEqual(log.filter((e) => e.type === 'open').map((e) => e.resumed), [false, true], 'the second open resumed the session');
      assert.deepEqual(log.filter((e) => e.type === 'message').map((e) => e.text), ['one', 'two'], 'every push once, in order');
      assert.equal(log.find((e) => e.type === 'close')?.code, CloseCodes['going-away']);
      assert.deepEqual(offline.map((e) => e.reason), ['going-away'], 'no other disconnect');
      await page.evaluate(() => (window as any).clients.a.close());
    } finally {
      await browser.close();
      await site.close();
      await gw.close();
    }
  });

  test('offline/online: a check at once, and a reconnect without waiting out the backoff', async (t) => {
    const exe = chromiumOrSkip(t);
    if (!exe) return;
    const { gw, url } = await gateway({ intervalMs: 5000, missBudget: 2, graceMs: 1000 });
    const site = await servePage(PAGE);
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: exe });
    try {
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(site.url);
      await page.evaluate((u) => (window as any).start('b', { url: u, userId: 'web', deviceId: 'net', reconnect: { initialDelayMs: 30_000, minDelayMs: 30_000, maxDelayMs: 30_000 } }), url);
      const conn = () => gw.connection('web', 'net');
      assert.equal(conn()!.stats.pingsIn, 0, 'server-sent heartbeats: the client sends no PING of its own');

      // The network went away (the browser says so): the client checks the link now (quick probes,
      // state 'suspect'), not at the next heartbeat 5 s away.
      const states = async () => ((await page.evaluate(() => (window as any).events('b', 'state'))) as { state: string }[]).map((e) => e.state);
      await context.setOffline(true);
      await until('the check to start', async () => (await states()).includes('suspect'), 2000);
      await context.setOffline(false);
      // Back online: the check is answered, or it failed and the client reconnects at once.
      await until('the link to be good again', async () => conn() !== undefined && (await states()).at(-1) === 'open', 10_000);

      // The 'online' event asked for a check too, deferred to half the shortest interval after the
      // last one (2.5 s): a link lost while a check is out is the network's doing, and is redialled at
      // once by design. Past it, the loss below is the gateway's.
      await sleep(3000);
      // The link is lost; the backoff says 30 s, but the network coming back means try now. (The
      // check above may have failed and reconnected at once, a reconnect of its own: counted from here.)
      const reconnects = () => page.evaluate(() => (window as any).events('b', 'reconnecting').length as number);
      const earlier = await reconnects();
      gw.disconnect('web', 'net');
      await until('reconnecting', async () => (await reconnects()) === earlier + 1);
      const delay = await page.evaluate((i) => (window as any).events('b', 'reconnecting')[i].delayMs, earlier);
      assert.ok(delay >= 30_000, `the backoff would wait ${delay} ms`);
      const before = Date.now();
      await context.setOffline(true);
      await context.setOffline(false);
      await until('the reconnect', () => conn() !== undefined, 5000);
      assert.ok(Date.now() - before < 5000, 'back well before the backoff delay');
      const stats = await page.evaluate(() => (window as any).clients.b.pageStats);
      assert.ok(stats.offline >= 2 && stats.online >= 2, JSON.stringify(stats));

      // Logged out and in again (close(), then connect()): the page is watched again.
      await page.evaluate(() => {
        const c = (window as any).clients.b;
        c.close();
        return c.connect();
      });
      await until('open again', () => conn() !== undefined);
      await context.setOffline(true);
      await context.setOffline(false);
      await until('the page signals to reach it', async () => {
        const s = await page.evaluate(() => (window as any).clients.b.pageStats);
        return s.offline >= 3 && s.online >= 3;
      }, 3000);

      // Kicked, and connected again from a state handler (which runs before the close event): still watched.
      const opens = async () => (await page.evaluate(() => (window as any).events('b', 'open').length)) as number;
      const opened = await opens();
      await page.evaluate(() => {
        const c = (window as any).clients.b;
        const again = (s: string) => {
          if (s !== 'closed') return;
          c.off('state', again);
          c.connect().catch((e: Error) => (window as any).log.push({ name: 'b', type: 'connect-rejected', message: e.message }));
        };
        c.on('state', again);
      });
      gw.kick('web', 'net');
      await until('open again after the kick', async () => (await opens()) === opened + 1 && conn() !== undefined, 5000);
      const seen = (await page.evaluate(() => (window as any).clients.b.pageStats)) as { online: number };
      await context.setOffline(true);
      await context.setOffline(false);
      await until('the page signals to reach it after the kick', async () => (await page.evaluate(() => (window as any).clients.b.pageStats.online)) > seen.online, 3000);
      assert.deepEqual(await page.evaluate(() => (window as any).events('b', 'connect-rejected')), [], 'connect() waited for its own attempt');
      await page.evaluate(() => (window as any).clients.b.close());
    } finally {
      await browser.close();
      await site.close();
      await gw.close();
    }
  });

  test('a page frozen and resumed (Page Lifecycle) checks its link at once, and reconnects without waiting out the backoff', async (t) => {
    const exe = chromiumOrSkip(t);
    if (!exe) return;
    const { gw, url } = await gateway({ intervalMs: 5000, missBudget: 2, graceMs: 1000 });
    const site = await servePage(PAGE);
    const tab = await HiddenTab.open(exe, site.url);
    try {
      await tab.evaluate(`start('f', { url: ${JSON.stringify(url)}, userId: 'web', deviceId: 'frozen', reconnect: { initialDelayMs: 30000, minDelayMs: 30000, maxDelayMs: 30000 } })`);
      const conn = () => gw.connection('web', 'frozen');
      const states = async () => (await tab.evaluate<{ state: string }[]>(`events('f', 'state')`)).map((e) => e.state);

      // No code ran while frozen: the link is checked now (quick probes), not at the next heartbeat 5 s
      // away; Chromium may also have closed the WebSocket of the frozen page, and then the client is back
      // at once, not after the 30 s backoff.
      await tab.freeze(200);
      await until('the check to start', async () => (await states()).includes('suspect'), 3000);
      await until('the link to be good again', async () => conn() !== undefined && (await states()).at(-1) === 'open', 10_000);

      // Waiting out a 30 s backoff when the page was frozen: back at once on resume.
      // Counted from here: the freeze above may have cost a reconnect already (Chromium may close a frozen page's WebSocket).
      const reconnects = (await tab.evaluate<unknown[]>(`events('f', 'reconnecting')`)).length;
      gw.disconnect('web', 'frozen');
      await until('reconnecting', async () => (await tab.evaluate<unknown[]>(`events('f', 'reconnecting')`)).length === reconnects + 1);
      assert.ok((await tab.evaluate<{ delayMs: number }[]>(`events('f', 'reconnecting')`)).at(-1)!.delayMs >= 30_000, 'the backoff would wait 30 s');
      const before = Date.now();
      await tab.freeze(200);
      await until('the reconnect', () => conn() !== undefined, 5000);
      assert.ok(Date.now() - before < 5000, 'back well before the backoff delay');
      assert.ok((await tab.evaluate<{ resumed: number }>('clients.f.pageStats')).resumed >= 2);
      await tab.evaluate('clients.f.close()');
    } finally {
      await tab.close();
      await site.close();
      await gw.close();
    }
  });

  test('a hidden tab with throttled timers: server-sent heartbeats keep it; client-sent ones get it convicted', async (t) => {
    const exe = chromiumOrSkip(t);
    if (!exe) return;
    // A tight policy: a link silent for 800 ms is dead, either way, with no probe to rescue it first
    // (a miss budget of 1); a throttled tab's timers wake once a second. Server-sent PINGs every
    // 300 ms leave 500 ms for a loaded machine's jitter.
    const { gw, url } = await gateway({ intervalMs: 300, missBudget: 1, graceMs: 500 }, { pongTimeoutMs: 1000, probeCount: 1, probeIntervalMs: 300 });
    const site = await servePage(PAGE);
    const tab = await HiddenTab.open(exe, site.url);
    try {
      assert.equal(await tab.evaluate('document.visibilityState'), 'hidden');
      const fired = await tab.evaluate<number>('timerRate(3000)');
      assert.ok(fired <= 8, `the tab's timers are throttled: a 50 ms chain fired ${fired} times in 3 s (60 unthrottled)`);

      const offline: OfflineEvent[] = [];
      gw.on('offline', (e) => offline.push(e));
      const opts = (deviceId: string, extra: string) => `{ url: ${JSON.stringify(url)}, userId: 'bg', deviceId: '${deviceId}', reconnect: { initialDelayMs: 200, maxDelayMs: 500 }${extra} }`;
      await tab.evaluate(`start('srv', ${opts('srv', '')})`);
      await tab.evaluate(`start('cli', ${opts('cli', ", direction: 'client', intervalMs: 300")})`);
      const srvConn = gw.connection('bg', 'srv')!.connectionId;
      await sleep(6000);

      const convicted = offline.filter((e) => e.deviceId === 'cli');
      assert.ok(convicted.length >= 1, 'the client-sent heartbeat, late on throttled timers, was convicted');
      assert.ok(convicted.every((e) => e.reason === 'heartbeat-timeout' && e.initiator === 'gateway'), JSON.stringify(convicted.map((e) => [e.reason, e.initiator])));
      assert.deepEqual(offline.filter((e) => e.deviceId === 'srv'), [], 'the server-sent heartbeat kept the hidden tab connected');
      const srv = gw.connection('bg', 'srv')!;
      assert.equal(srv.connectionId, srvConn, 'on the same connection throughout');
      assert.ok(srv.stats.pingsOut >= 10, `answered ${srv.stats.pingsOut} PINGs`);
      assert.equal(srv.stats.pingsIn, 0);

      // Shown again: the client checks its link at once.
      await tab.show();
      await until('visibility', async () => (await tab.evaluate('document.visibilityState')) === 'visible', 3000);
      await until('a check PING after the tab was shown', () => (gw.connection('bg', 'srv')?.stats.pingsIn ?? 0) >= 1, 3000);
      assert.ok((await tab.evaluate<{ visible: number }>('clients.srv.pageStats')).visible >= 1);
      await tab.evaluate('clients.srv.close(); clients.cli.close()');
      await waitEvent(gw, 'offline', (e: OfflineEvent) => e.deviceId === 'srv', 3000).catch(() => {});
    } finally {
      await tab.close();
      await site.close();
      await gw.close();
    }
  });

  test('a tab shown again and again (Ctrl+Tab held, a flapping network) checks its link at a pace the gateway allows: not closed as too-many-pings', async (t) => {
    const exe = chromiumOrSkip(t);
    if (!exe) return;
    // The gateway's default policy and PING pace: one a second on average (a fifth of the 5 s
    // shortest interval), bursts of 20. Each check the page asks for is one PING.
    const gw = new Gateway({ tcp: false, ws: { port: 0 }, heartbeat: { intervalMs: 30_000 }, wheelTickMs: 10 });
    const a = await gw.listen();
    const url = `ws://127.0.0.1:${a.ws!.port}/longlink`;
    const site = await servePage(PAGE);
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: exe });
    try {
      const page = await browser.newPage();
      await page.goto(site.url);
      const offline: OfflineEvent[] = [];
      gw.on('offline', (e) => offline.push(e));
      await page.evaluate((u) => (window as any).start('v', { url: u, userId: 'web', deviceId: 'tabs' }), url);
      const connId = gw.connection('web', 'tabs')!.connectionId;
      // Shown 30 times a second for 2 s, as a held Ctrl+Tab between two tabs does, each an answered check on loopback.
      await page.evaluate(() => new Promise<void>((r) => {
        let n = 0;
        const f = () => {
          document.dispatchEvent(new Event('visibilitychange'));
          if (++n < 60) setTimeout(f, 33);
          else r();
        };
        f();
      }));
      await sleep(1500);
      assert.equal((await page.evaluate(() => (window as any).clients.v.pageStats)).visible, 60);
      assert.deepEqual(offline.map((e) => [e.reason, e.code]), [], 'the link was not closed');
      assert.equal(gw.connection('web', 'tabs')?.connectionId, connId, 'on the same connection throughout');
      const pings = gw.connection('web', 'tabs')!.stats.pingsIn;
      assert.ok(pings >= 1 && pings <= 4, `the first check went at once, the rest coalesced (${pings} PINGs)`);
      assert.deepEqual(await page.evaluate(() => (window as any).events('v', 'close')), []);
      await page.evaluate(() => (window as any).clients.v.close());
    } finally {
      await browser.close();
      await site.close();
      await gw.close();
    }
  });

  test('a tab shown again and again while the gateway is away dials at most once a second, not on every show', async (t) => {
    const exe = chromiumOrSkip(t);
    if (!exe) return;
    const { gw, url } = await gateway({ intervalMs: 5000 });
    const site = await servePage(PAGE);
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: exe });
    try {
      const page = await browser.newPage();
      await page.goto(site.url);
      // A long backoff: every dial in the storm below is one a page signal started.
      await page.evaluate((u) => (window as any).start('s', { url: u, userId: 'web', deviceId: 'storm', reconnect: { initialDelayMs: 30_000, minDelayMs: 30_000, maxDelayMs: 30_000 } }), url);
      await page.evaluate(() => (window as any).clients.s.on('connecting', () => (window as any).log.push({ name: 's', type: 'dial', t: performance.now() })));
      await gw.close();
      await until('reconnecting', async () => (await page.evaluate(() => (window as any).events('s', 'reconnecting').length)) >= 1);
      // Shown 30 times a second for 2 s (Ctrl+Tab held) while nothing listens: each show may skip the backoff, but not each a dial.
      const dials = await page.evaluate(async () => {
        const from = (window as any).events('s', 'dial').length;
        await new Promise<void>((r) => {
          let n = 0;
          const f = () => {
            document.dispatchEvent(new Event('visibilitychange'));
            if (++n < 60) setTimeout(f, 33);
            else r();
          };
          f();
        });
        await new Promise((r) => setTimeout(r, 300));
        return (window as any).events('s', 'dial').slice(from).map((e: { t: number }) => e.t) as number[];
      });
      assert.ok(dials.length >= 1, 'the first show dialled at once');
      assert.ok(dials.length <= 4, `${dials.length} dials in about 2.3 s`);
      for (let i = 1; i < dials.length; i++) assert.ok(dials[i] - dials[i - 1] >= 950, `dials ${Math.round(dials[i] - dials[i - 1])} ms apart`);
      await page.evaluate(() => (window as any).clients.s.close());
    } finally {
      await browser.close();
      await site.close();
    }
  });

  test('a page put in the back/forward cache ends its link at once (the session kept), and resumes it when restored', async (t) => {
    const exe = chromiumOrSkip(t);
    if (!exe) return;
    // The silence limit is 11 s: a link the page left open is found only by it.
    const { gw, url } = await gateway({ intervalMs: 5000, missBudget: 2, graceMs: 1000 });
    const site = await servePage(PAGE);
    const { chromium } = await import('playwright-core');
    // Playwright turns the back/forward cache off by its default flags: Chromium's own defaults here.
    const profile = mkdtempSync(join(tmpdir(), 'll-chromium-'));
    const browser = await chromium.launch({ executablePath: exe, ignoreDefaultArgs: true, args: ['--headless=new', '--no-sandbox', '--remote-debugging-pipe', '--no-first-run', `--user-data-dir=${profile}`, 'about:blank'] });
    try {
      const page = await (await browser.newContext()).newPage();
      await page.goto(`${site.url}a`);
      await page.evaluate(() => {
        addEventListener('pagehide', (e) => (window as any).log.push({ name: 'page', type: 'pagehide', persisted: e.persisted }));
        addEventListener('pageshow', (e) => (window as any).log.push({ name: 'page', type: 'pageshow', persisted: e.persisted }));
      });
      await page.evaluate((u) => (window as any).start('bf', { url: u, userId: 'web', deviceId: 'bfcache', reconnect: { initialDelayMs: 30_000, minDelayMs: 30_000, maxDelayMs: 30_000 } }), url);
      const session = gw.connection('web', 'bfcache')!.sessionId;
      const offline: OfflineEvent[] = [];
      gw.on('offline', (e) => offline.push(e));

      await page.goto(`${site.url}b`);
      await until('the link to end', () => offline.length > 0, 3000).catch(() => {});
      assert.deepEqual(offline.map((e) => [e.reason, e.code]), [['client-close', 1000]], 'the page in the cache left no link open for the gateway to convict');
      assert.equal(gw.connection('web', 'bfcache'), undefined, 'the device is offline while its page is in the cache');

      await page.goBack({ waitUntil: 'commit' });
      await until('the page restored from the cache', async () => (await page.evaluate(() => (window as any).events('page', 'pageshow').some((e: { persisted: boolean }) => e.persisted)).catch(() => false)) === true);
      await until('the link back', () => gw.connection('web', 'bfcache') !== undefined, 5000);
      assert.equal(gw.connection('web', 'bfcache')!.sessionId, session, 'the same session, resumed');
      // The gateway registers the link before its WELCOME reaches the page, which then logs 'open'.
      await until("the page's second open", async () => ((await page.evaluate(() => (window as any).events('bf', 'open').length)) as number) >= 2, 5000).catch(() => {});
      const opens = (await page.evaluate(() => (window as any).events('bf', 'open'))) as { resumed: boolean }[];
      assert.deepEqual(opens.map((o) => o.resumed), [false, true]);
      assert.equal(offline.length, 1, 'and nothing convicted meanwhile');
      await page.evaluate(() => (window as any).clients.bf.close());
    } finally {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
      await site.close();
      await gw.close();
    }
  });

  test('close() ends the WebSocket cleanly: the gateway answers its close frame (code 1000, wasClean), and counts a client-close', async (t) => {
    const exe = chromiumOrSkip(t);
    if (!exe) return;
    const { gw, url } = await gateway({ intervalMs: 5000 });
    const site = await servePage(PAGE);
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: exe });
    try {
      const page = await browser.newPage();
      await page.goto(site.url);
      // Every WebSocket the page opens reports how it closed.
      await page.evaluate(() => {
        const W = window.WebSocket;
        (window as any).wsCloses = [];
        (window as any).WebSocket = class extends W {
          constructor(u: string | URL, p?: string | string[]) {
            super(u, p);
            this.addEventListener('close', (e) => (window as any).wsCloses.push({ code: e.code, wasClean: e.wasClean }));
          }
        };
      });
      await page.evaluate((u) => (window as any).start('c', { url: u, userId: 'web', deviceId: 'closer' }), url);
      const offline = waitEvent(gw, 'offline', () => true, 3000);
      await page.evaluate(() => (window as any).clients.c.close());
      const [e] = (await offline) as [OfflineEvent];
      assert.deepEqual([e.reason, e.code], ['client-close', 1000]);
      await until('the WebSocket closed', async () => (await page.evaluate(() => (window as any).wsCloses.length)) > 0, 3000);
      assert.deepEqual(await page.evaluate(() => (window as any).wsCloses), [{ code: 1000, wasClean: true }]);
    } finally {
      await browser.close();
      await site.close();
      await gw.close();
    }
  });
});
