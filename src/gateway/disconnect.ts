import type { CloseReason } from '../protocol/errors.js';

/**
 * Why a connection ended, as the gateway reports it in `offline` events:
 * a close reason the gateway chose (see protocol/errors.ts), or one of
 *   client-close     the client sent CLOSE (or a WebSocket close frame, with a code or none: 1005) itself
 *   transport-close  the socket ended or failed with no CLOSE nor close frame (reset, FIN, error: 1006)
 */
export type DisconnectReason = CloseReason | 'client-close' | 'transport-close';
