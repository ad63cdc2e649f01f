import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

/** dist/src/cli/index.js, next to the compiled tests. */
export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/index.js');

export interface JsonProc {
  child: ChildProcess;
  /** Every JSON line printed so far. */
  lines: Record<string, unknown>[];
  /** Resolves with the first line (past or future) matching `pred`. */
  waitFor(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number, what?: string): Promise<Record<string, unknown>>;
  /** Number of lines seen so far; pass to waitFor's `from` via waitForAfter. */
  waitForAfter(from: number, pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number, what?: string): Promise<Record<string, unknown>>;
  kill(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/** Spawns the CLI with JSON output on stdout and keeps every line. */
export function spawnCli(args: string[]): JsonProc {
  return spawnNode(CLI, args);
}

/** dist/test/fixtures/<name>.js */
export const fixture = (name: string) => path.resolve(path.dirname(fileURLToPath(import.meta.url)), `../fixtures/${name}.js`);

/** Spawns a Node script that prints JSON lines on stdout, and keeps every line. */
export function spawnNode(script: string, args: string[], interpreter: string = process.execPath): JsonProc {
  const child = spawn(interpreter, [script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(child);
  const lines: Record<string, unknown>[] = [];
  const waiters = new Set<{ from: number; pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }>();
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  readline.createInterface({ input: child.stdout! }).on('line', (text) => {
    let l: Record<string, unknown>;
    try {
      l = JSON.parse(text);
    } catch {
      return;
    }
    lines.push(l);
    for (const w of waiters) {
      if (w.pred(l)) {
        waiters.delete(w);
        w.resolve(l);
      }
    }
  });
  const exited = once(child, 'exit');
  child.once('exit', () => live.delete(child));
  const waitForAfter: JsonProc['waitForAfter'] = (from, pred, timeoutMs = 5000, what = 'line') => {
    const seen = lines.slice(from).find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = { from, pred, resolve: (l: Record<string, unknown>) => (clearTimeout(t), resolve(l)) };
      const t = setTimeout(() => {
        waiters.delete(w);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; stderr: ${stderr.slice(-500)}; last lines: ${JSON.stringify(lines.slice(-5))}`));
      }, timeoutMs);
      waiters.add(w);
    });
  };
  return {
    child,
    lines,
    waitFor: (pred, timeoutMs, what) => waitForAfter(0, pred, timeoutMs, what),
    waitForAfter,
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Starts `longlink serve` on free ports; resolves with its URLs. */
export async function spawnServe(extra: string[] = []): Promise<JsonProc & { tcp: string; ws: string }> {
  const p = spawnCli(['serve', '--tcp-port', '0', '--ws-port', '0', '--admin-port', '0', ...extra]);
  const l = await p.waitFor((x) => x.event === 'listening', 10_000, 'the listening line');
  return Object.assign(p, { tcp: l.tcp as string, ws: l.ws as string });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Args = any[];
interface Emitterish {
  on(e: string, f: (...a: Args) => void): unknown;
  off(e: string, f: (...a: Args) => void): unknown;
}

/** Resolves with the args when `emitter` emits `event` satisfying `pred`, or rejects after `timeoutMs`. */
export function waitEvent(emitter: Emitterish, event: string, pred: (...a: Args) => boolean = () => true, timeoutMs = 5000): Promise<Args> {
  return new Promise((resolve, reject) => {
    const f = (...a: Args) => {
      if (!pred(...a)) return;
      clearTimeout(t);
      emitter.off(event, f);
      resolve(a);
    };
    const t = setTimeout(() => {
      emitter.off(event, f);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for '${event}'`));
    }, timeoutMs);
    emitter.on(event, f);
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
