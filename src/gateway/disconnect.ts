import type { CloseReason } from '../protocol/errors.js';

/**
 * Why a connection ended, as the gateway reports it in `offline` events:
 * a close reason the gateway chose (see protocol/errors.ts), or one of
 *   client-close     the client sent CLOSE (or a WebSocket close) itself
 *   transport-close  the socket ended or failed with no CLOSE (reset, FIN, error)
 */
export type DisconnectReason = CloseReason | 'client-close' | 'transport-close';
