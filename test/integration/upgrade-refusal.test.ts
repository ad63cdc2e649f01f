import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { test } from 'node:test';
import { LonglinkClient, type CloseEvent } from '../../src/client/client.js';

// A WebSocket upgrade answered with an HTTP error by something that is not a longlink gateway (a
// proxy, a load balancer), or by a longlink refusal header the client must read with care.

/** A loopback HTTP server answering every upgrade with `head` (status line and headers). */
async function refuser(head: string): Promise<{ url: string; upgrades: () => number; close: () => Promise<void> }> {
  let upgrades = 0;
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', (_req, socket: net.Socket) => {
    upgrades++;
    socket.end(`${head}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return { url: `ws://127.0.0.1:${port}/longlink`, upgrades: () => upgrades, close: () => new Promise((r) => server.close(() => r())) };
}

/** Connects once and reports the first close and the delay planned after it. */
async function firstRefusal(url: string): Promise<{ close: CloseEvent; delayMs: number }> {
  const c = new LonglinkClient({ url, userId: 'u', deviceId: 'd', reconnect: { initialDelayMs: 100, maxDelayMs: 200, minDelayMs: 50 } });
  const closes: CloseEvent[] = [];
  const delays: number[] = [];
  c.on('close', (e) => closes.push(e));
  c.on('reconnecting', (e) => delays.push(e.delayMs));
  const connecting = c.connect().catch(() => {});
  for (let i = 0; i < 250 && delays.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  await c.close();
  await connecting;
  assert.ok(closes.length > 0 && delays.length > 0, 'the attempt failed and a reconnect was planned');
  return { close: closes[0], delayMs: delays[0] };
}

test("a 503 to the upgrade with only Retry-After (a proxy's, a load balancer's) is honoured as the least wait, in seconds or as an HTTP date, bounded", async () => {
  const cases: [string, (ms: number) => boolean][] = [
    ['Retry-After: 7', (ms) => ms === 7000],
    [`Retry-After: ${new Date(Date.now() + 20_000).toUTCString()}`, (ms) => ms >= 18_000 && ms <= 20_000],
    ['Retry-After: 99999999', (ms) => ms === 600_000],
    ['Retry-After: soon', (ms) => ms <= 200],
  ];
  for (const [header, ok] of cases) {
    const s = await refuser(`HTTP/1.1 503 Service Unavailable\r\n${header}`);
    try {
      const { close, delayMs } = await firstRefusal(s.url);
      assert.ok(close.willReconnect, header);
      assert.ok(ok(delayMs), `${header}: the next attempt planned in ${delayMs} ms`);
    } finally {
      await s.close();
    }
  }
});

test('a refusal header naming an Object.prototype property ("constructor") is an unknown reason: a numeric close code, going-away', async () => {
  const s = await refuser('HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nX-Longlink-Goaway: constructor; 300');
  try {
    const { close, delayMs } = await firstRefusal(s.url);
    assert.equal(typeof close.code, 'number', `close code ${String(close.code).slice(0, 40)}`);
    assert.equal(close.code, 4002);
    assert.equal(delayMs, 300);
  } finally {
    await s.close();
  }
});
