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

/** The admin port's socket bound at its largest. */
export const MAX_ADMIN_SOCKETS = 1024;

/**
 * Sockets the admin port may hold: 1,024, or a sixteenth of the file limit
 * where that is less (a default `ulimit -n` of 1,024 would otherwise let the
 * admin port's callers take every file the devices need).
 */
export function adminSocketBudget(fileLimit: number | null): number {
  return fileLimit === null ? MAX_ADMIN_SOCKETS : Math.max(16, Math.min(MAX_ADMIN_SOCKETS, Math.floor(fileLimit / 16)));
}

/**
 * The most connections the process can hold with descriptors to spare for
 * refusing the rest, for the admin port's sockets at their bound and for
 * `extraReserve` more (the upstream backend's sockets): past the file limit,
 * accept() fails and a newcomer is reset without a word; below it,
 * admission answers with GOAWAY.
 */
export function connectionCeiling(fileLimit: number | null, extraReserve = 0): number | null {
  if (fileLimit === null) return null;
  return Math.max(1, Math.floor(fileLimit * 0.98) - FD_RESERVE - adminSocketBudget(fileLimit) - extraReserve);
}
