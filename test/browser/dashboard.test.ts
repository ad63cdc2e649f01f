import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LonglinkClient, type CloseEvent } from '../../src/client/client.js';
import { dial } from '../../src/client/connect.js';
import { Gateway } from '../../src/gateway/gateway.js';
import { AdminServer } from '../../src/admin/admin-server.js';
import { FreezableLink } from '../../src/demo/freezable-link.js';
import { CloseCodes } from '../../src/protocol/errors.js';
import { sleep } from '../helpers/procs.js';
import { chromiumOrSkip, servePage } from '../helpers/browser.js';
import { RedisStore } from '../../src/gateway/stores/redis-store.js';
import { redisUnavailable, startRedis } from '../helpers/redis.js';

// The dashboard in real headless Chromium, served by the admin port of a real
// gateway, while real clients connect, go silent and drop.

const POLICY = { intervalMs: 300, minIntervalMs: 100, maxIntervalMs: 5000, missBudget: 2, graceMs: 200 };

type Browser = Awaited<ReturnType<(typeof import('playwright-core'))['chromium']['launch']>>;
interface Dash {
  gw: Gateway;
  /** The gateway's listening addresses. */
  a: Awaited<ReturnType<Gateway['listen']>>;
  /** The admin port: the page is at http://127.0.0.1:<port>/. */
  port: number;
  browser: Browser;
  /** Closed at the end. */
  clients: LonglinkClient[];
}

/**
 * A gateway, its admin port and a headless Chromium for one test (skipped without Chromium),
 * all closed after `body`, the clients it pushed to `clients` first.
 */
async function withDashboard(t: import('node:test').TestContext, gwOpts: ConstructorParameters<typeof Gateway>[0], adminOpts: { token?: string }, body: (d: Dash) => Promise<void>): Promise<void> {
  const exe = chromiumOrSkip(t);
  if (!exe) return;
  const gw = new Gateway(gwOpts);
  const a = await gw.listen();
  const admin = new AdminServer(gw, { port: 0, ...adminOpts });
  const port = (await admin.listen()).port;
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: exe });
  const clients: LonglinkClient[] = [];
  try {
    await body({ gw, a, port, browser, clients });
  } finally {
    for (const c of clients) c.close();
    await browser.close();
    await admin.close();
    await gw.close();
  }
}

describe('dashboard in Chromium', () => {
  test('live numbers, charts, detections with reasons, a connection timeline and a kick', async (t) => {
    const exe = chromiumOrSkip(t);
    if (!exe) return;
    const gw = new Gateway({ tcp: { port: 0 }, ws: { port: 0 }, heartbeat: POLICY, wheelTickMs: 10, probes: { pongTimeoutMs: 300, probeCount: 1, probeIntervalMs: 200 } });
    const a = await gw.listen();
    const admin = new AdminServer(gw, { port: 0, token: 'dash' });
    const port = (await admin.listen()).port;
    const tcpUrl = `tcp://127.0.0.1:${a.tcp!.port}`;
    const wsUrl = `ws://127.0.0.1:${a.ws!.port}/longlink`;
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: exe });
    const clients: LonglinkClient[] = [];
    const pageErrors: string[] = [];
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      page.on('pageerror', (e) => pageErrors.push(e.message));
      await page.goto(`http://127.0.0.1:${port}/?token=dash`);
      const text = (id: string) => page.getByTestId(id).first().textContent();
      const num = async (id: string) => Number(((await text(id)) ?? '').replace(/[^0-9.]/g, ''));
      await page.getByTestId('status').filter({ hasText: 'live' }).waitFor({ timeout: 5000 });
      assert.equal(await num('stat-online'), 0);
      const tiles = page.getByTestId('stat-online');
      const before = await tiles.screenshot();

      // Five devices connect, on both transports; two have the gateway send heartbeats (RTT).
      const frozen: FreezableLink[] = [];
      for (let i = 0; i < 5; i++) {
        const c = new LonglinkClient({
          url: i % 2 ? wsUrl : tcpUrl,
          userId: `u${i}`,
          deviceId: 'd',
          intervalMs: 150,
          direction: i < 2 ? 'server' : 'client',
          reconnect: { enabled: false },
          dial: async (u, o) => {
            const l = new FreezableLink(await dial(u, o));
            frozen[i] = l;
            return l;
          },
        });
        clients.push(c);
        await c.connect();
      }
      clients[0].updateState({ mood: 'busy' }, { flush: true });
      await page.waitForFunction(() => document.querySelector('[data-testid="stat-online"]')?.textContent?.trim() === '5', undefined, { timeout: 5000 });
      assert.equal(await num('stat-connections'), 5);
      assert.equal(await num('stat-users'), 5);
      const during = await tiles.screenshot();
      assert.notDeepEqual(during, before, 'the online tile, as drawn, changed when clients connected');
      await page.waitForFunction(() => Number(document.querySelector('[data-testid="stat-heartbeats"]')?.textContent?.replace(/[^0-9.]/g, '')) > 0, undefined, { timeout: 5000 });
      await page.waitForFunction(() => /\d/.test(document.querySelector('[data-testid="stat-rtt"]')?.textContent ?? ''), undefined, { timeout: 5000 });
      for (const id of ['chart-online', 'chart-heartbeats', 'chart-rtt']) {
        assert.ok((await page.getByTestId(id).locator('canvas').count()) >= 1, `${id} is drawn`);
      }
      await page.locator('[data-testid="connections"] tr').nth(4).waitFor({ timeout: 5000 });
      assert.equal(await page.locator('[data-testid="connections"] tr').count(), 5);

      // Two drop: one hangs (the detector convicts it), one closes its socket.
      frozen[3].frozen = true;
      frozen[4].destroy();
      await page.waitForFunction(() => document.querySelector('[data-testid="stat-online"]')?.textContent?.trim() === '3', undefined, { timeout: 5000 });
      await page.locator('[data-testid="detections"] tr[data-reason="heartbeat-timeout"]').waitFor({ timeout: 5000 });
      assert.equal(await page.locator('[data-testid="detections"] tr[data-reason="heartbeat-timeout"]').getAttribute('data-detection'), 'true');
      assert.equal(await page.locator('[data-testid="detections"] tr[data-reason="transport-close"]').count(), 1);
      assert.equal(await num('stat-detections'), 1);
      const after = await tiles.screenshot();
      assert.notDeepEqual(after, during, 'and changed again when they dropped');

      // The per-connection view of a server-heartbeat device: timeline, interval, RTT.
      const target = gw.connection('u0', 'd')!;
      await page.locator(`[data-testid="connections"] tr[data-connection-id="${target.connectionId}"]`).click();
      const view = page.getByTestId('connection-view');
      await view.waitFor({ state: 'visible', timeout: 3000 });
      await page.waitForFunction(() => /150/.test(document.querySelector('[data-testid="conn-interval"]')?.textContent ?? ''), undefined, { timeout: 3000 });
      await page.waitForFunction(() => /\d/.test(document.querySelector('[data-testid="conn-rtt"]')?.textContent ?? ''), undefined, { timeout: 3000 });
      assert.ok((await page.getByTestId('timeline-chart').locator('canvas').count()) >= 1);
      await sleep(1500);
      const timeline = await page.getByTestId('timeline-chart').screenshot();
      assert.ok(timeline.length > 1000);

      // Kick from the page.
      const closes: CloseEvent[] = [];
      clients[0].on('close', (e) => closes.push(e));
      await page.getByTestId('conn-kick').click();
      const deadline = Date.now() + 3000;
      while (closes.length === 0 && Date.now() < deadline) await sleep(50);
      assert.equal(closes[0]?.code, CloseCodes.kicked);
      await page.getByTestId('conn-gone').waitFor({ state: 'visible', timeout: 4000 });
      await page.waitForFunction(() => document.querySelector('[data-testid="stat-online"]')?.textContent?.trim() === '2', undefined, { timeout: 5000 });
      await page.locator('[data-testid="detections"] tr[data-reason="kicked"]').waitFor({ timeout: 3000 });
      assert.deepEqual(pageErrors, [], 'no script errors in the page');
    } catch (err) {
      // What the page showed when it failed, for whoever reads the CI log.
      const shot = `/tmp/longlink-dashboard-failure-${process.pid}.png`;
      await browser.contexts()[0]?.pages()[0]?.screenshot({ path: shot, fullPage: true }).catch(() => {});
      throw Object.assign(err as Error, { message: `${(err as Error).message} (screenshot: ${shot}; page errors: ${JSON.stringify(pageErrors)})` });
    } finally {
      for (const c of clients) c.close();
      await browser.close();
      await admin.close();
      await gw.close();
    }
  });

  test('the connections table keeps refreshing while devices come and go faster than its refresh delay', async (t) => {
    let churning = true;
    let churn: Promise<void> = Promise.resolve();
    await withDashboard(t, { tcp: { port: 0 }, ws: false, heartbeat: POLICY, wheelTickMs: 10 }, { token: 'dash' }, async ({ a, port, browser, clients }) => {
      const url = `tcp://127.0.0.1:${a.tcp!.port}`;
      try {
        const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
        await page.goto(`http://127.0.0.1:${port}/?token=dash`);
        await page.getByTestId('status').filter({ hasText: 'live' }).waitFor({ timeout: 5000 });
        // A device connects and leaves every ~60 ms: each online and offline notice asks the table
        // to refresh in 250 ms, and each used to push that refresh back again, so it never came.
        churn = (async () => {
          for (let i = 0; churning; i++) {
            const c = new LonglinkClient({ url, userId: `churn${i}`, deviceId: 'd', intervalMs: 150, reconnect: { enabled: false } });
            await c.connect().catch(() => {});
            c.close();
            await sleep(30);
          }
        })();
        let lists = 0;
        page.on('request', (r) => {
          if (new URL(r.url()).pathname === '/api/connections') lists++;
        });
        await sleep(3000);
        // The table polls every 2 s; the notices bring a refresh forward, at most once a second.
        assert.ok(lists >= 2 && lists <= 5, `the page asked for the connection list ${lists} times in 3 s of churn`);
        const late = new LonglinkClient({ url, userId: 'late-arrival', deviceId: 'd', intervalMs: 150, reconnect: { enabled: false } });
        clients.push(late);
        await late.connect();
        const row = page.locator('[data-testid="connections"] td', { hasText: 'late-arrival' });
        await row.first().waitFor({ timeout: 5000 });
      } finally {
        churning = false;
        await churn;
      }
    });
  });

  test('the admin token stays out of the URLs the page sends: its event stream carries a key that opens only the stream', async (t) => {
    await withDashboard(t, { tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 10 }, { token: 'dash-secret' }, async ({ port, browser }) => {
      const admin = `http://127.0.0.1:${port}`;
      const open = async (address: string): Promise<string[]> => {
        const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
        const sent: string[] = [];
        page.on('request', (r) => sent.push(r.url()));
        await page.goto(address);
        await page.getByTestId('status').filter({ hasText: 'live' }).waitFor({ timeout: 5000 });
        await page.close();
        return sent;
      };
      // Opened the old way, with the token in the query: the stream's URL (logged by any proxy on
      // the way, every reconnection) held the admin token itself, which kicks and drains by header.
      const stream = (await open(`${admin}/?token=dash-secret`)).find((u) => new URL(u).pathname === '/api/events')!;
      assert.ok(stream, 'the page opened its event stream');
      assert.ok(!stream.includes('dash-secret'), `the event stream's URL carries the admin token: ${stream}`);
      const key = new URL(stream).searchParams.get('token') ?? '';
      const kick = await fetch(`${admin}/api/kick`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{"userId":"u"}' });
      assert.equal(kick.status, 401, "the key in the stream's URL opens only the stream");
      assert.equal((await fetch(`${admin}/api/overview?token=${encodeURIComponent(key)}`)).status, 401);
      // Opened with the token in the fragment, which the browser never sends: no URL carries it.
      const sent = await open(`${admin}/#token=dash-secret`);
      assert.deepEqual(sent.filter((u) => u.includes('dash-secret')), [], 'no request URL carries the token');
      // Nor does the address the browser keeps in its history, either way it was given; a reload
      // (the token kept for the tab, in sessionStorage) is still live, and another node's view keeps the rest of the address.
      for (const given of [`${admin}/#token=dash-secret`, `${admin}/?token=dash-secret`, `${admin}/?node=other#token=dash-secret`]) {
        const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
        await page.goto(given);
        await page.waitForFunction(() => !location.href.includes('dash-secret'), undefined, { timeout: 5000 }).catch(async () => {
          assert.fail(`the address still holds the token: ${page.url()} (opened as ${given})`);
        });
        // about:blank, then the dashboard: the address was replaced, not pushed as a third entry.
        assert.equal(await page.evaluate(() => history.length), 2, 'the address was replaced, not pushed');
        if (given.includes('node=other')) assert.equal(new URL(page.url()).search, '?node=other');
        else {
          await page.getByTestId('status').filter({ hasText: 'live' }).waitFor({ timeout: 5000 });
          await page.reload();
          await page.getByTestId('status').filter({ hasText: 'live' }).waitFor({ timeout: 5000 });
          assert.ok(!page.url().includes('dash-secret'), page.url());
        }
        await page.close();
      }
      // A fresh tab without the token is not let in: the reload above was live by the kept token.
      const bare = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      await bare.goto(`${admin}/`);
      await bare.getByTestId('status').filter({ hasText: 'token refused' }).waitFor({ timeout: 5000 });
      await bare.close();
    });
  });

  test('another site cannot frame the dashboard (its Kick button clicked through a decoy on top)', async (t) => {
    await withDashboard(t, { tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 10 }, {}, async ({ port, browser }) => {
      // Without a token the loopback dashboard needs no credential: any page its operator visits
      // could load it in a frame, under a transparent decoy, and have a row and Kick clicked.
      const site = await servePage(`<iframe id="f" src="http://127.0.0.1:${port}/" width="1200" height="800"></iframe>`);
      try {
        const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
        // localhost: another origin than the dashboard's 127.0.0.1.
        await page.goto(site.url.replace('127.0.0.1', 'localhost'));
        await sleep(1500);
        const framed = page.frames().find((f) => f.url().startsWith(`http://127.0.0.1:${port}`));
        const live = framed ? await framed.evaluate(() => document.querySelector('[data-testid="status"]')?.textContent ?? null).catch(() => null) : null;
        assert.equal(live, null, `the dashboard ran in another site's frame (status: ${live})`);
      } finally {
        await site.close();
      }
    });
  });

  test("the charts go on after the gateway's wall clock is stepped back", async (t) => {
    let skewMs = 0;
    await withDashboard(t, { tcp: { port: 0 }, ws: false, heartbeat: POLICY, wheelTickMs: 10, wallClock: { now: () => Date.now() + skewMs } }, {}, async ({ a, port, browser, clients }) => {
      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      await page.goto(`http://127.0.0.1:${port}/`);
      await page.getByTestId('status').filter({ hasText: 'live' }).waitFor({ timeout: 5000 });
      const charted = () => page.evaluate(() => document.querySelector('#legend-online b')?.textContent?.trim());
      await page.waitForFunction(() => document.querySelector('#legend-online b')?.textContent?.trim() === '0', undefined, { timeout: 5000 });
      // NTP steps the gateway's clock back an hour; then a device connects.
      skewMs = -3_600_000;
      await sleep(1200);
      const c = new LonglinkClient({ url: `tcp://127.0.0.1:${a.tcp!.port}`, userId: 'u', deviceId: 'd', intervalMs: 150, reconnect: { enabled: false } });
      clients.push(c);
      await c.connect();
      await page.waitForFunction(() => document.querySelector('[data-testid="stat-online"]')?.textContent?.trim() === '1', undefined, { timeout: 5000 });
      await page.waitForFunction(() => document.querySelector('#legend-online b')?.textContent?.trim() === '1', undefined, { timeout: 3000 }).catch(async () => {
        assert.fail(`the online chart still shows ${await charted()} devices, not the 1 of the tiles`);
      });
      // A page opened now gets the history, before and after the step, and charts the latest too.
      const fresh = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      await fresh.goto(`http://127.0.0.1:${port}/`);
      await fresh.waitForFunction(() => document.querySelector('#legend-online b')?.textContent?.trim() === '1', undefined, { timeout: 5000 });
    });
  });

  test('a page open across a gateway restart reconnects and shows the new gateway, not the old numbers', async (t) => {
    const exe = chromiumOrSkip(t);
    if (!exe) return;
    const start = async (adminPort: number) => {
      const gw = new Gateway({ tcp: { port: 0 }, ws: false, heartbeat: POLICY, wheelTickMs: 10, nodeId: `node-${adminPort}` });
      const a = await gw.listen();
      const admin = new AdminServer(gw, { port: adminPort });
      const port = (await admin.listen()).port;
      return { gw, admin, port, url: `tcp://127.0.0.1:${a.tcp!.port}` };
    };
    let node = await start(0);
    const port = node.port;
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: exe });
    const clients: LonglinkClient[] = [];
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      await page.goto(`http://127.0.0.1:${port}/`);
      await page.getByTestId('status').filter({ hasText: 'live' }).waitFor({ timeout: 5000 });
      for (let i = 0; i < 2; i++) {
        const c = new LonglinkClient({ url: node.url, userId: `u${i}`, deviceId: 'd', intervalMs: 150, reconnect: { enabled: false } });
        clients.push(c);
        await c.connect();
      }
      await page.waitForFunction(() => document.querySelector('[data-testid="stat-online"]')?.textContent?.trim() === '2', undefined, { timeout: 5000 });
      await page.locator('[data-testid="connections"] tr').nth(1).waitFor({ timeout: 5000 });
      // The gateway restarts on the same admin port; its devices are gone.
      await node.admin.close();
      await node.gw.close();
      await page.getByTestId('status').filter({ hasText: 'reconnecting' }).waitFor({ timeout: 5000 });
      node = await start(port);
      await page.getByTestId('status').filter({ hasText: 'live' }).waitFor({ timeout: 15_000 });
      await page.waitForFunction(() => document.querySelector('[data-testid="stat-online"]')?.textContent?.trim() === '0', undefined, { timeout: 5000 });
      await page.waitForFunction(() => document.querySelector('#legend-online b')?.textContent?.trim() === '0', undefined, { timeout: 5000 });
      await page.waitForFunction(() => document.querySelectorAll('[data-testid="connections"] tr').length === 0, undefined, { timeout: 5000 });
      assert.equal((await page.locator('#hdr-node').textContent())?.trim(), `node-${port}`);
      // And it follows the new gateway from there.
      const c = new LonglinkClient({ url: node.url, userId: 'again', deviceId: 'd', intervalMs: 150, reconnect: { enabled: false } });
      clients.push(c);
      await c.connect();
      await page.waitForFunction(() => document.querySelector('[data-testid="stat-online"]')?.textContent?.trim() === '1', undefined, { timeout: 5000 });
    } finally {
      for (const c of clients) c.close();
      await browser.close();
      await node.admin.close();
      await node.gw.close();
    }
  });

  test('a gateway restarted with another admin token: the page says its token is refused, not "reconnecting" for ever', async (t) => {
    const exe = chromiumOrSkip(t);
    if (!exe) return;
    const start = async (adminPort: number, token: string) => {
      const gw = new Gateway({ tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 10 });
      await gw.listen();
      const admin = new AdminServer(gw, { port: adminPort, token });
      return { gw, admin, port: (await admin.listen()).port };
    };
    let node = await start(0, 'first-token');
    const port = node.port;
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: exe });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      await page.goto(`http://127.0.0.1:${port}/#token=first-token`);
      await page.getByTestId('status').filter({ hasText: 'live' }).waitFor({ timeout: 5000 });
      await node.admin.close();
      await node.gw.close();
      node = await start(port, 'second-token');
      await page.getByTestId('status').filter({ hasText: 'token refused' }).waitFor({ timeout: 15_000 });
      assert.equal(await page.getByTestId('status').getAttribute('data-state'), 'token refused');
      // Given the new token, the page is live again.
      await page.goto(`http://127.0.0.1:${port}/#token=second-token`);
      await page.getByTestId('status').filter({ hasText: 'live' }).waitFor({ timeout: 5000 });
    } finally {
      await browser.close();
      await node.admin.close();
      await node.gw.close();
    }
  });

  test('the RTT tile says how far back its samples go when the gateway keeps less than a minute', async (t) => {
    await withDashboard(t, { tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 10 }, {}, async ({ gw, port, browser }) => {
      const rtt = () => gw.emit('rtt', { userId: 'u', deviceId: 'd', connectionId: 'c', transport: 'tcp', sampleMs: 3 } as never);
      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      await page.goto(`http://127.0.0.1:${port}/`);
      await page.getByTestId('status').filter({ hasText: 'live' }).waitFor({ timeout: 5000 });
      for (let i = 0; i < 10; i++) rtt();
      await page.waitForFunction(() => document.querySelector('#sub-rtt')?.textContent === '10 samples · 1 min', undefined, { timeout: 5000 });
      // A busy gateway: more than the 20,000 samples kept, within a second or two.
      for (let i = 0; i < 25_000; i++) rtt();
      await page.waitForFunction(() => document.querySelector('#sub-rtt')?.textContent?.startsWith('20,000 samples'), undefined, { timeout: 5000 });
      const sub = (await page.locator('#sub-rtt').textContent()) ?? '';
      assert.match(sub, /^20,000 samples · last \d/, `not "1 min": the samples kept cover a second or so (${sub})`);
    });
  });

  test('after a storm of disconnections, more than the stream carries, the recent list is the gateway\'s latest', async (t) => {
    await withDashboard(t, { tcp: false, ws: false, heartbeat: POLICY, wheelTickMs: 10 }, {}, async ({ gw, port, browser }) => {
      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      await page.goto(`http://127.0.0.1:${port}/`);
      await page.getByTestId('status').filter({ hasText: 'live' }).waitFor({ timeout: 5000 });
      // 150 disconnections at once: the stream carries 100 notices a tick.
      for (let i = 0; i < 150; i++) {
        gw.emit('offline', { userId: `storm${i}`, deviceId: 'd', connectionId: `c${i}`, transport: 'tcp', reason: 'transport-close', code: 4000, initiator: 'peer', silentForMs: 0 } as never);
      }
      await page.locator('[data-testid="detections"] tr').nth(49).waitFor({ timeout: 5000 });
      await page.locator('[data-testid="detections"] td', { hasText: /^storm149$/ }).first().waitFor({ timeout: 3000 });
      const users = await page.locator('[data-testid="detections"] tr td:nth-child(2)').allTextContents();
      assert.deepEqual(users, Array.from({ length: 50 }, (_, k) => `storm${149 - k}`), 'the latest 50, newest first');
    });
  });

  test('one page, the whole cluster or one node: two nodes on Redis, the cluster panel, another node read through this one, a kick across nodes', async (t) => {
    const exe = chromiumOrSkip(t);
    if (!exe) return;
    const noRedis = redisUnavailable();
    if (noRedis) return t.skip(`skipped: ${noRedis}`);
    const redis = await startRedis();
    const made = await Promise.all(
      ['node-a', 'node-b'].map(async (nodeId) => {
        const store = new RedisStore({ url: redis.url, prefix: 'dash:', leaseTtlMs: 3000, leaseRenewMs: 1000 });
        const gw = new Gateway({ tcp: { port: 0 }, ws: false, heartbeat: POLICY, wheelTickMs: 10, nodeId, store });
        const a = await gw.listen();
        const admin = new AdminServer(gw, { port: 0, token: 'dash' });
        const port = (await admin.listen()).port;
        return { gw, store, admin, port, url: `tcp://127.0.0.1:${a.tcp!.port}` };
      }),
    );
    const [A, B] = made;
    const clients = [
      new LonglinkClient({ url: A.url, userId: 'ua', deviceId: 'd', intervalMs: 300 }),
      new LonglinkClient({ url: B.url, userId: 'ub1', deviceId: 'd', intervalMs: 300 }),
      new LonglinkClient({ url: B.url, userId: 'ub2', deviceId: 'd', intervalMs: 300 }),
    ];
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: exe });
    const pageErrors: string[] = [];
    try {
      await Promise.all(clients.map((c) => c.connect()));
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      page.on('pageerror', (e) => pageErrors.push(e.message));
      await page.goto(`http://127.0.0.1:${A.port}/?token=dash`);
      // The whole cluster: both nodes, each with its own numbers, and the sums.
      await page.getByTestId('cluster').waitFor({ state: 'visible', timeout: 8000 });
      await page.locator('[data-testid="cluster"] tr[data-node="node-b"]').waitFor({ timeout: 5000 });
      await page.waitForFunction(() => document.querySelector('[data-testid="cluster-connections"]')?.textContent?.trim() === '3', undefined, { timeout: 8000 });
      assert.equal((await page.getByTestId('cluster-devices').textContent())?.trim(), '3');
      assert.equal(await page.getByTestId('stat-online').textContent().then((x) => x?.trim()), '1', "the tiles are this node's");
      // One node: B, read through A's admin port (its event stream too).
      await page.locator('[data-testid="cluster"] tr[data-node="node-b"] a').click();
      await page.waitForURL(/node=node-b/);
      await page.getByTestId('status').filter({ hasText: 'live' }).waitFor({ timeout: 5000 });
      await page.waitForFunction(() => document.querySelector('[data-testid="stat-online"]')?.textContent?.trim() === '2', undefined, { timeout: 5000 });
      assert.equal((await page.locator('#hdr-node').textContent())?.trim(), 'node-b');
      assert.match((await page.getByTestId('view-scope').textContent()) ?? '', /viewing node node-b through node-a/);
      await page.locator('[data-testid="connections"] tr').nth(1).waitFor({ timeout: 5000 });
      assert.equal(await page.locator('[data-testid="connections"] tr').count(), 2);
      // B's device goes: B's stream, through A, shows it in the page.
      clients[2].close();
      await page.waitForFunction(() => document.querySelector('[data-testid="stat-online"]')?.textContent?.trim() === '1', undefined, { timeout: 5000 });
      // The count comes by the event stream, the table by its poll: wait for the table to drop the gone row too.
      await page.waitForFunction(() => document.querySelectorAll('[data-testid="connections"] tr').length === 1, undefined, { timeout: 5000 });
      // A kick from B's view, sent to A, closes the device on B.
      const closes: CloseEvent[] = [];
      clients[1].on('close', (e) => closes.push(e));
      await page.locator('[data-testid="connections"] tr').first().click();
      await page.getByTestId('conn-kick').click();
      const deadline = Date.now() + 5000;
      while (closes.length === 0 && Date.now() < deadline) await sleep(50);
      assert.equal(closes[0]?.code, CloseCodes.kicked);
      assert.deepEqual(pageErrors, [], 'no script errors in the page');
    } catch (err) {
      const shot = `/tmp/longlink-dashboard-cluster-failure-${process.pid}.png`;
      await browser.contexts()[0]?.pages()[0]?.screenshot({ path: shot, fullPage: true }).catch(() => {});
      throw Object.assign(err as Error, { message: `${(err as Error).message} (screenshot: ${shot}; page errors: ${JSON.stringify(pageErrors)})` });
    } finally {
      for (const c of clients) c.close();
      await browser.close();
      for (const m of made) {
        await m.admin.close();
        await m.gw.close();
        await m.store.close();
      }
      await redis.stop();
    }
  });
});
