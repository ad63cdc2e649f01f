import type { Gateway, GatewayEvents } from '../gateway/gateway.js';

export type GatewayHandlers = { [K in keyof GatewayEvents]?: (...args: GatewayEvents[K]) => void };

/** Listens to several gateway events at once; returns the function that stops all of them. */
export function subscribe(gw: Gateway, handlers: GatewayHandlers): () => void {
  // The map pairs each event with its own handler type; TypeScript cannot follow that through Object.entries.
  const entries = Object.entries(handlers) as [keyof GatewayEvents, never][];
  for (const [event, fn] of entries) gw.on(event, fn);
  return () => {
    for (const [event, fn] of entries) gw.off(event, fn);
  };
}
