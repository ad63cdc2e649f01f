import { ClientCore } from './client-core.js';
import { dial } from './connect.js';
import type { ClientOptions } from './options.js';

export type { ClientEvents, ClientStateName, CloseEvent, Dialer, UnsentMessage } from './client-core.js';

/** The Node client: the client core dialing TCP, TLS and WebSocket (`ws`) links. */
export class LonglinkClient extends ClientCore {
  constructor(opts: ClientOptions) {
    super(opts, dial);
  }
}
