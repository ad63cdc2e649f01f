/**
 * Every `LonglinkError.code` that is not a close reason, with what it means
 * and what to do. The close reasons' codes (`LL_ERR_HEARTBEAT_TIMEOUT`, ...)
 * come from `CloseCodes` in errors.ts; docs/ERRORS.md lists both, and a test
 * checks that every code thrown anywhere in src/ is here or there.
 */
export const ERROR_CODES = {
  // Options and configuration: the caller's mistake, found before anything runs.
  LL_ERR_INVALID_OPTION: { area: 'option', meaning: 'an option is missing, out of range or inconsistent with another; the message names it' },
  LL_ERR_INVALID_CONFIG: { area: 'option', meaning: '`serve --config` or a LONGLINK_* variable holds an unknown key or a bad value; the message has every bad key' },
  LL_ERR_MISSING_DEPENDENCY: { area: 'option', meaning: 'an optional package is needed and not installed (`ioredis` for RedisStore)' },
  LL_ERR_UNAVAILABLE: { area: 'option', meaning: "a feature needs a native part that could not be loaded (reading keepalive settings without net-keepalive; a gateway's `fault` of kind config, op keepalive, when the keepalive interval, count and user timeout of its sockets cannot be set)" },
  LL_ERR_FILE_LIMIT: { area: 'option', meaning: 'a `fault` event of kind config: maxConnections was lowered to what the open-files limit allows' },
  // Starting and running the gateway.
  LL_ERR_LISTEN: { area: 'gateway', meaning: '`listen()` could not open a port (in use, no permission, no such address); `transport`, `host`, `port` and `cause` say which' },
  LL_ERR_STORE_UNAVAILABLE: { area: 'gateway', meaning: 'the store (Redis) cannot be reached or failed a call; a push resolves `failed` with it and the gateway goes on' },
  LL_ERR_NODE_ID_IN_USE: { area: 'gateway', meaning: '`listen()` with a Redis store: another live gateway holds this node id (its lease was renewed while this one waited one renewal); or, for two started at once, a `fault` event of kind config (op nodeId) once their renewals take each other\'s lease. Give each node its own id' },
  LL_ERR_STORE_EVICTS: { area: 'gateway', meaning: 'a `fault` of kind config at `listen()` when a Redis the gateway relies on has a `maxmemory-policy` other than `noeviction` (on any master of a cluster): the Redis store\'s (op maxmemory-policy), where a full Redis deletes queued messages, sessions and presence the gateway had reported stored, or the Redis stream sink\'s (op upstream redis-stream), where it may delete entries no worker has read. Set `maxmemory-policy noeviction`: writes then fail when Redis is full, and are retried or reported' },
  LL_ERR_UPSTREAM_REJECTED: { area: 'gateway', meaning: 'a backend refused a device\'s message for good (a webhook\'s 4xx other than 401, 403, 404, 407, 408, 425 and 429; a sink\'s UpstreamRejectedError): it is not retried, so the device\'s later messages are not held behind it; the gateway acknowledges it to the device (a re-send would be refused the same way), records it, emits no `message` and reports a `fault` (kind upstream) with the backend\'s answer' },
  LL_ERR_UPSTREAM_BUSY: { area: 'gateway', meaning: 'a `fault` (kind upstream) when a backend asked for a pause (a webhook\'s 429 or 503 with Retry-After; a sink\'s UpstreamBusyError): the message is retried after that time (at most upstream.retryMaxMs), not after the backoff alone, and is not acknowledged until the backend has it' },
  LL_ERR_BAD_REPLY: { area: 'gateway', meaning: 'a `fault` (kind upstream, op upstream-reply) when a webhook accepted a device\'s message with a reply it cannot be (`base64` that is not base64): the message is acknowledged, the reply not sent' },
  LL_ERR_UPSTREAM_TIMEOUT: { area: 'gateway', meaning: 'a `fault` (kind upstream) when a call to the upstream sink (a device\'s message, a lifecycle event) did not settle within upstream.attemptTimeoutMs (30 s, or the sink\'s own deadline plus a second if longer): the attempt counts as failed and the message is retried with backoff, not acknowledged until the backend has it; a late answer is ignored (the backend deduplicates by id)' },
  LL_ERR_QUEUE_FULL: { area: 'gateway', meaning: 'the in-memory store\'s mailboxes hold maxQueuedBytes in all (a device not online), or twice it (one online), or one user\'s devices hold maxQueuedBytesPerUser and the oldest messages of its devices not online do not make room: a push reports `failed` for that device (a `fault` event says why); nothing of another user is evicted for it; also a broadcast refused (nothing written) while 64 broadcasts, or 64 MiB of payloads and connection lists, wait to be written on this node (the server API answers 429 `LL_ERR_TOO_MANY_REQUESTS`), and one from another node dropped then, reported as a `fault` (kind broadcast, op queue-full)' },
  LL_ERR_PAYLOAD_TOO_LARGE: { area: 'gateway', meaning: 'a push, send or broadcast (or a client `send()`) whose DATA frame could exceed maxFrameBytes, refused before anything was queued (the other side would close the link on it, again on every reconnect); the server API answers 413. The message says how many bytes fit. Also a `fault` (kind upstream, op upstream-reply) when a webhook accepted a device\'s message with an answer over its read bound (1 MiB, or 8 × maxFrameBytes under `serve`): the message is acknowledged, its reply not read' },
  LL_ERR_INVALID_ID: { area: 'gateway', meaning: 'a user, device or message id passed to `push` that is not well-formed Unicode (a lone UTF-16 surrogate, which no UTF-8 peer and no Redis store can hold); nothing was queued. The server API answers 400' },
  LL_ERR_INVALID_IDENTITY: { area: 'gateway', meaning: 'a `fault` of kind auth: the authenticator (or connect hook) answered a HELLO with something that is not an identity: a `userId` or `deviceId` that is not a string (a number from a database), or a `clientInfo` that is not an object of string values. The device was told 4004 `server-error` (it comes back with backoff); fix the authenticator' },
  LL_ERR_CLOSED: { area: 'gateway', meaning: 'the connection or gateway closed while the operation waited (a handshake, a push); the server API answers 503 with it (and Retry-After) once its gateway is closed; `listen()` rejects with it on a gateway whose `close()` or `drain()` began before or while it opened its ports (what it opened is closed)' },
  // The client: dialing, sending.
  LL_ERR_BAD_URL: { area: 'client', meaning: 'a URL the dialer cannot open: a scheme it does not speak (tcp://, tls://, ws://, wss://), a tcp:// or tls:// URL without a port, a browser refusing the WebSocket (an insecure ws:// from an https page); with one URL to try, the client closes for good (4509), since every retry would fail the same way' },
  LL_ERR_CONNECT_TIMEOUT: { area: 'client', meaning: 'the TCP, TLS or WebSocket connect did not finish within handshakeTimeoutMs; the client retries with backoff' },
  LL_ERR_CONNECT_FAILED: { area: 'client', meaning: 'the browser WebSocket could not connect; the client retries with backoff' },
  LL_ERR_REFUSED: { area: 'client', meaning: 'the gateway refused the WebSocket before its upgrade (HTTP 503 with X-Longlink-Goaway); the client waits the hint, as after GOAWAY' },
  LL_ERR_UPGRADE_REFUSED: { area: 'client', meaning: 'the server answered the WebSocket upgrade with another HTTP status (not a longlink gateway, or a proxy in the way); an `UpgradeRefusedError` with `status`, and `retryAfterMs` from the Retry-After of a 503 or 429, which the client waits at least (at most 10 minutes) before its next attempt' },
  LL_ERR_OUTBOX_FULL: { area: 'client', meaning: '`send()` while maxOutbox messages, or maxOutboxBytes of payload, wait for acknowledgement (a lone message always fits); nothing was queued' },
  // The admin port (HTTP status in brackets).
  LL_ERR_BAD_REQUEST: { area: 'admin', meaning: '[400] a bad body field or query parameter, or a body that did not arrive whole (the caller went away or sent it too slowly)' },
  LL_ERR_BAD_PATH: { area: 'admin', meaning: '[400] a malformed %-escape in the path, or a request target that is not a path (one starting with `//` included)' },
  LL_ERR_UNAUTHORIZED: { area: 'admin', meaning: '[401] no or a wrong admin token, or server-API key' },
  LL_ERR_FORBIDDEN_HOST: { area: 'admin', meaning: '[403] without a token (admin API) or key (server API), a caller that is not on a loopback address, or a Host that is not a loopback name (DNS rebinding)' },
  LL_ERR_NOT_FOUND: { area: 'admin', meaning: '[404] no such endpoint, file or connection' },
  LL_ERR_METHOD_NOT_ALLOWED: { area: 'admin', meaning: '[405] the wrong method for an endpoint' },
  LL_ERR_TOO_LARGE: { area: 'admin', meaning: '[413] a request body over 64 KiB (admin API) or 1 MiB (server API)' },
  LL_ERR_TOO_MANY_REQUESTS: { area: 'admin', meaning: '[429] more server-API requests in flight (256), server-API broadcasts in progress (20) or live event streams (64) than the admin port serves at once, or a broadcast that finds the gateway\'s broadcast queue full (`LL_ERR_QUEUE_FULL`); retry after Retry-After' },
  LL_ERR_UNSUPPORTED_MEDIA_TYPE: { area: 'admin', meaning: '[415] a POST that is not application/json' },
  LL_ERR_INTERNAL: { area: 'admin', meaning: '[500] the admin handler failed (logged)' },
  LL_ERR_PEER_UNAVAILABLE: { area: 'admin', meaning: '[502] another node of the cluster did not answer through this one (/api/nodes/<id>/...)' },
  // The network lab.
  LL_ERR_LAB_COMMAND: { area: 'lab', meaning: 'a command the lab ran (ip, nft, tc) failed; the message has its output' },
} as const;

export type NonCloseErrorCode = keyof typeof ERROR_CODES;
