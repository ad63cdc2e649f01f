import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { describe, test } from 'node:test';
import { LonglinkClient, type CloseEvent } from '../../src/client/client.js';
import { dial } from '../../src/client/connect.js';
import { Gateway, type OfflineEvent, type ReplacedEvent } from '../../src/gateway/gateway.js';
import { AdminServer, PEER_STALL_MS, streamKey } from '../../src/admin/admin-server.js';
import { MemoryStore } from '../../src/gateway/stores/memory-store.js';
import type { ConnectionDetail, ConnectionsPage, ConnectionView, Snapshot, Tick } from '../../src/admin/api-types.js';
import { FreezableLink } from '../../src/demo/freezable-link.js';
import { CutLink } from '../helpers/cut-link.js';
import { CloseCodes } from '../../src/protocol/errors.js';
import { sleep, waitEvent } from '../helpers/procs.js';
import type { Logger } from 'pino';

// The admin port over real loopback: metrics, the JSON API, the event stream,
// with real clients whose heartbeats, detections and kicks it must report.

const POLICY = { intervalMs: 300, minIntervalMs: 100, maxIntervalMs: 5000, missBudget: 2, graceMs: 200 };

async function setup(token?: string) {
  const gw = new Gateway({ tcp: { port: 0 }, ws: { port: 0 }, heartbeat: POLICY, wheelTickMs: 10, handshakeTimeoutMs: 400, probes: { pongTimeoutMs: 300, probeCount: 1, probeIntervalMs: 200 } });
  const a = await gw.listen();
  const admin = new AdminServer(gw, { port: 0, ...(token ? { token } : {}) });
  const port = (await admin.listen()).port;
  const urls = { tcp: `tcp://127.0.0.1:${a.tcp!.port}`, ws: `ws://127.0.0.1:${a.ws!.port}/longlink` };
  const close = async () => {
    await admin.close();
    await gw.close();
  };
  return { gw, admin, port, urls, close };
}

interface Reply {
  status: number;
  body: string;
  json: () => any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

function http(port: number, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: text, json: () => JSON.parse(text) }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(typeof body === 'string' ? body : JSON.stringify(body));
    req.end();
  });
}

/** The value of one sample line of the exposition text (labels exactly as written), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function eventually<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('admin port', () => {
  test('a refused request whose body is still coming is answered once the body is in: the client reads its 401 or 413, not a reset', async () => {
    const { port, close } = await setup('s3cret');
    const auth = { authorization: 'Bearer s3cret' };
    try {
      // Written whole before the answer is read: with the answer sent mid-upload and the socket
      // closed, these were ECONNRESET or EPIPE on the client, never the answer.
      const cases: [string, string, string, Record<string, string>, number, string][] = [
        ['the server API, 6 MiB with its length', '/v1/push', 'x'.repeat(6 << 20), { ...auth, 'content-length': String(6 << 20) }, 413, 'LL_ERR_TOO_LARGE'],
        ['the server API, 3 MiB chunked', '/v1/push', 'y'.repeat(3 << 20), auth, 413, 'LL_ERR_TOO_LARGE'],
        ['a dashboard action, 2 MiB', '/api/kick', 'z'.repeat(2 << 20), auth, 413, 'LL_ERR_TOO_LARGE'],
        ['no token, 4 MiB', '/api/kick', 'w'.repeat(4 << 20), {}, 401, 'LL_ERR_UNAUTHORIZED'],
      ];
      for (const [what, path, body, headers, status, code] of cases) {
        for (let i = 0; i < 3; i++) {
          const r = await http(port, 'POST', path, body, headers).catch((err: Error) => assert.fail(`${what}: ${err.message}, not the ${status}`));
          assert.equal(r.status, status, what);
          assert.equal(r.json().error.code, code, what);
        }
      }
      // Past what is read and dropped (8 MiB), the answer goes and the socket closes; the port serves on.
      // (A raw socket: Node's client hands a socket whose answer came back to its agent while the body
      // is still being written, and the write's EPIPE then has no listener.)
      const big = connect(port, '127.0.0.1');
      let answer = '';
      big.on('data', (d) => (answer += d));
      big.on('error', () => {});
      big.write(`POST /api/kick HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer s3cret\r\ncontent-type: application/json\r\ncontent-length: ${9 << 20}\r\n\r\n`);
      big.write(Buffer.alloc(9 << 20, 0x76));
      await new Promise((r) => big.once('close', r));
      assert.match(answer, /^HTTP\/1\.1 413 /);
      assert.equal((await http(port, 'GET', '/api/overview', undefined, auth)).status, 200);
    } finally {
      await close();
    }
  });

  test('metrics count connections by transport, heartbeats, RTT, detections and delivery', async () => {
    const { gw, port, urls, close } = await setup();
    const tcp = new LonglinkClient({ url: urls.tcp, userId: 'ann', deviceId: 'phone', intervalMs: 150 });
    const ws = new LonglinkClient({ url: urls.ws, userId: 'ann', deviceId: 'tab', direction: 'server', intervalMs: 150 });
    let frozen: FreezableLink | null = null;
    const hung = new LonglinkClient({
      url: urls.tcp,
      userId: 'bob',
      deviceId: 'phone',
      intervalMs: 150,
      reconnect: { enabled: false },
      dial: async (u, o) => (frozen = new FreezableLink(await dial(u, o))),
    });
    await Promise.all([tcp.connect(), ws.connect(), hung.connect()]);
    await sleep(700);
    let m = (await http(port, 'GET', '/metrics')).body;
    assert.equal(sample(m, 'longlink_connections{transport="tcp"}'), 2);
    assert.equal(sample(m, 'longlink_connections{transport="ws"}'), 1);
    assert.equal(sample(m, 'longlink_online_devices'), 3);
    assert.equal(sample(m, 'longlink_online_users'), 2);
    assert.ok(sample(m, 'longlink_heartbeats_total{direction="in"}')! >= 4, 'client-sent heartbeats counted');
    assert.ok(sample(m, 'longlink_heartbeats_total{direction="out"}')! >= 2, 'server-sent heartbeats counted');
    assert.ok(sample(m, 'longlink_heartbeat_rtt_seconds_count')! >= 2, 'RTT of server-sent heartbeats observed');
    assert.equal(sample(m, 'longlink_wheel_timers'), 3, 'one deadline per connection on the wheel');
    const ticks = sample(m, 'longlink_wheel_ticks_total')!;
    const arms = sample(m, 'longlink_timer_arms_total')!;
    assert.ok(ticks > 0 && arms > 0 && arms <= ticks * 2 + 5, `runner arms ${arms} for ${ticks} wheel ticks`);
    assert.match(m, /^process_cpu_seconds_total /m, 'process metrics too');
    assert.match(m, /^longlink_event_loop_delay_seconds\{quantile="0.99"\} /m);
    assert.match(m, /^longlink_gc_pause_longest_seconds [0-9.e+-]+$/m);
    assert.match(m, /^longlink_gc_pauses [0-9]+$/m);
    assert.match(m, /^longlink_gc_pause_time_seconds [0-9.e+-]+$/m);

    // Delivery latency and outcome.
    const r = await gw.push('ann', 'hello');
    assert.equal(r.devices.filter((d) => d.status === 'delivered').length, 2);
    m = (await http(port, 'GET', '/metrics')).body;
    assert.equal(sample(m, 'longlink_push_total'), 1);
    assert.equal(sample(m, 'longlink_push_outcomes_total{outcome="delivered"}'), 2);
    assert.equal(sample(m, 'longlink_push_delivery_seconds_count'), 2);
    assert.equal(sample(m, 'longlink_queued_messages'), 0, 'acknowledged messages leave the mailbox');

    // A hung app: the detector closes it; the detection and its time are counted.
    frozen!.frozen = true;
    const [off] = (await waitEvent(gw, 'offline', (e: OfflineEvent) => e.userId === 'bob', 3000)) as [OfflineEvent];
    assert.equal(off.reason, 'heartbeat-timeout');
    assert.equal(off.initiator, 'gateway');
    m = (await http(port, 'GET', '/metrics')).body;
    assert.equal(sample(m, 'longlink_detections_total{reason="heartbeat-timeout"}'), 1);
    assert.equal(sample(m, 'longlink_disconnects_total{reason="heartbeat-timeout"}'), 1);
    assert.equal(sample(m, 'longlink_detection_seconds_count{reason="heartbeat-timeout"}'), 1);
    const detectSecs = sample(m, 'longlink_detection_seconds_sum{reason="heartbeat-timeout"}')!;
    assert.ok(detectSecs >= 0.3 && detectSecs < 1.5, `detection time is the silence before the close (${detectSecs} s)`);
    assert.ok(sample(m, 'longlink_suspicions_total')! >= 1, 'the silence was suspected (a probe) before the close');
    assert.ok(sample(m, 'longlink_frames_total{direction="in"}')! > sample(m, 'longlink_heartbeats_total{direction="in"}')!, 'frames include HELLO and DATA');
    assert.equal(sample(m, 'longlink_unacked_messages'), 0);
    assert.equal(sample(m, 'longlink_write_stalled_connections'), 0);
    assert.equal(sample(m, 'longlink_queued_bytes'), 0);

    // Bad input: counted by its error code.
    const garbage = connect(Number(new URL(urls.tcp).port), '127.0.0.1', () => garbage.write(Buffer.from([0x02, 0x63, 0x00])));
    garbage.on('error', () => {});
    await eventually('the protocol error counted', async () => sample((await http(port, 'GET', '/metrics')).body, 'longlink_protocol_errors_total{code="LL_ERR_UNKNOWN_FRAME"}') === 1);
    garbage.destroy();
    tcp.close();
    ws.close();
    hung.close();
    await close();
  });

  test('a socket that never says HELLO is counted as a handshake timeout, not an offline device', async () => {
    const { port, urls, close } = await setup();
    const silent = connect(Number(new URL(urls.tcp).port), '127.0.0.1');
    silent.on('error', () => {});
    await eventually('the handshake timeout', async () => sample((await http(port, 'GET', '/metrics')).body, 'longlink_handshake_timeouts_total') === 1, 3000);
    const m = (await http(port, 'GET', '/metrics')).body;
    assert.equal(sample(m, 'longlink_disconnects_total{reason="handshake-timeout"}'), undefined, 'no device went offline');
    silent.destroy();
    await close();
  });

  test('a link that dies unnoticed and is replaced by the client\'s resumed reconnect is counted, with its silence, in metrics and the live feed', async () => {
    // The gateway's own deadline is far (4 intervals + grace = 1.4 s): the client finds the dead link first
    // (no PONG in 150 ms) and resumes on a new one, as behind a NAT that dropped the mapping.
    const gw = new Gateway({ tcp: { port: 0 }, ws: false, heartbeat: { ...POLICY, missBudget: 4 }, wheelTickMs: 10 });
    const a = await gw.listen();
    const admin = new AdminServer(gw, { port: 0 });
    const port = (await admin.listen()).port;
    const replaced: ReplacedEvent[] = [];
    gw.on('replaced', (e) => replaced.push(e));
    const offline: OfflineEvent[] = [];
    gw.on('offline', (e) => offline.push(e));
    const links: CutLink[] = [];
    const c = new LonglinkClient({
      url: `tcp://127.0.0.1:${a.tcp!.port}`,
      userId: 'nat',
      deviceId: 'phone',
      intervalMs: 300,
      adaptive: false,
      probes: { pongTimeoutMs: 150, probeCount: 0, probeIntervalMs: 100 },
      reconnect: { initialDelayMs: 50, minDelayMs: 50, maxDelayMs: 100 },
      dial: async (u, o) => {
        // The reconnect waits a little: the old link has then been silent past its interval and grace (500 ms).
        if (links.length > 0) await sleep(400);
        const l = new CutLink(await dial(u, o));
        links.push(l);
        return l;
      },
    });
    try {
      await c.connect();
      await sleep(400);
      links[0].cut = true; // the path drops everything both ways, closes included; both apps run on
      const [e] = (await waitEvent(gw, 'replaced', () => true, 4000)) as [ReplacedEvent];
      assert.equal(e.userId, 'nat');
      assert.equal(e.resumed, true, 'the client resumed its session on the new link');
      assert.ok(e.silentForMs > 500 && e.silentForMs < 1400, `silent ${e.silentForMs} ms when replaced`);
      assert.equal(e.stale, true);
      assert.equal(offline.length, 0, 'the device never went offline');
      const m = (await http(port, 'GET', '/metrics')).body;
      assert.equal(sample(m, 'longlink_replaced_links_total{stale="true"}'), 1);
      assert.equal(sample(m, 'longlink_replaced_links_total{stale="false"}'), 0);
      assert.equal(sample(m, 'longlink_replaced_silence_seconds_count'), 1);
      const snap = admin.feed.snapshot();
      const notice = snap.recent.find((n) => n.reason === 'replaced');
      assert.ok(notice, 'listed with the recent disconnections');
      assert.equal(notice.stale, true);
      assert.equal(notice.connectionId, e.connectionId);
      assert.equal(snap.overview.disconnects.replaced, 1);
    } finally {
      c.close();
      for (const l of links) l.release();
      await admin.close();
      await gw.close();
    }
  });

  test('a suspected peer heard again counts as a false suspicion', async () => {
    const { gw, port, urls, close } = await setup();
    let link: FreezableLink | null = null;
    const c = new LonglinkClient({ url: urls.tcp, userId: 'slow', deviceId: 'd', intervalMs: 300, dial: async (u, o) => (link = new FreezableLink(await dial(u, o))) });
    await c.connect();
    // Silent past the suspicion point (one interval plus grace) but within the limit (two intervals plus grace).
    link!.frozen = true;
    await sleep(620);
    link!.frozen = false;
    c.send('still here');
    await sleep(300);
    assert.equal(gw.connection('slow', 'd')?.suspected, false);
    const m = (await http(port, 'GET', '/metrics')).body;
    assert.equal(sample(m, 'longlink_suspicions_total'), 1);
    assert.equal(sample(m, 'longlink_false_suspicions_total'), 1);
    assert.equal(sample(m, 'longlink_detections_total{reason="heartbeat-timeout"}') ?? 0, 0);
    c.close();
    await close();
  });

  test('the API shows presence, connections with their heartbeat state, a timeline, and kicks', async () => {
    const { gw, port, urls, close } = await setup();
    const c = new LonglinkClient({ url: urls.ws, userId: 'cy', deviceId: 'laptop', direction: 'server', intervalMs: 200, clientInfo: { app: 'test' } });
    const closes: CloseEvent[] = [];
    c.on('close', (e) => closes.push(e));
    await c.connect();
    c.updateState({ mood: 'busy' }, { flush: true });

    const presence = (await http(port, 'GET', '/api/presence/cy')).json();
    assert.equal(presence.online, true);
    assert.deepEqual(presence.devices.map((d: { deviceId: string }) => d.deviceId), ['laptop']);

    const list = await eventually('the piggybacked state', async () => {
      const l = (await http(port, 'GET', '/api/connections')).json() as { total: number; connections: ConnectionView[] };
      return l.connections[0]?.clientState.mood === 'busy' && l;
    });
    assert.equal(list.total, 1);
    const v = list.connections[0];
    assert.equal(v.transport, 'ws');
    assert.deepEqual(v.policy, { ...POLICY, intervalMs: 200, direction: 'server' });
    assert.equal(v.announcedIntervalMs, 200);
    assert.deepEqual(v.clientInfo, { app: 'test' });
    assert.ok(v.lastHeardMsAgo >= 0 && v.lastHeardMsAgo < 1000);

    // The timeline is recorded from the first request on.
    const first = (await http(port, 'GET', `/api/connections/${v.connectionId}`)).json() as ConnectionDetail;
    assert.equal(first.connection.connectionId, v.connectionId);
    await sleep(700);
    const detail = (await http(port, 'GET', `/api/connections/${v.connectionId}`)).json() as ConnectionDetail;
    const kinds = detail.timeline.events.map((e) => e.kind);
    assert.ok(kinds.filter((k) => k === 'ping-out').length >= 2, `server PINGs on the timeline: ${kinds}`);
    const pongs = detail.timeline.events.filter((e) => e.kind === 'pong-in');
    assert.ok(pongs.length >= 2 && pongs.every((p) => typeof p.value === 'number' && p.value >= 0), 'each PONG with its RTT');
    assert.ok(detail.timeline.events.every((e) => e.t >= detail.timeline.tracingSince && e.t <= Date.now() + 5));
    assert.equal(detail.timeline.keptSince, detail.timeline.tracingSince, 'every event since tracing began is kept');
    assert.ok(detail.connection.rttMs !== null);

    assert.deepEqual((await http(port, 'POST', '/api/kick', { connectionId: 'not-a-connection' })).json(), { kicked: 0 });
    const kicked = (await http(port, 'POST', '/api/kick', { connectionId: v.connectionId })).json();
    assert.deepEqual(kicked, { kicked: 1 });
    await eventually('the client to see the kick', async () => closes.length > 0);
    assert.equal(closes[0].code, CloseCodes.kicked);
    assert.equal(closes[0].willReconnect, false);
    const gone = await http(port, 'GET', `/api/connections/${v.connectionId}`);
    assert.equal(gone.status, 404);
    assert.equal(gone.json().error.code, 'LL_ERR_NOT_FOUND');
    assert.equal(gw.onlineDevices, 0);
    await close();
  });

  test('the connection list is paged (most recent first, a cursor to the next page) and a page is bounded', async () => {
    const { port, urls, close } = await setup();
    const clients = Array.from({ length: 7 }, (_, i) => new LonglinkClient({ url: urls.tcp, userId: `p${i}`, deviceId: 'd' }));
    try {
      for (const c of clients) await c.connect();
      const seen: string[] = [];
      let cursor: string | undefined;
      for (let pages = 0; pages < 10; pages++) {
        const page = (await http(port, 'GET', `/api/connections?limit=3${cursor ? `&before=${cursor}` : ''}`)).json() as ConnectionsPage;
        assert.equal(page.total, 7);
        assert.ok(page.connections.length <= 3);
        seen.push(...page.connections.map((v) => v.userId));
        cursor = page.next;
        if (!cursor) break;
      }
      assert.deepEqual(seen, ['p6', 'p5', 'p4', 'p3', 'p2', 'p1', 'p0'], 'every connection once, newest first');
      const big = (await http(port, 'GET', '/api/connections?limit=999999')).json() as ConnectionsPage;
      assert.equal(big.connections.length, 7, 'a huge limit is capped, not refused');
      const bad = await http(port, 'GET', '/api/connections?before=abc');
      assert.equal(bad.status, 400);
      assert.equal(bad.json().error.code, 'LL_ERR_BAD_REQUEST');
    } finally {
      for (const c of clients) c.close();
      await close();
    }
  });

  test('bad requests get typed errors; a token guards the API and metrics but not the page', async () => {
    const { port, close } = await setup('s3cret');
    const auth = { authorization: 'Bearer s3cret' };
    assert.equal((await http(port, 'GET', '/api/overview')).status, 401);
    assert.equal((await http(port, 'GET', '/api/overview')).json().error.code, 'LL_ERR_UNAUTHORIZED');
    assert.equal((await http(port, 'GET', '/metrics', undefined, { authorization: 'Bearer wrong' })).status, 401);
    assert.equal((await http(port, 'GET', '/metrics', undefined, auth)).status, 200);
    assert.equal((await http(port, 'GET', '/metrics', undefined, { authorization: 'bearer s3cret' })).status, 200, 'the scheme is case-insensitive');
    assert.equal((await http(port, 'GET', '/metrics', undefined, { authorization: 'Basic s3cret' })).status, 401);
    // The token in the URL opens only the event stream (EventSource sends no headers): a URL is logged
    // and kept in histories, so one that leaked must not read the API or kick and drain.
    const inUrl = await http(port, 'GET', '/api/overview?token=s3cret');
    assert.equal(inUrl.status, 401);
    assert.equal(inUrl.json().error.code, 'LL_ERR_UNAUTHORIZED');
    assert.match(inUrl.json().error.message, /Authorization: Bearer/);
    assert.equal((await http(port, 'GET', '/metrics?token=s3cret')).status, 401);
    assert.equal((await http(port, 'POST', '/api/kick?token=s3cret', { userId: 'a' })).status, 401);
    assert.equal((await http(port, 'GET', '/api/overview?token=wrong', undefined, auth)).status, 200, 'the header decides when both are given');
    const streamStatus = (path: string) =>
      new Promise<number>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path }, (res) => {
          resolve(res.statusCode ?? 0);
          req.destroy();
        });
        req.on('error', reject).end();
      });
    assert.equal(await streamStatus('/api/events?token=s3cret'), 200);
    assert.equal(await streamStatus('/api/events?token=wrong'), 401);
    assert.equal(await streamStatus('/api/events'), 401);
    // The dashboard's stream URL carries the stream key instead: it opens the stream and nothing else.
    const key = (await http(port, 'GET', '/api/stream-key', undefined, auth)).json().key as string;
    assert.equal(key, streamKey('s3cret'));
    assert.equal(await streamStatus(`/api/events?token=${encodeURIComponent(key)}`), 200);
    assert.equal((await http(port, 'GET', `/api/overview?token=${encodeURIComponent(key)}`)).status, 401);
    assert.equal((await http(port, 'GET', '/api/overview', undefined, { authorization: `Bearer ${key}` })).status, 401);
    assert.equal((await http(port, 'POST', '/api/kick', { userId: 'a' }, { authorization: `Bearer ${key}` })).status, 401);
    assert.equal((await http(port, 'GET', '/api/stream-key')).status, 401, 'the key is given for the token only');
    const bad = await http(port, 'POST', '/api/kick', '{not json', auth);
    assert.equal(bad.status, 400);
    assert.equal(bad.json().error.code, 'LL_ERR_BAD_REQUEST');
    assert.equal((await http(port, 'POST', '/api/kick', { deviceId: 'x' }, auth)).json().error.code, 'LL_ERR_BAD_REQUEST');
    assert.equal((await http(port, 'POST', '/api/kick', 'x'.repeat(70_000), auth)).status, 413);
    assert.equal((await http(port, 'DELETE', '/api/overview', undefined, auth)).status, 405);
    assert.equal((await http(port, 'GET', '/api/nothing', undefined, auth)).status, 404);
    assert.equal((await http(port, 'GET', '/../../package.json')).status, 404, 'only the dashboard files are served');
    const page = await http(port, 'GET', '/');
    assert.equal(page.status, 200, 'the dashboard page needs no token (it holds no data)');
    assert.match(page.body, /<html/i);
    // Only /api/ routes: an action under another prefix is not one, token or not.
    assert.equal((await http(port, 'POST', '/x/kick', { userId: 'a' })).status, 405);
    assert.equal((await http(port, 'POST', '/x/drain', {})).status, 405);
    for (const bad of [1.5, -1, 3_600_001, '5']) assert.equal((await http(port, 'POST', '/api/disconnect', { userId: 'a', reconnectAfterMs: bad }, auth)).status, 400, `reconnectAfterMs ${bad}`);
    // Past 2^31 ms Node's timer fires at once: a drain "over 50 days" would close everyone now.
    for (const bad of [{ windowMs: 2 ** 32 }, { ackTimeoutMs: 3_600_001 }, { windowMs: -1 }]) assert.equal((await http(port, 'POST', '/api/drain', bad, auth)).status, 400, JSON.stringify(bad));
    // A cross-site form or fetch without a preflight cannot post JSON.
    const form = await http(port, 'POST', '/api/kick', 'userId=a', { ...auth, 'content-type': 'text/plain' });
    assert.equal(form.status, 415);
    assert.equal(form.json().error.code, 'LL_ERR_UNSUPPORTED_MEDIA_TYPE');
    await close();
  });

  test('without a token only loopback Host names reach the API (no DNS rebinding)', async () => {
    const { port, close } = await setup();
    assert.equal((await http(port, 'GET', '/api/overview')).status, 200);
    assert.equal((await http(port, 'GET', '/api/overview', undefined, { host: `localhost:${port}` })).status, 200);
    const rebound = await http(port, 'GET', '/api/overview', undefined, { host: 'evil.example' });
    assert.equal(rebound.status, 403);
    assert.equal(rebound.json().error.code, 'LL_ERR_FORBIDDEN_HOST');
    assert.equal((await http(port, 'POST', '/api/drain', {}, { host: 'evil.example' })).status, 403);
    // A name that starts like a loopback address is still a name anyone can point at 127.0.0.1.
    for (const host of ['127.0.0.1.rebind.attacker.example', `127.0.0.1.rebind.attacker.example:${port}`, '127.evil.example']) {
      assert.equal((await http(port, 'POST', '/api/drain', {}, { host })).status, 403, host);
    }
    assert.equal((await http(port, 'GET', '/api/overview', undefined, { host: `[::1]:${port}` })).status, 200);
    assert.equal((await http(port, 'GET', '/api/overview', undefined, { host: `127.0.0.2:${port}` })).status, 200);
    // A malformed escape is the client's error, not the server's.
    const bad = await http(port, 'GET', '/api/users/%E0%A4%A');
    assert.equal(bad.status, 400);
    assert.equal(bad.json().error.code, 'LL_ERR_BAD_PATH');
    await close();
  });

  test('the event stream starts with a snapshot, then ticks and online/offline notices', async () => {
    const { admin, port, urls, close } = await setup();
    const events: { event: string; data: unknown }[] = [];
    const req = request({ host: '127.0.0.1', port, path: '/api/events' }, (res) => {
      assert.equal(res.headers['content-type'], 'text/event-stream');
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const event = /^event: (.*)$/m.exec(block)![1];
          events.push({ event, data: JSON.parse(/^data: (.*)$/m.exec(block)![1]) });
        }
      });
    });
    req.end();
    await eventually('the snapshot', async () => events.length > 0);
    assert.equal(events[0].event, 'snapshot');
    assert.equal((events[0].data as Snapshot).overview.online.devices, 0);
    const c = new LonglinkClient({ url: urls.tcp, userId: 'dee', deviceId: 'd', intervalMs: 150 });
    await c.connect();
    await eventually('an online notice', async () => events.some((e) => e.event === 'online'));
    const tick = await eventually('a tick with the device online', async () => events.find((e) => e.event === 'tick' && (e.data as Tick).online === 1));
    assert.ok((tick.data as Tick).connections >= 1);
    await eventually('heartbeats per second', async () => events.some((e) => e.event === 'tick' && (e.data as Tick).heartbeatsPerSec > 0), 4000);
    c.close();
    const off = await eventually('an offline notice', async () => events.find((e) => e.event === 'offline'));
    assert.deepEqual([(off.data as { reason: string }).reason, (off.data as { detection: boolean }).detection], ['client-close', false]);
    assert.equal(admin.feed.subscriberCount, 1);
    req.destroy();
    await eventually('the stream to be let go', async () => admin.feed.subscriberCount === 0);
    await close();
  });

  test('an event-stream reader that stops reading is dropped, not buffered for', async () => {
    const { admin, port, close } = await setup();
    // A raw socket that asks for the stream and then never reads.
    const sock = connect(port, '127.0.0.1', () => sock.write('GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'));
    sock.on('error', () => {});
    await eventually('the subscription', async () => admin.feed.subscriberCount === 1);
    sock.pause();
    // Ticks on demand until the kernel's buffers and then 1 MiB of ours are full.
    for (let i = 0; i < 40_000 && admin.feed.subscriberCount > 0; i++) {
      admin.feed.tick();
      if (i % 1000 === 0) await sleep(1);
    }
    assert.equal(admin.feed.subscriberCount, 0, 'the slow reader was let go');
    sock.destroy();
    await close();
  });

  test('a store that fails (Redis down) makes presence, kick and disconnect by user 503 LL_ERR_STORE_UNAVAILABLE, not a 500', async () => {
    // A shared store (one with control and a directory, as Redis), failing every read.
    let down = false;
    const store = new MemoryStore();
    const devices = store.devices.bind(store);
    Object.assign(store, {
      devices: (u: string) => (down ? Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:6379')) : devices(u)),
      control: async () => {},
      directory: async () => (down ? Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:6379')) : []),
    });
    const gw = new Gateway({ tcp: { port: 0 }, ws: false, store });
    const a = await gw.listen();
    const admin = new AdminServer(gw, { port: 0 });
    const port = (await admin.listen()).port;
    const c = new LonglinkClient({ url: `tcp://127.0.0.1:${a.tcp!.port}`, userId: 'ann', deviceId: 'phone', reconnect: { enabled: false } });
    try {
      await c.connect();
      assert.equal((await http(port, 'GET', '/api/presence/ann')).status, 200);
      down = true;
      for (const [method, path, body] of [['GET', '/api/presence/ann'], ['POST', '/api/disconnect', { userId: 'ann' }], ['POST', '/api/kick', { userId: 'ann' }], ['GET', '/api/nodes/other/overview']] as const) {
        const r = await http(port, method, path, body);
        assert.equal(r.status, 503, `${method} ${path}: ${r.body}`);
        assert.equal(r.json().error.code, 'LL_ERR_STORE_UNAVAILABLE');
      }
      assert.equal((await http(port, 'POST', '/api/kick', {})).status, 400, 'a bad body is still a 400');
    } finally {
      c.close();
      await admin.close();
      await gw.close();
    }
  });

  test('another node read through this one: when that node dies mid-answer, the answer here is cut too (it hung, unfinished, for ever)', async () => {
    // Node B: answers its event stream and a connection page, then dies (a crash: the socket reset).
    const peer = createServer((req, res) => {
      const sse = req.url!.startsWith('/api/events');
      res.writeHead(200, { 'content-type': sse ? 'text/event-stream' : 'application/json' });
      res.write(sse ? 'event: snapshot\ndata: {}\n\n' : '{"total":2,"connections":[');
      setTimeout(() => req.socket.destroy(), 100);
    });
    await new Promise<void>((r) => peer.listen(0, '127.0.0.1', r));
    const store = new MemoryStore();
    const adminUrl = `http://127.0.0.1:${(peer.address() as AddressInfo).port}`;
    Object.assign(store, { directory: async () => [{ nodeId: 'node-b', adminUrl }] });
    const gw = new Gateway({ tcp: false, ws: false, store });
    await gw.listen();
    const admin = new AdminServer(gw, { port: 0 });
    const port = (await admin.listen()).port;
    try {
      for (const path of ['/api/nodes/node-b/events', '/api/nodes/node-b/connections']) {
        const ended = await new Promise<string>((resolve) => {
          const req = request({ host: '127.0.0.1', port, path }, (res) => {
            assert.equal(res.statusCode, 200);
            res.resume();
            res.on('end', () => resolve('end'));
            res.on('error', () => resolve('cut'));
            res.on('aborted', () => resolve('cut'));
          });
          req.on('error', () => resolve('cut'));
          setTimeout(() => resolve('hung'), 3000);
          req.end();
        });
        assert.equal(ended, 'cut', `${path}: cut, not a clean end that would pass a truncated answer as whole`);
      }
    } finally {
      await admin.close();
      await gw.close();
      peer.closeAllConnections();
      await new Promise((r) => peer.close(r));
    }
  });

  test('another node read through this one that goes silent (paused, cut off without a reset): the answer here is cut after PEER_STALL_MS, not held for ever', async () => {
    const peer = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('event: snapshot\ndata: {}\n\n'); // and nothing more, the socket left open
    });
    await new Promise<void>((r) => peer.listen(0, '127.0.0.1', r));
    const store = new MemoryStore();
    const adminUrl = `http://127.0.0.1:${(peer.address() as AddressInfo).port}`;
    Object.assign(store, { directory: async () => [{ nodeId: 'node-b', adminUrl }] });
    const gw = new Gateway({ tcp: false, ws: false, store });
    await gw.listen();
    const admin = new AdminServer(gw, { port: 0 });
    const port = (await admin.listen()).port;
    const started = Date.now();
    try {
      const ended = await new Promise<string>((resolve) => {
        const req = request({ host: '127.0.0.1', port, path: '/api/nodes/node-b/events' }, (res) => {
          res.resume();
          res.on('end', () => resolve('end'));
          res.on('error', () => resolve('cut'));
        });
        req.on('error', () => resolve('cut'));
        setTimeout(() => resolve('hung'), PEER_STALL_MS + 3000);
        req.end();
      });
      assert.equal(ended, 'cut');
      assert.ok(Date.now() - started >= PEER_STALL_MS - 500, 'not before its time');
    } finally {
      await admin.close();
      await gw.close();
      peer.closeAllConnections();
      await new Promise((r) => peer.close(r));
    }
  });

  test('another node\'s event stream asked for through this one by a viewer that leaves while the node is looked up: that node is asked nothing (its stream, one of its 64 places, was held over a minute)', async () => {
    // Node B counts the answers it has open.
    let open = 0;
    const peer = createServer((req, res) => {
      open++;
      res.on('close', () => open--);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('event: snapshot\ndata: {}\n\n');
      const tick = setInterval(() => res.write('event: tick\ndata: {}\n\n'), 100);
      res.on('close', () => clearInterval(tick));
    });
    await new Promise<void>((r) => peer.listen(0, '127.0.0.1', r));
    const adminUrl = `http://127.0.0.1:${(peer.address() as AddressInfo).port}`;
    // The directory answers once the viewer has gone (a slow store).
    let asked!: () => void;
    const lookedUp = new Promise<void>((r) => (asked = r));
    let answer!: () => void;
    const gone = new Promise<void>((r) => (answer = r));
    const store = new MemoryStore();
    Object.assign(store, { directory: async () => (asked(), await gone, [{ nodeId: 'node-b', adminUrl }]) });
    const gw = new Gateway({ tcp: false, ws: false, store });
    await gw.listen();
    const admin = new AdminServer(gw, { port: 0 });
    const port = (await admin.listen()).port;
    try {
      const viewer = connect(port, '127.0.0.1');
      viewer.on('error', () => {});
      viewer.write('GET /api/nodes/node-b/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      await lookedUp;
      viewer.destroy();
      await sleep(100);
      answer();
      await sleep(500);
      assert.equal(open, 0, 'no stream of node B held for a viewer that has gone');
    } finally {
      await admin.close();
      await gw.close();
      peer.closeAllConnections();
      await new Promise((r) => peer.close(r));
    }
  });

  test('POST /api/drain drains the gateway: clients get GOAWAY and come back elsewhere', async () => {
    const { gw, port, urls, close } = await setup();
    const c = new LonglinkClient({ url: urls.tcp, userId: 'eli', deviceId: 'd', intervalMs: 150, reconnect: { enabled: false } });
    const closes: CloseEvent[] = [];
    c.on('close', (e) => closes.push(e));
    await c.connect();
    const r = await http(port, 'POST', '/api/drain', { windowMs: 200, ackTimeoutMs: 500 });
    assert.equal(r.status, 202);
    assert.equal(r.json().draining, true);
    await eventually('the drain to close the link', async () => closes.length > 0);
    assert.equal(closes[0].code, CloseCodes['going-away']);
    assert.equal(gw.connectionCount, 0);
    assert.equal((await http(port, 'POST', '/api/drain', { windowMs: -1 })).json().error.code, 'LL_ERR_BAD_REQUEST');
    await close();
  });
});

/** GET a raw request target, as written (a client library would normalize it). */
function getTarget(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'GET', path }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

// A request target the URL parser refuses (an absolute or scheme-relative form with a bad host):
// no credential needed, it reaches new URL() before anything else.
test('a request target that is not a URL is a 4xx with a stable code, not a 500 logged as the admin port\'s own failure', async () => {
  const gw = new Gateway({ tcp: { port: 0 }, ws: false });
  await gw.listen();
  const errors: unknown[] = [];
  const log = { error: (o: unknown) => errors.push(o), info: () => {}, warn: () => {} } as unknown as Logger;
  // A token is set: the caller has none, and still gets a 500 and an error line.
  const admin = new AdminServer(gw, { port: 0, token: 'a-token-the-caller-does-not-have', log });
  const { port } = await admin.listen();
  try {
    for (const path of ['//[', 'http://[::1/api/overview', '/v1/../..//%zz']) {
      const r = await getTarget(port, path);
      assert.ok(r.status >= 400 && r.status < 500, `${path}: HTTP ${r.status} ${r.body}`);
      if (path !== '/v1/../..//%zz') assert.match(r.body, /LL_ERR_BAD_PATH/);
    }
    assert.equal(errors.length, 0, 'no error line per unauthenticated request');
  } finally {
    await admin.close();
    await gw.close();
  }
});

// A target that starts with two slashes is a scheme-relative reference: new URL() read
// `//evil.example/` as the host evil.example with the path /, so the dashboard was served at
// http://gw:7422//evil.example/, whose links to other nodes are built from location.pathname.
test('a request target that starts with // (or /\\) is a 400 LL_ERR_BAD_PATH, not the dashboard page served under a path that names another host', async () => {
  const gw = new Gateway({ tcp: false, ws: false });
  await gw.listen();
  const admin = new AdminServer(gw, { port: 0 });
  const { port } = await admin.listen();
  try {
    for (const path of ['//evil.example/', '//evil.example/index.html', '/\\evil.example/', '//127.0.0.1/api/overview']) {
      const r = await getTarget(port, path);
      assert.equal(r.status, 400, `${path}: HTTP ${r.status} ${r.body.slice(0, 80)}`);
      assert.match(r.body, /LL_ERR_BAD_PATH/);
    }
    assert.equal((await getTarget(port, '/api/overview')).status, 200, 'a plain path is served as before');
  } finally {
    await admin.close();
    await gw.close();
  }
});

// A caller that goes away while its body is on its way (a backend's HTTP client that timed out,
// a process killed mid-upload; Node's requestTimeout cuts a slow one the same way): the read of the
// body fails with "aborted", which is the caller's doing, not the admin port's.
test('a request whose body is cut short (the caller went away) is not answered 500 nor logged as the admin port\'s own failure', async () => {
  const gw = new Gateway({ tcp: false, ws: false });
  await gw.listen();
  const errors: unknown[] = [];
  const log = { error: (o: unknown) => errors.push(o), info: () => {}, warn: () => {} } as unknown as Logger;
  const admin = new AdminServer(gw, { port: 0, log });
  const { port } = await admin.listen();
  try {
    for (const path of ['/v1/push', '/api/kick']) {
      const s = connect(port, '127.0.0.1');
      await waitEvent(s, 'connect');
      s.write(`POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"user":`);
      await sleep(100);
      s.destroy();
    }
    await sleep(200);
    assert.deepEqual(errors, [], 'no error line for a caller that went away');
  } finally {
    await admin.close();
    await gw.close();
  }
});

test('/metrics takes GET only: another method is 405 LL_ERR_METHOD_NOT_ALLOWED, as on every other endpoint, not a scrape', async () => {
  const gw = new Gateway({ tcp: false, ws: false });
  await gw.listen();
  const admin = new AdminServer(gw, { port: 0, metrics: { processMetrics: false } });
  const { port } = await admin.listen();
  try {
    assert.equal((await http(port, 'GET', '/metrics')).status, 200);
    for (const [method, body] of [['DELETE', undefined], ['PUT', '{}'], ['POST', '{}']] as const) {
      const r = await http(port, method, '/metrics', body);
      assert.equal(r.status, 405, `${method} /metrics: HTTP ${r.status} ${r.body.slice(0, 80)}`);
      assert.equal(r.json().error.code, 'LL_ERR_METHOD_NOT_ALLOWED');
    }
  } finally {
    await admin.close();
    await gw.close();
  }
});

test('an answer that cannot be serialised is a 500 LL_ERR_INTERNAL with its error body, not a 200 with an empty body', async () => {
  // A Store of the application's own that gives presence a BigInt (a Redis client's integers):
  // json() wrote the status line, then JSON.stringify threw, and the caller got 200 and nothing.
  const store = new MemoryStore();
  Object.assign(store, { devices: async () => [{ deviceId: 'phone', nodeId: 'n1', connectionId: 'c1', transport: 'tcp', since: 1n }] });
  const gw = new Gateway({ tcp: false, ws: false, store });
  await gw.listen();
  const admin = new AdminServer(gw, { port: 0 });
  const port = (await admin.listen()).port;
  try {
    const r = await http(port, 'GET', '/api/presence/ann');
    assert.equal(r.status, 500, `status ${r.status}, body ${JSON.stringify(r.body)}`);
    assert.equal(r.json().error.code, 'LL_ERR_INTERNAL');
    assert.match(r.json().error.message, /BigInt/);
  } finally {
    await admin.close();
    await gw.close();
  }
});
