import { readFileSync } from 'node:fs';
import { InvalidArgumentError, type CommanderError } from 'commander';
import { MAX_TIMER_MS } from '../core/heartbeat-policy.js';

/** Commander argument parsers with clear errors. */
export function int(value: string): number {
  // Number('') is 0, which for most limits means none: an unset variable must not turn one off.
  if (value.trim() === '') throw new InvalidArgumentError('expected a non-negative integer, got an empty value');
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
}

/** A drain's window or ack wait: at most an hour (as POST /api/drain), checked at start; the drain refused it at SIGTERM, and serve died without draining. */
export function drainMs(value: string): number {
  const n = int(value);
  if (n > 3_600_000) throw new InvalidArgumentError('expected at most 3600000 ms (an hour)');
  return n;
}

/** A bound: 0 would refuse everything, so at least 1. */
export function positiveInt(value: string): number {
  if (value.trim() === '') throw new InvalidArgumentError('expected a positive integer, got an empty value');
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

/**
 * A period armed as one timer or poll: positive, and at most 2^31 − 1 ms. Past it Node fires a
 * timer after 1 ms, and fs.watchFile throws (past 2^32 − 1) after the listeners are up.
 */
export function timerMs(value: string): number {
  const n = positiveInt(value);
  if (n > MAX_TIMER_MS) throw new InvalidArgumentError(`expected at most ${MAX_TIMER_MS} ms`);
  return n;
}

/** A URL path, such as the WebSocket upgrade's: without its leading slash no request matches it. */
export function urlPath(value: string): string {
  if (!value.startsWith('/')) throw new InvalidArgumentError('expected a path starting with /');
  return value;
}

/** A size as pino-roll reads it (100m, 512k, 1g; a bare number is MB), checked before its worker thread fails on it. */
export function logSize(value: string): string {
  if (!/^\d+(\.\d+)?[kmg]?$/i.test(value.trim())) throw new InvalidArgumentError('expected a size: a number, then k, m or g (a bare number is MB)');
  return value.trim();
}

export function keyValue(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const i = value.indexOf('=');
  if (i <= 0) throw new InvalidArgumentError('expected key=value');
  return { ...previous, [value.slice(0, i)]: value.slice(i + 1) };
}

export function port(value: string): number {
  if (value.trim() === '') throw new InvalidArgumentError('expected a port, got an empty value');
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('expected a port, 0 to 65535 (0: any free port)');
  return n;
}

/** A fraction in (0, 1]. */
export function fraction(value: string): number {
  if (value.trim() === '') throw new InvalidArgumentError('expected a number in (0, 1], got an empty value');
  const n = Number(value);
  if (!(n > 0 && n <= 1)) throw new InvalidArgumentError('expected a number in (0, 1]');
  return n;
}

/** A positive number (a factor): not NaN, not 0, not Infinity. */
export function positiveNumber(value: string): number {
  if (value.trim() === '') throw new InvalidArgumentError('expected a positive number, got an empty value');
  const n = Number(value);
  if (!(n > 0 && Number.isFinite(n))) throw new InvalidArgumentError('expected a positive number');
  return n;
}

/**
 * A backend's URL (--connect-hook, --upstream-webhook, --jwks-url): checked at
 * start, since a typo was only found at the first HELLO or message, each one
 * then failing and retried for good.
 */
export function httpUrl(value: string): string {
  if (value.trim() === '') throw new InvalidArgumentError('given but empty (unset it to go without)');
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new InvalidArgumentError('expected an http:// or https:// URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new InvalidArgumentError(`expected an http:// or https:// URL, not ${u.protocol}//`);
  return value;
}

/** A file an option names, read at start: an error names the option and the file. */
export function readOptionFile(flag: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new Error(`${flag} ${file}: ${(err as Error).message}`);
  }
}

/**
 * What every longlink command does with the parser's own refusals (an unknown flag, a missing or
 * bad value): exit 2, as a bad option does anywhere (commander's default is 1, which `client`
 * means for a session ended for good and `serve` for a start that cannot go on). --help and
 * --version still exit 0.
 */
export function exitOnUsageError(err: CommanderError): never {
  process.exit(err.exitCode === 0 ? 0 : 2);
}
