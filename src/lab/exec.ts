import { execFile } from 'node:child_process';
import { LonglinkError } from '../protocol/errors.js';

/** Runs a system command (ip, nft, conntrack, sysctl); rejects with its stderr. */
export function run(cmd: string, args: string[], input?: string, timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new LonglinkError('LL_ERR_LAB_COMMAND', `${cmd} ${args.join(' ')}: ${String(stderr).trim() || err.message}`));
      else resolve(String(stdout));
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** Runs a command inside a network namespace. */
export const inNs = (ns: string, cmd: string, args: string[], input?: string) => run('ip', ['netns', 'exec', ns, cmd, ...args], input);

/** Why the lab cannot run here, or null when it can (root, ip, nft, conntrack). */
export async function labUnavailable(): Promise<string | null> {
  if (process.platform !== 'linux') return 'the lab needs Linux network namespaces';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'the lab needs root (network namespaces, nftables)';
  for (const [cmd, args, pkg] of [
    ['ip', ['-V'], 'iproute2'],
    ['nft', ['--version'], 'nftables'],
    ['conntrack', ['--version'], 'conntrack'],
  ] as const) {
    try {
      await run(cmd, [...args]);
    } catch {
      return `${cmd} is not installed (Debian package ${pkg})`;
    }
  }
  return null;
}
