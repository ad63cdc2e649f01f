import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Lab } from './topology.js';
import type { AgentConfig } from './agent.js';

export const AGENT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'agent.js');

export type AgentLine = { ev: string; t: number } & Record<string, unknown>;

/** An agent process in a lab namespace: its JSON lines, commands, and SIGSTOP/SIGCONT. */
export class AgentProc {
  readonly lines: AgentLine[] = [];
  private readonly waiters = new Set<{ from: number; pred: (l: AgentLine) => boolean; resolve: (l: AgentLine | null) => void }>();
  private stderr = '';
  exited = false;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    child.stderr!.on('data', (d) => (this.stderr = (this.stderr + d).slice(-4000)));
    readline.createInterface({ input: child.stdout! }).on('line', (text) => {
      let l: AgentLine;
      try {
        l = JSON.parse(text);
      } catch {
        return;
      }
      this.lines.push(l);
      for (const w of this.waiters) {
        if (w.pred(l)) {
          this.waiters.delete(w);
          w.resolve(l);
        }
      }
    });
    child.once('exit', () => {
      this.exited = true;
      for (const w of this.waiters) w.resolve(null);
      this.waiters.clear();
    });
  }

  static start(lab: Lab, ns: string, name: string, config: AgentConfig): AgentProc {
    return new AgentProc(name, lab.spawn(ns, process.execPath, [AGENT, JSON.stringify(config)]));
  }

  /** The first line from index `from` on matching `pred`, or null after `timeoutMs` (or if the process exits). */
  waitFor(pred: (l: AgentLine) => boolean, timeoutMs: number, from = 0): Promise<AgentLine | null> {
    const seen = this.lines.slice(from).find(pred);
    if (seen) return Promise.resolve(seen);
    if (this.exited) return Promise.resolve(null);
    return new Promise((resolve) => {
      const w = { from, pred, resolve: (l: AgentLine | null) => (clearTimeout(timer), resolve(l)) };
      const timer = setTimeout(() => (this.waiters.delete(w), resolve(null)), timeoutMs);
      this.waiters.add(w);
    });
  }

  /** Like waitFor, but a timeout is an error naming what was awaited. */
  async expect(pred: (l: AgentLine) => boolean, timeoutMs: number, what: string, from = 0): Promise<AgentLine> {
    const l = await this.waitFor(pred, timeoutMs, from);
    if (!l) throw new Error(`${this.name}: no ${what} within ${timeoutMs} ms${this.stderr ? `; stderr: ${this.stderr}` : ''}`);
    return l;
  }

  command(cmd: Record<string, unknown>): void {
    this.child.stdin!.write(JSON.stringify(cmd) + '\n');
  }

  /** Asks a gateway for the network it measured (Gateway.networkStats) and waits for the answer. */
  async network(): Promise<AgentLine> {
    const from = this.lines.length;
    this.command({ cmd: 'network' });
    return this.expect((l) => l.ev === 'network', 5000, 'network', from);
  }

  /** Asks for stats and waits for the answer. */
  async stats(): Promise<AgentLine> {
    const from = this.lines.length;
    this.command({ cmd: 'stats' });
    return this.expect((l) => l.ev === 'stats', 5000, 'stats', from);
  }

  freeze(): void {
    this.child.kill('SIGSTOP');
  }

  thaw(): void {
    this.child.kill('SIGCONT');
  }

  kill(): void {
    this.child.kill('SIGCONT');
    this.child.kill('SIGKILL');
  }
}
