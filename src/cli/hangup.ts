/**
 * SIGHUP in `serve`: a reload (the TLS files read again), never an end.
 * Node's default for it ends the process at once, so a gateway without TLS
 * (or with, before it had listened) that was sent one (a certbot deploy
 * hook, `pkill -HUP`, `systemctl reload`) cut every link undrained, and a
 * primary of `--workers` took every worker with it. The handler is taken
 * before anything slow (Redis, the listeners); a SIGHUP that comes before
 * the process is ready is acted on once it is.
 */
let pending = false;
let act: (() => void) | null = null;
let held = false;

const onHup = () => {
  if (act) act();
  else pending = true;
};

/** Takes SIGHUP from now on (once; later calls do nothing). */
export function holdHangup(): void {
  if (held) return;
  held = true;
  process.on('SIGHUP', onHup);
}

/** What a SIGHUP does from now on; one held until now is done at once. */
export function onHangup(fn: () => void): void {
  holdHangup();
  act = fn;
  if (pending) {
    pending = false;
    fn();
  }
}
