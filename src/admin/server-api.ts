import { z } from 'zod';
import { isBase64 } from '../core/base64.js';
import type { Gateway } from '../gateway/gateway.js';
import type { PushResult } from '../gateway/push-tracker.js';
import type { PresenceEntry } from '../gateway/stores/store.js';
import { assertPayloadFits, GENERATED_ID_SHAPE } from '../protocol/data-frame-size.js';
import { LonglinkError } from '../protocol/errors.js';
import { isWellFormed } from '../protocol/well-formed.js';

/**
 * The server API: what a backend in any language calls to reach devices
 * (push to a user, to many, to one device; broadcast; presence; disconnect;
 * kick; a batch of these). HTTP + JSON under /v1 on the admin port, with an
 * API key of its own (docs/SERVER-API.md; the OpenAPI document is
 * docs/openapi.json and GET /v1/openapi.json). Each request body is checked
 * by a schema; a bad one gets 400 naming every bad field.
 */

/** Ids a store keeps: no lone surrogate, which would survive neither UTF-8 nor Redis's JSON. */
const wellFormed = (s: z.ZodString) => s.refine(isWellFormed, 'not well-formed Unicode (a lone surrogate)');
const id = wellFormed(z.string().min(1).max(256));
const messageId = wellFormed(z.string().min(1).max(128));
const payload = {
  text: z.string().optional(),
  json: z.unknown().optional(),
  // The pattern is there for the OpenAPI document; isBase64 also refuses a length base64 cannot have.
  base64: z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'not base64').refine(isBase64, 'not base64: a length base64 cannot have').optional(),
};
/** Exactly one of text, json, base64. */
const onePayload = (v: { text?: unknown; json?: unknown; base64?: unknown }) => [v.text, v.json, v.base64].filter((x) => x !== undefined).length === 1;
const ONE_PAYLOAD = { message: 'give exactly one of text, json, base64', path: ['text'] };

export const PushBody = z
  .strictObject({
    user: id.optional(),
    users: z.array(id).min(1).max(1000).optional(),
    device: id.optional(),
    ...payload,
    id: messageId.optional(),
    ttlMs: z.number().int().min(1).max(30 * 24 * 3600_000).optional(),
    waitMs: z.number().int().min(0).max(30_000).optional(),
  })
  .refine(onePayload, ONE_PAYLOAD)
  .refine((v) => (v.user === undefined) !== (v.users === undefined), { message: 'give user or users', path: ['user'] })
  .refine((v) => v.device === undefined || v.user !== undefined, { message: 'device goes with user', path: ['device'] });

export const BroadcastBody = z.strictObject({ ...payload, id: messageId.optional() }).refine(onePayload, ONE_PAYLOAD);
export const DisconnectBody = z.strictObject({ user: id, device: id.optional(), reconnectAfterMs: z.number().int().min(0).max(3600_000).optional() });
export const KickBody = z.strictObject({ user: id, device: id.optional() });
export const PresenceBody = z.strictObject({ users: z.array(id).min(1).max(1000) });
const Command = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('push'), args: z.unknown() }),
  z.strictObject({ op: z.literal('broadcast'), args: z.unknown() }),
  z.strictObject({ op: z.literal('disconnect'), args: z.unknown() }),
  z.strictObject({ op: z.literal('kick'), args: z.unknown() }),
  z.strictObject({ op: z.literal('presence'), args: z.unknown() }),
]);
export const BatchBody = z.strictObject({ commands: z.array(Command).min(1).max(1000) });

/** Users one request may push to or read the presence of, over all its commands (a command of one user counts 1). */
export const MAX_USERS_PER_REQUEST = 10_000;
/**
 * Devices one request's presence answers may list, over all its commands (five for each of
 * MAX_USERS_PER_REQUEST users). A user's online devices are not bounded, and a user may be named
 * again and again: 40 KB naming one user of 100 devices 10,000 times was answered with 190 MB.
 */
export const MAX_PRESENCE_DEVICES = 50_000;

/**
 * Broadcasts one request may make. Each is a write to every open connection (a 50 KB batch of 1,000
 * over 1,710 devices held the event loop 4.48 s before broadcasts were written in chunks), and it
 * counted as one user: more is refused whole with 413.
 */
export const MAX_BROADCASTS_PER_REQUEST = 10;
/**
 * Server-API broadcasts not yet written to this node's connections, over all requests: each holds
 * its payload and a list of the connections; more get 429 (retry after Retry-After).
 */
export const MAX_BROADCASTS_IN_PROGRESS = 20;

/** What the commands of one request share: each user's presence, read once, and the devices listed so far. */
interface RequestState {
  presence: Map<string, Promise<PresenceEntry[]>>;
  listed: number;
}

/** The broadcasts a request makes: counted before it is parsed, so before any of them is written. */
function broadcastsOf(op: string, args: unknown): number {
  if (op === 'broadcast') return 1;
  const commands = op === 'batch' && args && typeof args === 'object' ? (args as { commands?: unknown }).commands : undefined;
  return Array.isArray(commands) ? commands.filter((c) => (c as { op?: unknown } | null)?.op === 'broadcast').length : 0;
}

function usersOf(args: unknown): number {
  const users = args && typeof args === 'object' ? (args as { users?: unknown }).users : undefined;
  return Array.isArray(users) ? users.length : 1;
}

/** A refused call: HTTP status, a stable code and the message naming the field. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: 'LL_ERR_BAD_REQUEST' | 'LL_ERR_NOT_FOUND' | 'LL_ERR_STORE_UNAVAILABLE' | 'LL_ERR_PAYLOAD_TOO_LARGE' | 'LL_ERR_CLOSED' | 'LL_ERR_TOO_MANY_REQUESTS',
    message: string,
  ) {
    super(message);
  }
}

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.code === 'unrecognized_keys' ? `unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.join(', ')}` : i.message}`);
  throw new ApiError(400, 'LL_ERR_BAD_REQUEST', problems.join('; '));
}

function bytesOf(v: { text?: string; json?: unknown; base64?: string }): Uint8Array | string {
  if (v.text !== undefined) return v.text;
  if (v.base64 !== undefined) return Buffer.from(v.base64, 'base64');
  try {
    return JSON.stringify(v.json);
  } catch {
    // JSON.parse reads any depth, JSON.stringify recurses: `[[[...]]]` 200,000 deep (400 KB) overflows
    // its stack. The caller's input, so 400, not a 500 (or, in a batch, a store-unavailable 503).
    throw new ApiError(400, 'LL_ERR_BAD_REQUEST', 'json: nested too deeply to be sent');
  }
}

export type DeviceStatus = PushResult['devices'][number]['status'];

/** What a push answers: the library's result, with `unknown-user` / `unknown-device` said in the status. */
export interface PushAnswer {
  user: string;
  /** The message's id (absent only for a user whose push failed without one given). */
  id?: string;
  delivered: number;
  /** failed: (a push to several users) this user's could not be queued (the store); `error` says why. */
  status: 'ok' | 'unknown-user' | 'unknown-device' | 'failed';
  error?: { code: string; message: string };
  devices: { deviceId: string; status: DeviceStatus }[];
}

/**
 * A call that reads or publishes through the store: its failure (Redis down,
 * a timeout) is the documented 503 store-unavailable, as a push's is, not a 500.
 */
async function storeCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof ApiError || err instanceof LonglinkError) throw err;
    throw new ApiError(503, 'LL_ERR_STORE_UNAVAILABLE', `the store is unavailable: ${err instanceof Error ? err.message : String(err)}`);
  }
}

const noop = () => {};

export class ServerApi {
  /** Broadcasts of requests being answered (MAX_BROADCASTS_IN_PROGRESS). */
  private broadcasting = 0;

  constructor(private readonly gw: Gateway) {}

  /**
   * Runs one operation; `args` is the request body (or a batch command's args).
   * `onQueued` (a push): called once the message is queued for every user it
   * names, before their devices' acknowledgements are waited for.
   */
  async run(op: string, args: unknown, onQueued?: () => void): Promise<unknown> {
    const n = broadcastsOf(op, args);
    if (n > MAX_BROADCASTS_PER_REQUEST) throw new ApiError(413, 'LL_ERR_PAYLOAD_TOO_LARGE', `commands: ${n} broadcasts in one request (each is written to every connection); at most ${MAX_BROADCASTS_PER_REQUEST}`);
    if (n > 0 && this.broadcasting + n > MAX_BROADCASTS_IN_PROGRESS) {
      throw new ApiError(429, 'LL_ERR_TOO_MANY_REQUESTS', `${this.broadcasting} broadcasts are being written; at most ${MAX_BROADCASTS_IN_PROGRESS} at once: retry shortly`);
    }
    // Held until the request is answered: a broadcast answers once this node's connections are written.
    this.broadcasting += n;
    try {
      return await this.exec(op, args, { presence: new Map(), listed: 0 }, onQueued);
    } finally {
      this.broadcasting -= n;
    }
  }

  private async exec(op: string, args: unknown, state: RequestState, onQueued?: () => void): Promise<unknown> {
    // A closed gateway (drained, its admin port still open) would answer from a store it may have
    // closed: the memory store forgets everything, so every push said unknown-user (nothing
    // queued, as if the user had never connected) and presence offline. The caller retries later
    // or on another node.
    if (this.gw.closed) throw new ApiError(503, 'LL_ERR_CLOSED', 'the gateway is closed (drained or shut down); retry on another node or once it is back');
    switch (op) {
      case 'push': {
        const b = parse(PushBody, args);
        const opts = { ...(b.id ? { id: b.id } : {}), ...(b.ttlMs ? { ttlMs: b.ttlMs } : {}), ...(b.waitMs !== undefined ? { waitMs: b.waitMs } : {}) };
        const bytes = bytesOf(b);
        this.fits(bytes, b.id ?? GENERATED_ID_SHAPE);
        if (b.users) {
          // Each user on its own: one user's store failure must not fail the request whole, the others
          // already queued (retried whole, without an id, they would get it twice). All failing: the
          // store is down, and the request fails as a push to one user would.
          const users = [...new Set(b.users)];
          const each = users.map((u) => {
            let queued!: () => void;
            const isQueued = new Promise<void>((r) => (queued = r));
            return { pushed: this.pushOne(u, bytes, { ...opts, onQueued: queued }), isQueued };
          });
          // Queued for all once each user's push is queued or over (refused, failed, nobody to queue for).
          if (onQueued) void Promise.all(each.map((e) => Promise.race([e.isQueued, e.pushed.then(noop, noop)]))).then(onQueued);
          const settled = await Promise.allSettled(each.map((e) => e.pushed));
          if (settled.every((s) => s.status === 'rejected')) throw (settled[0] as PromiseRejectedResult).reason;
          return {
            results: settled.map((s, i): PushAnswer => {
              if (s.status === 'fulfilled') return s.value;
              const err = s.reason as { code?: unknown; message?: unknown };
              return { user: users[i], ...(opts.id ? { id: opts.id } : {}), delivered: 0, status: 'failed', devices: [], error: { code: typeof err?.code === 'string' ? err.code : 'LL_ERR_STORE_UNAVAILABLE', message: String(err?.message ?? err) } };
            }),
          };
        }
        return this.pushOne(b.user!, bytes, { ...opts, ...(b.device ? { deviceId: b.device } : {}), ...(onQueued ? { onQueued } : {}) });
      }
      case 'broadcast': {
        const b = parse(BroadcastBody, args);
        const bytes = bytesOf(b);
        this.fits(bytes, b.id);
        const r = await storeCall(() => this.gw.broadcastAcrossCluster(bytes, b.id ? { id: b.id } : {})).catch((err: unknown) => {
          // The gateway's broadcast queue is full (broadcasts from other nodes count too): retry shortly.
          if (err instanceof LonglinkError && err.code === 'LL_ERR_QUEUE_FULL') throw new ApiError(429, 'LL_ERR_TOO_MANY_REQUESTS', err.message);
          throw err;
        });
        return { sent: r.here, published: r.published };
      }
      case 'presence': {
        const b = parse(PresenceBody, args);
        // Each user read once per request, however often named; counted before any answer is built.
        const read = (u: string) => {
          let p = state.presence.get(u);
          if (!p) state.presence.set(u, (p = storeCall(() => this.gw.presence(u))));
          return p;
        };
        const found = await Promise.all(b.users.map(read));
        const listed = found.reduce((n, d) => n + d.length, 0);
        if (state.listed + listed > MAX_PRESENCE_DEVICES) {
          throw new ApiError(413, 'LL_ERR_PAYLOAD_TOO_LARGE', `users: ${listed} devices online to list${state.listed ? ` after ${state.listed} in this request` : ''}; at most ${MAX_PRESENCE_DEVICES} in one answer: ask for fewer users`);
        }
        state.listed += listed;
        return { users: b.users.map((u, i) => ({ user: u, online: found[i].length > 0, devices: found[i].map((d) => ({ deviceId: d.deviceId, nodeId: d.nodeId, transport: d.transport, since: d.since })) })) };
      }
      case 'disconnect': {
        const b = parse(DisconnectBody, args);
        return { disconnected: await storeCall(() => this.gw.closeAcrossCluster('disconnect', b.user, b.device, b.reconnectAfterMs !== undefined ? { reconnectAfterMs: b.reconnectAfterMs } : {})) };
      }
      case 'kick': {
        const b = parse(KickBody, args);
        return { kicked: await storeCall(() => this.gw.closeAcrossCluster('kick', b.user, b.device)) };
      }
      case 'batch': {
        const b = parse(BatchBody, args);
        // Each user of each push or presence read is an operation of its own (store calls; a push waits
        // up to 30 s): bounded per request.
        const ops = b.commands.reduce((n, c) => n + usersOf(c.args), 0);
        if (ops > MAX_USERS_PER_REQUEST) throw new ApiError(400, 'LL_ERR_BAD_REQUEST', `commands: ${ops} users in one request (pushes and presence reads, one per user); at most ${MAX_USERS_PER_REQUEST}`);
        // Concurrently, except that pushes to the same user keep their order (one chain per user; a
        // push to several users waits for each of theirs). A push holds up the next to its users only
        // until it is queued: the mailbox keeps the order, and waiting out each one's acknowledgements
        // (`waitMs`) would make N pushes to one user take N times as long. Each command is answered in
        // its place, with its result or its error.
        const chains = new Map<string, Promise<unknown>>();
        const results = await Promise.all(
          b.commands.map((c) => {
            const a = c.args as { user?: unknown; users?: unknown } | null;
            const keys = c.op !== 'push' || !a || typeof a !== 'object' ? [] : typeof a.user === 'string' ? [a.user] : Array.isArray(a.users) ? a.users.filter((u): u is string => typeof u === 'string') : [];
            let queued!: () => void;
            const isQueued = new Promise<void>((r) => (queued = r));
            const run = Promise.all(keys.map((k) => chains.get(k))).then(() =>
              this.exec(c.op, c.args, state, queued).catch((err: unknown) => {
                const e = err instanceof ApiError ? err : new ApiError(503, 'LL_ERR_STORE_UNAVAILABLE', err instanceof Error ? err.message : String(err));
                return { error: { code: e.code, message: e.message } };
              }),
            );
            const next = Promise.race([isQueued, run]);
            for (const k of keys) chains.set(k, next);
            return run;
          }),
        );
        return { results };
      }
    }
    throw new ApiError(404, 'LL_ERR_NOT_FOUND', `no operation ${op}`);
  }

  /** A message no device could take is refused whole, before any of it is queued: 413. */
  private fits(payload: Uint8Array | string, id: string | undefined): void {
    try {
      assertPayloadFits(typeof payload === 'string' ? Buffer.from(payload) : payload, id, this.gw.options.maxFrameBytes);
    } catch (err) {
      throw new ApiError(413, 'LL_ERR_PAYLOAD_TOO_LARGE', (err as Error).message);
    }
  }

  private async pushOne(user: string, bytes: Uint8Array | string, opts: { id?: string; ttlMs?: number; waitMs?: number; deviceId?: string; onQueued?: () => void }): Promise<PushAnswer> {
    const r = await this.gw.push(user, bytes, opts);
    return { user, id: r.id, delivered: r.delivered, status: r.unknownUser ? 'unknown-user' : r.unknownDevice ? 'unknown-device' : 'ok', devices: r.devices };
  }
}

/** Built once per version: the document is asked for with no credential, and building it costs about 1 ms of CPU. */
const openApiDocuments = new Map<string, Record<string, unknown>>();

/** The OpenAPI 3.1 document of the server API, made from the same schemas that check the requests. */
export function openApiDocument(version: string): Record<string, unknown> {
  let doc = openApiDocuments.get(version);
  if (!doc) openApiDocuments.set(version, (doc = buildOpenApiDocument(version)));
  return doc;
}

function buildOpenApiDocument(version: string): Record<string, unknown> {
  const schema = (s: z.ZodType) => z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' });
  const op = (summary: string, body: z.ZodType | null, answer: string) => ({
    post: {
      summary,
      ...(body ? { requestBody: { required: true, content: { 'application/json': { schema: schema(body) } } } } : {}),
      responses: {
        '200': { description: answer, content: { 'application/json': { schema: { type: 'object' } } } },
        '400': { description: 'a field is missing or wrong; the message names it', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
        '401': { description: 'no or a wrong API key', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
        '403': { description: 'no API key is set and the caller is not on a loopback address, or its Host is not a loopback name (LL_ERR_FORBIDDEN_HOST)', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
        '413': { description: 'a body over 1 MiB (LL_ERR_TOO_LARGE), (push, broadcast) a message whose frame would exceed the gateway\'s maxFrameBytes (LL_ERR_PAYLOAD_TOO_LARGE; nothing was queued), (presence) more than 50,000 devices to list in one request\'s answers, or (broadcast, batch) more than 10 broadcasts in one request (LL_ERR_PAYLOAD_TOO_LARGE)', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
        '415': { description: 'a body that is not application/json (LL_ERR_UNSUPPORTED_MEDIA_TYPE)', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
        '429': { description: '256 server-API requests are being answered, (broadcast, batch) 20 broadcasts are being written, or (broadcast) the fan-out queue is full (64 broadcasts or 64 MiB waiting to be written, broadcasts from other nodes included; in a batch, that command\'s error in its place): LL_ERR_TOO_MANY_REQUESTS; retry after Retry-After', headers: { 'Retry-After': { schema: { type: 'integer' } } }, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
        '503': { description: 'the store (Redis) could not be reached or failed the call (LL_ERR_STORE_UNAVAILABLE; a push to several users answers 503 only when every user failed), or the gateway is closed (LL_ERR_CLOSED, with Retry-After)', headers: { 'Retry-After': { schema: { type: 'integer' } } }, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
      },
    },
  });
  return {
    openapi: '3.1.0',
    info: { title: 'longlink server API', version, description: 'Push to devices, broadcast, presence, disconnect and kick, from a backend in any language. docs/SERVER-API.md has examples.' },
    components: {
      securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'the key given to `serve --api-key` (without one, only loopback callers are served)' } },
      schemas: { Error: { type: 'object', properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } }, required: ['code', 'message'] } } } },
    },
    security: [{ apiKey: [] }],
    paths: {
      '/v1/push': op('Push to a user (every device, or `device`), or to many `users`. Exactly one of text, json (sent as its JSON text) or base64.', PushBody, '{ user, id, delivered, status: ok | unknown-user | unknown-device, devices: [{ deviceId, status: delivered | queued | expired | dropped | failed }] }, or { results: [...] } for users'),
      '/v1/broadcast': op('Send to every open connection, best effort (nothing queued): this node\'s at once (`sent`), every other node\'s through Redis (`published`).', BroadcastBody, '{ sent, published }'),
      '/v1/presence': op('Which devices of each user are online, on any node.', PresenceBody, '{ users: [{ user, online, devices: [{ deviceId, nodeId, transport, since }] }] }'),
      '/v1/disconnect': op('Close a user\'s (or one device\'s) connections on every node with going-away; they reconnect (after reconnectAfterMs if given).', DisconnectBody, '{ disconnected }'),
      '/v1/kick': op('Close a user\'s (or one device\'s) connections on every node for good (4507 kicked).', KickBody, '{ kicked }'),
      '/v1/batch': op('Many commands in one request: pushes to one user in their order, the rest concurrently; each answered in its place with its result or its error.', BatchBody, '{ results: [...] }'),
    },
  };
}
