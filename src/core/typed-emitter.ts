import { EventEmitter } from 'node:events';

/**
 * An event emitter whose event names and payloads are checked at compile
 * time: `on('bogus', ...)` and a listener of the wrong shape do not compile
 * (Node's own `EventEmitter<T>` still accepts any name). Its declaration
 * mentions no Node type, so the browser client's types stand on their own.
 */
export interface TypedEmitter<E extends { [K in keyof E]: unknown[] }> {
  on<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this;
  addListener<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this;
  prependListener<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this;
  once<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this;
  off<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this;
  removeListener<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this;
  removeAllListeners(event?: keyof E & string): this;
  emit<K extends keyof E & string>(event: K, ...args: E[K]): boolean;
  prependOnceListener<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this;
  listenerCount(event: keyof E & string): number;
  listeners<K extends keyof E & string>(event: K): ((...args: E[K]) => void)[];
  rawListeners<K extends keyof E & string>(event: K): ((...args: E[K]) => void)[];
  eventNames(): (string | symbol)[];
  setMaxListeners(n: number): this;
  getMaxListeners(): number;
}

/** A base class: `class Gateway extends typedEmitter<GatewayEvents>()`. */
export function typedEmitter<E extends { [K in keyof E]: unknown[] }>(): new () => TypedEmitter<E> {
  return EventEmitter as unknown as new () => TypedEmitter<E>;
}
