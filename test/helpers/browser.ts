import { createServer, type Server } from 'node:http';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { Browser, CDPSession } from 'playwright-core';
import { findChromium } from '../../src/demo/chromium.js';

/**
 * Real Chromium for the browser tests, or a skip with the reason. In CI,
 * which installs Debian's chromium, a missing browser is a failure: a broken
 * install must not turn the browser tests into silent skips.
 */
export function chromiumOrSkip(t: TestContext): string | null {
  const path = findChromium();
  const why = 'Chromium is not installed (apt-get install chromium, or set CHROMIUM_PATH)';
  if (!path && process.env.CI) throw new Error(`${why}; CI must have it`);
  if (!path) t.skip(why);
  return path;
}

const WEB = fileURLToPath(new URL('../../web/', import.meta.url));

/** Serves `html` at / and the browser SDK bundle at /longlink.iife.js, on loopback. */
export async function servePage(html: string): Promise<{ url: string; close: () => Promise<void> }> {
  const sdk = readFileSync(join(WEB, 'longlink.iife.js'));
  const server: Server = createServer((req, res) => {
    if (req.url?.startsWith('/longlink.iife.js')) {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(sdk);
    } else {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(html);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/**
 * A tab that was opened in the background and never shown: Chromium marks
 * it hidden and throttles its timers (one wake-up a second, later one a
 * minute), as for a real background tab. Playwright makes every page it
 * drives visible, and its default flags turn throttling off, so this tab is
 * opened and driven over a raw DevTools session of a browser started with
 * Chromium's own defaults.
 */
export class HiddenTab {
  private seq = 0;
  private readonly pending = new Map<number, (m: { result?: { result?: { value?: unknown }; exceptionDetails?: unknown }; error?: unknown }) => void>();

  private constructor(
    readonly browser: Browser,
    private readonly cdp: CDPSession,
    private readonly targetId: string,
    private readonly sessionId: string,
    private readonly profile: string,
  ) {
    cdp.on('Target.receivedMessageFromTarget', (e: { sessionId: string; message: string }) => {
      if (e.sessionId !== this.sessionId) return;
      const m = JSON.parse(e.message) as { id?: number };
      if (m.id !== undefined) this.pending.get(m.id)?.(m as never);
    });
  }

  static async open(executablePath: string, url: string): Promise<HiddenTab> {
    const { chromium } = await import('playwright-core');
    const profile = mkdtempSync(join(tmpdir(), 'll-chromium-'));
    const browser = await chromium.launch({
      executablePath,
      ignoreDefaultArgs: true,
      args: ['--headless=new', '--no-sandbox', '--remote-debugging-pipe', '--no-first-run', `--user-data-dir=${profile}`, 'about:blank'],
    });
    const cdp = await browser.newBrowserCDPSession();
    const { targetId } = (await cdp.send('Target.createTarget', { url, background: true })) as { targetId: string };
    const { sessionId } = (await cdp.send('Target.attachToTarget', { targetId, flatten: false })) as { sessionId: string };
    const tab = new HiddenTab(browser, cdp, targetId, sessionId, profile);
    // The tab starts on about:blank and navigates; wait until the page's own document is loaded.
    const end = Date.now() + 15_000;
    for (;;) {
      const ready = await tab.evaluate(`location.href === ${JSON.stringify(url)} && document.readyState === 'complete'`).catch(() => false);
      if (ready) return tab;
      if (Date.now() > end) throw new Error(`the hidden tab did not load ${url}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Sends a DevTools command to the tab (Page.setWebLifecycleState, say) and resolves with its result. */
  send<T = unknown>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method} timed out`));
      }, 30_000);
      this.pending.set(id, (m) => {
        clearTimeout(timer);
        this.pending.delete(id);
        if (m.error) reject(new Error(`${method} failed: ${JSON.stringify(m.error)}`));
        else resolve(m.result as T);
      });
      void this.cdp.send('Target.sendMessageToTarget', { sessionId: this.sessionId, message: JSON.stringify({ id, method, params }) });
    });
  }

  /** Evaluates `expression` in the tab (awaiting a promise) and returns its JSON value. */
  async evaluate<T = unknown>(expression: string): Promise<T> {
    const r = await this.send<{ result?: { value?: unknown }; exceptionDetails?: unknown }>('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true }).catch((e: Error) => {
      throw new Error(`evaluate failed: ${e.message} (${expression.slice(0, 80)})`);
    });
    if (r.exceptionDetails) throw new Error(`evaluate failed: ${JSON.stringify(r.exceptionDetails)}`);
    return r.result?.value as T;
  }

  /**
   * Freezes the tab (Page Lifecycle: no task runs, as for a phone's
   * background tab) for `ms`, then lets it run again. Chromium freezes only
   * a hidden page.
   */
  async freeze(ms: number): Promise<void> {
    await this.send('Page.setWebLifecycleState', { state: 'frozen' });
    await new Promise((r) => setTimeout(r, ms));
    await this.send('Page.setWebLifecycleState', { state: 'active' });
  }

  /** Brings the tab to the front: it becomes visible. */
  async show(): Promise<void> {
    await this.cdp.send('Target.activateTarget', { targetId: this.targetId });
  }

  async close(): Promise<void> {
    await this.browser.close();
    rmSync(this.profile, { recursive: true, force: true });
  }
}
