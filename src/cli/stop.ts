import os from 'node:os';

/**
 * SIGTERM and SIGINT in `serve`: a stop (a drain once it listens), taken
 * from the start as SIGHUP is (hangup.ts). Installed once the gateway
 * listened, a systemd stop or a Ctrl-C during a slow start (Redis not
 * answering yet, a predecessor's lease waited out) took Node's default and
 * ended the process at once, its Redis lease left to lapse. One that comes
 * before there is a stop to call is acted on once there is. `serve` takes a
 * second one, while stopping, as "now": the drain is cut short.
 */
export type StopSignal = 'SIGINT' | 'SIGTERM';

/** A stop cut short by a second signal exits as a shell reports that signal's death: 130 for SIGINT, 143 for SIGTERM. */
export const forcedExitCode = (signal: StopSignal): number => 128 + os.constants.signals[signal];

let pending: StopSignal | null = null;
let act: ((signal: StopSignal) => void) | null = null;
let held = false;

const on = (signal: StopSignal) => {
  if (act) act(signal);
  else pending ??= signal;
};

/** Takes SIGINT and SIGTERM from now on (once; later calls do nothing). */
export function holdStop(): void {
  if (held) return;
  held = true;
  process.on('SIGINT', () => on('SIGINT'));
  process.on('SIGTERM', () => on('SIGTERM'));
}

/** What SIGINT and SIGTERM do from now on; one held until now is done at once. */
export function onStop(fn: (signal: StopSignal) => void): void {
  holdStop();
  act = fn;
  if (pending) {
    const signal = pending;
    pending = null;
    fn(signal);
  }
}
