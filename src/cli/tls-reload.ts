import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';

export interface TlsFiles {
  cert: string;
  key: string;
}

/**
 * Serves a renewed certificate without a restart: the files are read again
 * when either changes (polled, since a renewal usually swaps a symlink, which
 * fs.watch misses) and when `hangup` is called (serve's SIGHUP, hangup.ts: a
 * certbot deploy hook's `kill -HUP`). A pair that does not load yet (the
 * certificate written, the key not) is logged and the old one kept; the
 * second file's change tries again.
 *
 * `served` is the pair the listeners were given: the files are compared with
 * it at once, since a renewal between start-up and now (seconds, with Redis)
 * changes no file after the poll's first look, and was kept unserved until
 * the next renewal or SIGHUP.
 */
export function reloadTlsOnChange(
  files: TlsFiles,
  served: { cert: Buffer; key: Buffer },
  apply: (tls: { cert: Buffer; key: Buffer }) => void,
  log: Logger,
  pollMs = 30_000,
): { hangup: () => void; stop: () => void } {
  const reload = (trigger: 'SIGHUP' | 'file-changed') => {
    let next: { cert: Buffer; key: Buffer };
    try {
      next = { cert: readFileSync(files.cert), key: readFileSync(files.key) };
    } catch (err) {
      log.warn({ event: 'tls-reload-failed', trigger, error: (err as Error).message }, 'cannot read the TLS files; still serving the old certificate');
      return;
    }
    if (trigger === 'file-changed' && next.cert.equals(served.cert) && next.key.equals(served.key)) return;
    try {
      apply(next);
    } catch (err) {
      log.warn({ event: 'tls-reload-failed', trigger, error: (err as Error).message }, 'the new TLS files do not load; still serving the old certificate');
      return;
    }
    served = next;
    let validTo: string | undefined;
    try {
      validTo = new X509Certificate(next.cert).validTo;
    } catch {
      validTo = undefined;
    }
    log.info({ event: 'tls-reloaded', trigger, validTo }, 'serving the TLS certificate read again');
  };
  const onChange = () => reload('file-changed');
  for (const f of [files.cert, files.key]) watchFile(f, { interval: pollMs, persistent: false }, onChange);
  reload('file-changed');
  return {
    hangup: () => reload('SIGHUP'),
    stop: () => {
      for (const f of [files.cert, files.key]) unwatchFile(f, onChange);
    },
  };
}
