/**
 * Process plumbing shared by the multi-process benchmarks (the scale run and
 * the reconnect storm): JSON-lines children, spawning with the open-files
 * limit raised, and CPU, RSS and descriptors read from /proc.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';

export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString()) || 100;
  } catch {
    return 100;
  }
})();

/** A child process that prints JSON lines; `next` waits for one that matches. */
export class Child {
  readonly lines: ((l: Record<string, unknown>) => void)[] = [];
  constructor(readonly proc: ChildProcess) {
    readline.createInterface({ input: proc.stdout! }).on('line', (t) => {
      let l: Record<string, unknown>;
      try {
        l = JSON.parse(t);
      } catch {
        return;
      }
      for (const f of this.lines) f(l);
    });
  }
  next(pred: (l: Record<string, unknown>) => boolean, ms: number, what: string): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
      const f = (l: Record<string, unknown>) => {
        if (!pred(l)) return;
        clearTimeout(t);
        this.lines.splice(this.lines.indexOf(f), 1);
        resolve(l);
      };
      this.lines.push(f);
    });
  }
}

/** Spawns with the soft open-files limit raised to the hard one. */
export function spawnRaised(args: string[], stdio: ('pipe' | 'inherit' | 'ignore')[]): ChildProcess {
  return spawn('bash', ['-c', 'ulimit -n "$(ulimit -Hn)" && exec "$@"', 'bash', process.execPath, ...args], { stdio });
}

export function hardFileLimit(): number {
  return Number(execFileSync('bash', ['-c', 'ulimit -Hn']).toString().trim()) || 1024;
}

export function proc(pid: number): { ticks: number; rssKB: number; fds: number } | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const rss = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    let fds = 0;
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`).length;
    } catch {
      /* gone */
    }
    return { ticks: Number(f[11]) + Number(f[12]), rssKB: Number(rss?.[1] ?? 0), fds };
  } catch {
    return null;
  }
}

/** The process and its descendants (the cluster primary's workers; the bash wrapper exec'd away). */
export function tree(root: number): number[] {
  const kids = new Map<number, number[]>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]);
      const list = kids.get(ppid) ?? [];
      list.push(Number(d));
      kids.set(ppid, list);
    } catch {
      /* gone */
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    out.push(p);
    for (const k of kids.get(p) ?? []) walk(k);
  };
  walk(root);
  return out;
}


/** SIGKILLs a process and its descendants at once (a crash, not a shutdown). */
export function killTree(root: number): void {
  for (const pid of tree(root)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}
