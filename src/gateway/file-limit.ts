import { readFileSync } from 'node:fs';

/** Descriptors kept back for what is not a client: listeners, the admin port, Redis, logs, files. */
export const FD_RESERVE = 64;

/**
 * The process's soft limit on open files, from /proc/self/limits (Linux), or
 * null where it cannot be read. Node has no API for it.
 */
export function openFileLimit(read: () => string = () => readFileSync('/proc/self/limits', 'utf8')): number | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(read());
    if (!m || m[1] === 'unlimited') return null;
    return Number(m[1]);
  } catch {
    return null;
  }
}

/**
 * The most connections the process can hold with descriptors to spare for
 * refusing the rest: past the file limit, accept() fails and a newcomer is
 * reset without a word; below it, admission answers with GOAWAY.
 */
export function connectionCeiling(fileLimit: number | null): number | null {
  if (fileLimit === null) return null;
  return Math.max(1, Math.floor(fileLimit * 0.98) - FD_RESERVE);
}
