import { randomBytes } from 'node:crypto';
import { Command, InvalidArgumentError, Option } from 'commander';
import pino from 'pino';
import { createPublicKey } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { isDeepStrictEqual } from 'node:util';
import { DRAIN_DEFAULTS, Gateway } from '../gateway/gateway.js';
import type { LonglinkError } from '../protocol/errors.js';
import { DEFAULTS, DEFAULT_TCP_PORT, DEFAULT_WS_PORT, DELIVERY_DEFAULTS, LIMIT_DEFAULTS, type Authenticate } from '../gateway/options.js';
import { jwtAuthenticator } from '../auth/jwt-authenticator.js';
import { DEFAULT_POLICY, DEFAULT_PROBES, silenceLimitMs } from '../core/heartbeat-policy.js';
import cluster, { type Worker } from 'node:cluster';
import http from 'node:http';
import { AggregatorRegistry } from 'prom-client';
import { ClusterMetrics } from './cluster-metrics.js';
import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { drainMs, exitOnUsageError, fraction, httpUrl, int, logSize, port, positiveInt, readOptionFile, timerMs, urlPath } from './parse.js';
import { applyConfigFile, applyEnv, bindEnv, printConfig, unknownEnv } from './config.js';
import { relayChat, RELAY_BUDGET } from './chat-relay.js';
import { webhookSink } from '../upstream/webhook.js';
import { connectHook } from '../auth/connect-hook.js';
import { redactUrl } from '../gateway/stores/redis-connect.js';
import { STREAM_MAXLEN_DEFAULT, streamSink } from '../upstream/redis-stream.js';
import { UPSTREAM_DEFAULTS, type UpstreamSink } from '../gateway/upstream.js';
import { RedisStore, REDIS_DEFAULTS } from '../gateway/stores/redis-store.js';
import { MemoryStore, MEMORY_STORE_DEFAULTS } from '../gateway/stores/memory-store.js';
import { LogLimiter } from './log-limiter.js';
import { reloadTlsOnChange } from './tls-reload.js';
import { holdHangup, onHangup } from './hangup.js';
import { forcedExitCode, holdStop, onStop, type StopSignal } from './stop.js';
import { ADMIN_SERVER_OPTIONS, AdminServer, bearer, DEFAULT_ADMIN_PORT, isLoopbackHost, limitAdminSockets, notLoopback, requestTarget, sameSecret, type AdminError } from '../admin/admin-server.js';

/**
 * `longlink serve`: the gateway with the in-memory store, or with Redis
 * (`--redis`) as one node of a cluster, running the built-in chat relay
 * (chat-relay.ts).
 */
export function serveCommand(): Command {
  return bindEnv(new Command('serve')
    .description('run the gateway (TCP and WebSocket listeners; an in-memory store, or Redis with --redis); every flag may also come from LONGLINK_<FLAG> in the environment or from --config')
    // A bad option exits 2 wherever it came from (docs/OPERATIONS.md): commander's own refusals of a
    // flag (unknown, invalid, missing its value) exit 1 by default, the code of a start that failed,
    // which a supervisor retries; the same value from LONGLINK_* or --config already exits 2.
    .exitOverride(exitOnUsageError)
    .option('--config <file>', 'read options from this YAML or JSON file (keys are the flags without dashes; flags and environment win)')
    .option('--print-config', 'print the effective configuration as YAML (a complete example file) and exit')
    .option('--host <host>', 'address to listen on', DEFAULTS.host)
    .option('--tcp-port <port>', 'raw TCP port (0 = any free port)', port, DEFAULT_TCP_PORT)
    .option('--no-tcp', 'do not listen on raw TCP')
    .option('--ws-port <port>', 'WebSocket port (0 = any free port)', port, DEFAULT_WS_PORT)
    .option('--no-ws', 'do not listen for WebSocket')
    .option('--ws-path <path>', 'WebSocket upgrade path', urlPath, DEFAULTS.wsPath)
    .option('--heartbeat-interval-ms <ms>', 'default heartbeat interval', int, DEFAULT_POLICY.intervalMs)
    .option('--heartbeat-min-interval-ms <ms>', 'shortest interval a client may announce', int, DEFAULT_POLICY.minIntervalMs)
    .option('--heartbeat-max-interval-ms <ms>', 'longest interval a client may announce', int, DEFAULT_POLICY.maxIntervalMs)
    .option('--miss-budget <n>', 'intervals of silence tolerated before closing', int, DEFAULT_POLICY.missBudget)
    .option('--grace-ms <ms>', 'slack added to the silence limit', int, DEFAULT_POLICY.graceMs)
    .addOption(new Option('--detector <kind>', 'detector for client-sent heartbeats: silence (closes at interval × miss budget + grace of silence), freshness (the same bound from when the next heartbeat was due; fewer false closes, see docs/LAB.md) or phi; `longlink tune` picks the settings').choices(['silence', 'freshness', 'phi']).default('silence'))
    .option('--no-server-direction', 'refuse clients that ask the server to send heartbeats')
    .option('--pong-timeout-ms <ms>', 'server-sent heartbeats: wait for an answer', int, DEFAULT_PROBES.pongTimeoutMs)
    .option('--probe-count <n>', 'server-sent heartbeats: quick probes before closing', int, DEFAULT_PROBES.probeCount)
    .option('--probe-interval-ms <ms>', 'server-sent heartbeats: wait after each probe', int, DEFAULT_PROBES.probeIntervalMs)
    .option('--keepalive-idle-ms <ms>', 'TCP keepalive idle time before probes (TCP_KEEPIDLE), whole seconds; 0 = off', int, 0)
    .option('--keepalive-interval-ms <ms>', 'TCP keepalive probe interval (TCP_KEEPINTVL), whole seconds; needs --keepalive-idle-ms', int)
    .option('--keepalive-count <n>', 'TCP keepalive probes before drop (TCP_KEEPCNT); needs --keepalive-idle-ms', int)
    .option('--user-timeout-ms <ms>', 'TCP_USER_TIMEOUT: max time data may stay unacknowledged; 0 = kernel default', int, 0)
    .option('--handshake-timeout-ms <ms>', 'close connections that send no HELLO within this time', timerMs, DEFAULTS.handshakeTimeoutMs)
    .option('--max-frame-bytes <n>', 'largest frame accepted', int, DEFAULTS.maxFrameBytes)
    .option('--session-ttl-ms <ms>', 'how long a session may be resumed after disconnect', int, DEFAULTS.sessionTtlMs)
    .option('--max-queued <n>', 'most messages kept per device (unacknowledged or offline)', int, DELIVERY_DEFAULTS.maxQueuedPerDevice)
    .option('--max-queued-bytes <n>', 'most payload bytes kept per device (the oldest go first beyond it)', int, DELIVERY_DEFAULTS.maxQueuedBytesPerDevice)
    .option('--message-ttl-ms <ms>', 'time-to-live of a pushed message not yet acknowledged', int, DELIVERY_DEFAULTS.messageTtlMs)
    .option('--probe-before-push-ms <ms>', 'probe a link silent this long before pushing into it (0 = off; default: its heartbeat interval)', int)
    .option('--wheel-tick-ms <ms>', 'timer wheel resolution', int, DEFAULTS.wheelTickMs)
    .option('--node-id <id>', 'name of this gateway node in presence entries')
    .option('--redis <url>', 'share presence, sessions and queues with other nodes through Redis (redis://host:port)')
    .option('--redis-prefix <prefix>', 'key prefix in Redis', REDIS_DEFAULTS.prefix)
    .option('--redis-cluster', 'Redis Cluster: --redis (and --upstream-redis-stream) list seed nodes, comma-separated')
    .option('--redis-wait-replicas <n>', 'a queued message (and a stream entry) counts as accepted once this many replicas hold it (WAIT)', int, REDIS_DEFAULTS.waitReplicas)
    .option('--redis-command-timeout-ms <ms>', 'a Redis command not answered in this long fails (a paused or cut-off server): pushes answer 503, links close with 4004 and retry', timerMs, REDIS_DEFAULTS.commandTimeoutMs)
    .option('--redis-mailbox-shards <n>', 'mailboxes spread over this many hash tags (slots); the expiry sweep reads one index per shard', int, REDIS_DEFAULTS.mailboxShards)
    .option('--tls-cert <file>', 'serve TLS: certificate chain (PEM); TCP becomes tls://, WebSocket wss://')
    .option('--tls-key <file>', 'serve TLS: private key (PEM)')
    .option('--tls-reload-poll-ms <ms>', 'read --tls-cert and --tls-key again when they change, checked this often (and on SIGHUP): a renewed certificate without a restart', timerMs, 30_000)
    .option('--jwt-secret <secret>', 'require an HS256 JWT in HELLO, signed with this secret of at least 32 bytes (or set LONGLINK_JWT_SECRET)')
    .option('--jwt-public-key <file>', 'require an RS256/ES256 JWT, verified with this public key (PEM)')
    .option('--jwks-url <url>', "require an RS256/ES256 JWT, verified with the issuer's JWK set at this URL", httpUrl)
    .option('--jwt-issuer <iss>', 'accepted token issuer (iss); needs --jwt-secret, --jwt-public-key or --jwks-url')
    .option('--jwt-audience <aud>', 'accepted token audience (aud); needs --jwt-secret, --jwt-public-key or --jwks-url')
    .option('--max-connections <n>', 'connections held at once per process (0 = no limit)', int, LIMIT_DEFAULTS.maxConnections)
    .option('--max-connections-per-source <n>', 'connections held at once from one address (0 = no limit)', int, LIMIT_DEFAULTS.maxConnectionsPerSource)
    .option('--max-online-devices-per-user <n>', "one user's devices online at once (over the cluster with --redis); another device beyond it is told to come back later (0 = no limit)", int, LIMIT_DEFAULTS.maxOnlineDevicesPerUser)
    .option('--handshakes-per-second <n>', 'new connections admitted per second per process (0 = no limit)', int, LIMIT_DEFAULTS.handshakesPerSecond)
    .option('--handshake-burst <n>', 'new connections admitted at once before the rate applies (default: one second of the rate)', int)
    .option('--handshake-source-share <fraction>', 'of the handshake rate and burst, what one source address may take once the bucket is half empty (1: off; raise behind a carrier-grade NAT or a proxy)', fraction, LIMIT_DEFAULTS.handshakeSourceShare)
    .option('--max-pending-handshakes <n>', 'connections accepted but not yet open at once; more are told to come back later (0 = no limit)', int, LIMIT_DEFAULTS.maxPendingHandshakes)
    .option('--max-pending-handshakes-per-source <n>', 'the same from one source address (0 = no limit)', int, LIMIT_DEFAULTS.maxPendingHandshakesPerSource)
    .option('--min-ping-gap-ms <ms>', 'average PING spacing a client must keep (0 = no limit; default: a fifth of the shortest interval)', int)
    .option('--ping-burst <n>', 'PINGs allowed at once before the spacing applies', int, LIMIT_DEFAULTS.pingBurst)
    .option('--max-write-buffer-bytes <n>', 'unsent output after which a connection is a slow consumer', int, LIMIT_DEFAULTS.maxWriteBufferBytes)
    .option('--slow-consumer-ms <ms>', 'how long delivery may wait for a full write buffer to drain', int, LIMIT_DEFAULTS.slowConsumerMs)
    .option('--max-data-per-second <n>', 'DATA frames a client may send per second on average (0 = no limit)', int, LIMIT_DEFAULTS.maxDataPerSecond)
    .option('--data-burst <n>', 'DATA frames allowed at once before the rate applies', int, LIMIT_DEFAULTS.dataBurst)
    .option('--max-client-info-bytes <n>', "HELLO's clientInfo, keys plus values", int, LIMIT_DEFAULTS.maxClientInfoBytes)
    .option('--max-state-bytes <n>', 'client state merged from PINGs, keys plus values', int, LIMIT_DEFAULTS.maxStateBytes)
    .option('--max-state-keys <n>', 'client state keys merged from PINGs', int, LIMIT_DEFAULTS.maxStateKeys)
    .option('--max-message-id-bytes <n>', 'length of a DATA id', int, LIMIT_DEFAULTS.maxMessageIdBytes)
    .option('--max-id-bytes <n>', "HELLO's userId, deviceId and resumeToken, each, in UTF-8 bytes", int, LIMIT_DEFAULTS.maxIdBytes)
    .option('--max-token-bytes <n>', "HELLO's token, in characters (it goes to the authenticator and a connect hook as it is)", int, LIMIT_DEFAULTS.maxTokenBytes)
    .option('--max-inbound-waiting-per-link <n>', "a link's messages waiting to be accepted (store checks, the upstream backend); beyond it GOAWAY 4004", int, LIMIT_DEFAULTS.maxInboundWaitingPerLink)
    .option('--max-inbound-waiting-bytes <n>', 'payload bytes of those messages over all links; beyond it GOAWAY 4004', int, LIMIT_DEFAULTS.maxInboundWaitingBytes)
    .option('--max-inbound-waiting-bytes-per-link <n>', 'the same for one link (a lone message is always let in)', int, LIMIT_DEFAULTS.maxInboundWaitingBytesPerLink)
    .option('--inbound-source-share <fraction>', 'of the upstream backlog and those bytes (and of --max-partial-frame-bytes), what one source address may hold once they are half full (1: off; raise behind a carrier-grade NAT or a proxy)', fraction, LIMIT_DEFAULTS.inboundSourceShare)
    .option('--max-partial-frame-bytes <n>', 'bytes held in frames not whole yet over all links; a link past it is closed with 4004 (0 = no limit)', int, LIMIT_DEFAULTS.maxPartialFrameBytes)
    .option('--dedup-ids <n>', 'client message ids remembered per device for duplicate detection', int, MEMORY_STORE_DEFAULTS.dedupIdsPerDevice)
    .option('--dedup-window-ms <ms>', 'how long a client message id is remembered', int, MEMORY_STORE_DEFAULTS.dedupWindowMs)
    .option('--max-queued-bytes-total <n>', 'in-memory store: payload bytes queued in all mailboxes; a push beyond it fails for that device (LL_ERR_QUEUE_FULL)', positiveInt, MEMORY_STORE_DEFAULTS.maxQueuedBytes)
    .option('--max-queued-bytes-per-user <n>', "in-memory store: payload bytes queued for one user's devices together; a push beyond it fails for that device (LL_ERR_QUEUE_FULL)", positiveInt, MEMORY_STORE_DEFAULTS.maxQueuedBytesPerUser)
    .option('--max-detached-session-bytes <n>', 'in-memory store: bytes of session records kept for a resume after their link ended', int, MEMORY_STORE_DEFAULTS.maxDetachedSessionBytes)
    .option('--max-detached-session-bytes-per-user <n>', "in-memory store: of those, one user's; beyond it the user's own least recently saved go", positiveInt, MEMORY_STORE_DEFAULTS.maxDetachedSessionBytesPerUser)
    .option('--max-known-devices-per-user <n>', 'devices remembered per user for offline pushes', int, MEMORY_STORE_DEFAULTS.maxKnownDevicesPerUser)
    .option('--max-devices-per-user <n>', 'in-memory store: devices with any record per user (known, sessions, online); a new one drops one that is not online', positiveInt, MEMORY_STORE_DEFAULTS.maxDevicesPerUser)
    .option('--relay-per-user <n>', 'built-in relay: messages of one sender being relayed at once (more are not relayed)', positiveInt, RELAY_BUDGET.perUser)
    .option('--relay-total <n>', 'built-in relay: messages being relayed at once in all', positiveInt, RELAY_BUDGET.total)
    .option('--log-every-connection', 'log every online and offline line (by default at most 20 per reason per 10 s, then a count)')
    .option('--drain-window-ms <ms>', 'on SIGTERM/SIGINT: spread the clients\' reconnect hints over this window, at most an hour', drainMs, DRAIN_DEFAULTS.windowMs)
    .option('--drain-ack-timeout-ms <ms>', 'on SIGTERM/SIGINT: longest wait for messages in flight to be acknowledged, at most an hour', drainMs, DRAIN_DEFAULTS.ackTimeoutMs)
    .option('--admin-port <port>', 'admin port: metrics, JSON API, dashboard (0 = any free port; with --workers, the primary serves the cluster metrics here and worker i its admin port at port + 1 + i)', port, DEFAULT_ADMIN_PORT)
    .option('--admin-host <host>', 'address the admin port listens on (keep it private)', '127.0.0.1')
    .addOption(new Option('--app <app>', "what handles devices' messages: relay (the built-in chat relay: echo, or '@user text' to that user), none (a gateway for backends), or auto: relay unless an upstream is set").choices(['auto', 'relay', 'none']).default('auto'))
    .option('--connect-hook <url>', 'POST each HELLO to this backend URL, which allows or refuses it and may set the user, client info and heartbeat', httpUrl)
    .option('--connect-hook-timeout-ms <ms>', 'longest wait for the connect hook; past it the device is told to come back (4004)', positiveInt, 2000)
    .option('--connect-hook-secret <secret>', 'sent to the connect hook as Authorization: Bearer <secret>')
    .option('--upstream-webhook <url>', "POST each device message to this backend URL; a message is acknowledged to the device only once the backend answered 2xx (retried while it fails)", httpUrl)
    .option('--upstream-secret <secret>', 'sign webhook requests: X-Longlink-Signature: t=<unix seconds>,v1=<HMAC-SHA256 of "<t>.<body>">')
    .option('--upstream-timeout-ms <ms>', 'a webhook request (or a stream write) that takes longer fails and is retried', timerMs, 10_000)
    .option('--upstream-redis-stream <url>', 'XADD each device message to a Redis stream (backends read it with XREADGROUP); acknowledged to the device once XADD succeeded')
    .option('--upstream-stream <name>', 'the stream for --upstream-redis-stream', 'longlink:upstream')
    .option('--upstream-events <list>', 'also send these lifecycle events upstream, comma-separated: online, offline (with reason, code and detection time), suspect, replaced (a device\'s newer link took over)', (v: string) => {
      const list = v.split(',').map((x) => x.trim()).filter(Boolean);
      for (const x of list) if (x !== 'online' && x !== 'offline' && x !== 'suspect' && x !== 'replaced') throw new InvalidArgumentError(`unknown event ${x} (online, offline, suspect, replaced)`);
      return list;
    })
    .option('--upstream-stream-maxlen <n>', 'trim the stream to about this many entries (0: keep all; trimming drops entries whether workers read them or not, so set it above what they can fall behind by)', int, STREAM_MAXLEN_DEFAULT)
    .option('--upstream-max-pending <n>', "device messages waiting for the backend in the process; beyond it a link gets GOAWAY and its client re-sends later", positiveInt, UPSTREAM_DEFAULTS.maxPending)
    .option('--upstream-max-pending-per-link <n>', "the same for one link", positiveInt, UPSTREAM_DEFAULTS.maxPendingPerConnection)
    .option('--upstream-max-pending-events <n>', 'lifecycle events on their way to the backend at once; beyond it they are dropped and counted (longlink_upstream_events_total{result="dropped"})', positiveInt, UPSTREAM_DEFAULTS.maxPendingEvents)
    .option('--api-key <key>', 'the server API\'s key (/v1 on the admin port, for backends); without one only loopback callers are served')
    .option('--admin-token <token>', 'require this bearer token on /api and /metrics (or set LONGLINK_ADMIN_TOKEN)')
    .option('--no-admin', 'do not open the admin port')
    .option('--admin-advertise-url <url>', 'where other nodes reach this admin port, for the cluster view of the dashboard (default http://<admin-host>:<port>)')
    .option('--workers <n>', `gateway worker processes sharing the ports (node:cluster), at most ${MAX_WORKERS}; more than 1 needs --redis`, workerCount, 1)
    .option('--worker-hung-ms <ms>', `with --workers: a worker that answers no ping from the primary for this long (its event loop stuck) is killed and replaced (0: never; else at least ${MIN_WORKER_HUNG_MS})`, workerHungMs, WORKER_HUNG_MS)
    .option('--lease-ms <ms>', 'Redis: a node silent this long is dead and its devices leave presence', timerMs, REDIS_DEFAULTS.leaseTtlMs)
    .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info'))
    .addOption(new Option('--log-format <format>', 'log lines as JSON or for people (auto: pretty on a terminal, JSON otherwise)').choices(['auto', 'json', 'pretty']).default('auto'))
    .option('--log-file <path>', 'also write JSON log lines to this file, rolled by size and time (pino-roll)')
    .option('--log-file-size <size>', 'roll the log file at this size (k, m, g)', logSize, '100m')
    .addOption(new Option('--log-file-frequency <when>', 'roll the log file this often').choices(['daily', 'hourly']).default('daily'))
    .option('--log-file-count <n>', 'rolled log files kept', positiveInt, 10)
    .action(async (o, cmd: Command) => {
      // Before Redis and the listeners, which may take seconds: Node's default for SIGHUP, SIGINT and
      // SIGTERM is to end the process (a stop while starting must still give up what it opened).
      holdHangup();
      holdStop();
      try {
        applyEnv(cmd);
        const file = cmd.getOptionValue('config') as string | undefined;
        if (file) applyConfigFile(cmd, file);
      } catch (err) {
        process.stderr.write(`longlink serve: ${(err as Error).message}\n`);
        process.exit(2);
      }
      o = cmd.opts();
      // An empty secret or URL (an unset variable in a compose file) must not quietly turn a guard
      // off: an empty --jwt-secret used to start a gateway without authentication.
      const empty = EMPTY_REFUSED.filter(([k]) => typeof o[k] === 'string' && (o[k] as string).trim() === '').map(([, flag]) => flag);
      for (const v of ['LONGLINK_JWT_SECRET', 'LONGLINK_ADMIN_TOKEN']) if (process.env[v] !== undefined && process.env[v]!.trim() === '') empty.push(v);
      if (empty.length > 0) {
        process.stderr.write(`longlink serve: ${empty.join(', ')} given but empty (unset it to go without)\n`);
        process.exit(2);
      }
      const misuse = optionMisuse(cmd);
      misuse.warnings.push(...unknownEnv(cmd, process.env, OTHER_ENV));
      if (misuse.errors.length > 0) {
        process.stderr.write(`longlink serve: ${misuse.errors.join('; ')}\n`);
        process.exit(2);
      }
      if (o.printConfig) {
        process.stdout.write(printConfig(cmd));
        return;
      }
      const log = makeLogger(o);
      // The admin port can kick and drain: off loopback it needs a token. Without one given, make
      // one and print it (workers inherit it through the environment).
      if (cluster.isPrimary && o.admin !== false && !adminToken(o) && !isLoopbackHost(o.adminHost)) {
        process.env.LONGLINK_ADMIN_TOKEN = randomBytes(24).toString('base64url');
        log.warn(
          { event: 'admin-token', adminHost: o.adminHost, token: process.env.LONGLINK_ADMIN_TOKEN },
          `--admin-host ${o.adminHost} is not loopback and no --admin-token was given: generated one for this run; send it as "Authorization: Bearer <token>"`,
        );
      }
      // Said once, by the process that read the options first (workers read them again).
      if (cluster.isPrimary) for (const w of misuse.warnings) log.warn({ event: 'unused-option', err: w }, w);
      if (o.workers > 1 && cluster.isPrimary) return runPrimary(o, log);
      const worker = cluster.isWorker ? Number(process.env.LL_WORKER ?? cluster.worker!.id) : null;
      if (worker !== null) o.nodeId = `${o.nodeId ?? `${os.hostname()}-${process.ppid}`}-w${worker}`;
      const bounds = { dedupIdsPerDevice: o.dedupIds, dedupWindowMs: o.dedupWindowMs, maxKnownDevicesPerUser: o.maxKnownDevicesPerUser };
      let store: RedisStore | MemoryStore;
      try {
        store = o.redis
          ? new RedisStore({ url: o.redis, cluster: o.redisCluster === true, waitReplicas: o.redisWaitReplicas, commandTimeoutMs: o.redisCommandTimeoutMs, mailboxShards: o.redisMailboxShards, prefix: o.redisPrefix, leaseTtlMs: o.leaseMs, leaseRenewMs: Math.max(1, Math.floor(o.leaseMs / 3)), ...bounds })
          : new MemoryStore({ ...bounds, maxDetachedSessionBytes: o.maxDetachedSessionBytes, maxDetachedSessionBytesPerUser: o.maxDetachedSessionBytesPerUser, maxQueuedBytes: o.maxQueuedBytesTotal, maxQueuedBytesPerUser: o.maxQueuedBytesPerUser, maxDevicesPerUser: o.maxDevicesPerUser });
      } catch (err) {
        failStart(log, 'bad-option', `--redis: ${(err as Error).message}`, 2);
      }
      if (o.upstreamWebhook && o.upstreamRedisStream) failStart(log, 'bad-option', 'give one upstream: --upstream-webhook or --upstream-redis-stream', 2);
      let upstreamSink: UpstreamSink | undefined;
      try {
        if (o.upstreamWebhook) upstreamSink = webhookSink({ url: o.upstreamWebhook, ...(o.upstreamSecret ? { secret: o.upstreamSecret } : {}), timeoutMs: o.upstreamTimeoutMs, maxAnswerBytes: Math.max(1024 * 1024, 8 * o.maxFrameBytes) });
        if (o.upstreamRedisStream) upstreamSink = streamSink({ url: o.upstreamRedisStream, cluster: o.redisCluster === true, waitReplicas: o.redisWaitReplicas, stream: o.upstreamStream, maxLen: o.upstreamStreamMaxlen, timeoutMs: o.upstreamTimeoutMs });
      } catch (err) {
        failStart(log, 'bad-option', `${o.upstreamWebhook ? '--upstream-webhook' : '--upstream-redis-stream'}: ${(err as Error).message}`, 2);
      }
      let tls: ReturnType<typeof tlsFiles>;
      let authenticate: Authenticate | undefined;
      let gw: Gateway;
      // Unreadable files, conflicting keys and out-of-range limits end here with one clear line.
      try {
        tls = tlsFiles(o);
        authenticate = jwtFromOptions(o);
        // The backend decides on each HELLO (after the JWT, if there is one).
        if (o.connectHook) {
          try {
            authenticate = connectHook({ url: o.connectHook, timeoutMs: o.connectHookTimeoutMs, ...(o.connectHookSecret ? { secret: o.connectHookSecret } : {}) }, authenticate);
          } catch (err) {
            throw new Error(`--connect-hook-timeout-ms: ${(err as Error).message}`);
          }
        }
        gw = new Gateway({
          ...(store ? { store } : {}),
          ...(authenticate ? { authenticate } : {}),
          tcp: o.tcp === false ? false : { host: o.host, port: o.tcpPort, ...(tls ? { tls } : {}) },
          ws: o.ws === false ? false : { host: o.host, port: o.wsPort, path: o.wsPath, ...(tls ? { tls } : {}) },
          limits: {
            maxConnections: o.maxConnections,
            maxConnectionsPerSource: o.maxConnectionsPerSource,
            maxOnlineDevicesPerUser: o.maxOnlineDevicesPerUser,
            handshakesPerSecond: o.handshakesPerSecond,
            ...(o.handshakeBurst !== undefined ? { handshakeBurst: o.handshakeBurst } : {}),
            handshakeSourceShare: o.handshakeSourceShare,
            maxPendingHandshakes: o.maxPendingHandshakes,
            maxPendingHandshakesPerSource: o.maxPendingHandshakesPerSource,
            ...(o.minPingGapMs !== undefined ? { minPingGapMs: o.minPingGapMs } : {}),
            pingBurst: o.pingBurst,
            maxWriteBufferBytes: o.maxWriteBufferBytes,
            slowConsumerMs: o.slowConsumerMs,
            maxDataPerSecond: o.maxDataPerSecond,
            dataBurst: o.dataBurst,
            maxClientInfoBytes: o.maxClientInfoBytes,
            maxStateBytes: o.maxStateBytes,
            maxStateKeys: o.maxStateKeys,
            maxMessageIdBytes: o.maxMessageIdBytes,
            maxIdBytes: o.maxIdBytes,
            maxTokenBytes: o.maxTokenBytes,
            maxInboundWaitingPerLink: o.maxInboundWaitingPerLink,
            maxInboundWaitingBytes: o.maxInboundWaitingBytes,
            maxInboundWaitingBytesPerLink: o.maxInboundWaitingBytesPerLink,
            inboundSourceShare: o.inboundSourceShare,
            maxPartialFrameBytes: o.maxPartialFrameBytes,
          },
          heartbeat: {
            intervalMs: o.heartbeatIntervalMs,
            minIntervalMs: o.heartbeatMinIntervalMs,
            maxIntervalMs: o.heartbeatMaxIntervalMs,
            missBudget: o.missBudget,
            graceMs: o.graceMs,
            allowServerDirection: o.serverDirection,
          },
          detector: { kind: o.detector },
          probes: { pongTimeoutMs: o.pongTimeoutMs, probeCount: o.probeCount, probeIntervalMs: o.probeIntervalMs },
          keepalive: {
            keepaliveIdleMs: o.keepaliveIdleMs,
            keepaliveIntervalMs: o.keepaliveIntervalMs,
            keepaliveCount: o.keepaliveCount,
            userTimeoutMs: o.userTimeoutMs,
          },
          handshakeTimeoutMs: o.handshakeTimeoutMs,
          maxFrameBytes: o.maxFrameBytes,
          sessionTtlMs: o.sessionTtlMs,
          wheelTickMs: o.wheelTickMs,
          nodeId: o.nodeId,
          delivery: { maxQueuedPerDevice: o.maxQueued, maxQueuedBytesPerDevice: o.maxQueuedBytes, messageTtlMs: o.messageTtlMs, probeBeforePushMs: o.probeBeforePushMs },
          ...(upstreamSink
            ? { upstream: { sink: upstreamSink, maxPending: o.upstreamMaxPending, maxPendingPerConnection: o.upstreamMaxPendingPerLink, maxPendingEvents: o.upstreamMaxPendingEvents, ...(o.upstreamEvents ? { events: o.upstreamEvents } : {}) } }
            : {}),
        });
      } catch (err) {
        failStart(log, 'bad-option', (err as Error).message, 2);
      }
      // Lines a client can cause come at most 20 per reason per 10 s; the rest are summed in one line.
      const limiter = new LogLimiter((key, held, intervalMs) => log.warn({ event: 'suppressed', key, held, intervalMs }, `${held} more "${key}" lines in the last ${intervalMs / 1000} s`));
      const limited = (key: string, write: () => void) => limiter.allow(key) && write();
      // Connects and disconnects too (a connect-and-close loop wrote 3,000 lines a second), unless
      // every one is wanted (--log-every-connection: the scale run counts them).
      const connLine = o.logEveryConnection ? (_key: string, write: () => void) => write() : limited;
      gw.on('online', (e) => connLine('online', () => log.info({ event: 'online', user: e.userId, device: e.deviceId, transport: e.transport, resumed: e.resumed }, 'online')));
      gw.on('offline', (e) =>
        connLine(`offline ${e.reason}`, () => log.info({ event: 'offline', user: e.userId, device: e.deviceId, reason: e.reason, code: e.code, silentForMs: Math.round(e.silentForMs) }, 'offline')),
      );
      gw.on('replaced', (e) =>
        connLine(`replaced ${e.stale ? 'stale' : 'live'}`, () => log.info({ event: 'replaced', user: e.userId, device: e.deviceId, resumed: e.resumed, stale: e.stale, silentForMs: Math.round(e.silentForMs) }, 'link replaced')),
      );
      gw.on('fault', (e) =>
        limited(`fault ${e.kind} ${e.op}`, () =>
          (e.kind === 'config' ? log.warn.bind(log) : log.error.bind(log))({ event: 'fault', kind: e.kind, op: e.op, user: e.userId, device: e.deviceId, err: e.error instanceof Error ? e.error.message : String(e.error) }, FAULT_LINES[e.kind] ?? `${e.kind} failed`),
        ),
      );
      gw.on('refused', (e) => limited(`refused ${e.reason}`, () => log.warn({ event: 'refused', remote: e.remoteAddress, reason: e.reason, user: e.userId, device: e.deviceId, retryAfterMs: e.retryAfterMs }, e.message)));
      gw.on('protocol-error', (e) => limited(`protocol-error ${e.error.code}`, () => log.warn({ event: 'protocol-error', remote: e.remoteAddress, code: e.error.code, err: e.error.message }, 'protocol error')));
      gw.on('state', (e) => log.debug({ event: 'state', user: e.userId, device: e.deviceId, state: e.state }, 'client state'));
      gw.on('delivered', (e) => log.debug({ event: 'delivered', user: e.userId, device: e.deviceId, id: e.id, seq: e.seq, ageMs: e.ageMs }, 'delivered'));
      gw.on('expired', (e) => limited('expired', () => log.info({ event: 'expired', user: e.userId, device: e.deviceId, id: e.id, ageMs: e.ageMs }, 'message expired')));
      gw.on('dropped', (e) => limited(`dropped ${e.reason}`, () => log.warn({ event: 'dropped', user: e.userId, device: e.deviceId, id: e.id, reason: e.reason }, 'message dropped')));
      // The built-in chat relay is an application: explicit (--app relay, the default), never by accident.
      if (o.app === 'auto') o.app = upstreamSink ? 'none' : 'relay';
      if (o.app === 'relay') {
        relayChat(
          gw,
          (err) => limited('push failed', () => log.error({ err }, 'push failed')),
          { perUser: o.relayPerUser, total: o.relayTotal },
          (user, why) => limited(`relay-over-budget ${why}`, () => log.warn({ event: 'relay-over-budget', user, why }, why === 'user' ? `${user} has ${o.relayPerUser} relayed messages in progress: not relayed` : `${o.relayTotal} relayed messages in progress: not relayed`)),
        );
      }
      let stopping = false;
      let listened = false;
      // Also while starting (the store joining Redis, the listeners opening): the drain closes what
      // was opened, the store gives its lease up, and the start goes no further (exit 0).
      const stop = async (signal: string, drain: { windowMs?: number; ackTimeoutMs?: number } = {}) => {
        if (stopping) return;
        stopping = true;
        const windowMs = drain.windowMs ?? o.drainWindowMs;
        log.info({ event: 'draining', signal, connections: gw.connectionCount, windowMs, ...(listened ? {} : { starting: true }) }, listened ? 'draining' : 'stopping before listening');
        const report = await gw.drain({ windowMs, ackTimeoutMs: drain.ackTimeoutMs ?? o.drainAckTimeoutMs });
        // The last window's held-back counts (its summary timer would come after the exit).
        limiter.flush();
        await admin?.close();
        await store?.close();
        await upstreamSink?.close?.();
        if (forced) return;
        log.info({ event: 'stopped', ...report }, 'drained and stopped');
        process.exit(0);
      };
      // A second signal while stopping: whoever sent it will not wait for the drain (a second Ctrl-C).
      // Every link is closed now, the store and the upstream closed (the lease given up) within 2 s.
      let forced = false;
      const stopNow = async (signal: StopSignal) => {
        if (forced) return;
        forced = true;
        const code = forcedExitCode(signal);
        log.warn({ event: 'stop-forced', signal, connections: gw.connectionCount }, `${signal} while stopping: closing every link now`);
        limiter.flush();
        setTimeout(() => process.exit(code), 2000);
        await gw.close().catch(() => {});
        await admin?.close();
        await store?.close();
        await upstreamSink?.close?.();
        process.exit(code);
      };
      let admin: AdminServer | null = null;
      let adminUrl: string | null = null;
      let signalled = false;
      onStop((signal) => {
        // Not in a worker: a terminal's Ctrl-C reaches it as well as the primary's SIGTERM passing the
        // first one on. The primary tells it to stop at once (stop-now) on a second one of its own.
        if (signalled && !cluster.isWorker) return void stopNow(signal);
        signalled = true;
        void stop(signal);
      });
      if (cluster.isWorker) process.on('message', (m: { event?: string; signal?: StopSignal }) => void (m?.event === 'stop-now' && stopNow(m.signal ?? 'SIGTERM')));
      let addrs;
      try {
        addrs = await gw.listen();
      } catch (err) {
        const e = err as LonglinkError & { transport?: string };
        const flag = e.code === 'LL_ERR_LISTEN' ? (e.transport === 'tcp' ? '--tcp-port or --host' : '--ws-port or --host') : e.code === 'LL_ERR_STORE_UNAVAILABLE' ? '--redis' : null;
        // Stopped while listening: the listen's failure is that stop's (a closed store, LL_ERR_CLOSED).
        if (stopping) return;
        failStart(log, 'cannot-start', `${e.message}${flag ? ` (change ${flag})` : ''}`);
      }
      if (stopping) return;
      if (o.admin !== false) {
        const token = adminToken(o);
        admin = new AdminServer(gw, {
          host: o.adminHost,
          // With workers, the primary serves the cluster's metrics on --admin-port; worker i is at + 1 + i.
          port: o.adminPort === 0 ? 0 : o.adminPort + (worker === null ? 0 : 1 + worker),
          ...(token ? { token } : {}),
          ...(o.apiKey ? { apiKey: o.apiKey } : {}),
          ...(o.adminAdvertiseUrl ? { advertiseUrl: o.adminAdvertiseUrl } : {}),
          log,
          onDrain: (d) => void stop('admin', d),
        });
        if (cluster.isWorker) {
          // Made in the worker only for its side effect: the IPC listener that answers the primary.
          new AggregatorRegistry();
          AggregatorRegistry.setRegistries(admin.metrics.registries);
        }
        try {
          const a = await admin.listen();
          adminUrl = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/`;
        } catch (err) {
          if (stopping) return;
          failStart(log, 'cannot-start', `cannot listen for the admin port on ${o.adminHost}:${o.adminPort}: ${(err as NodeJS.ErrnoException).code === 'EADDRINUSE' ? 'the port is in use' : (err as Error).message} (change --admin-port, or --no-admin)`);
          process.exit(1);
        }
      }
      if (stopping) return;
      listened = true;
      if (!authenticate && !isLoopbackHost(o.host)) {
        log.warn({ event: 'no-auth', host: o.host }, `serving ${o.host} without authentication: anyone who reaches it can connect as anyone (set --jwt-secret, --jwt-public-key or --jwks-url)`);
      }
      const p = gw.options.heartbeat;
      log.info(
        {
          event: 'listening',
          tcp: addrs.tcp ? `${tls ? 'tls' : 'tcp'}://${addrs.tcp.address}:${addrs.tcp.port}` : null,
          ws: addrs.ws ? `${tls ? 'wss' : 'ws'}://${addrs.ws.address}:${addrs.ws.port}${o.wsPath}` : null,
          auth: o.connectHook ? (jwtConfigured(o) ? 'jwt+connect-hook' : 'connect-hook') : authenticate ? 'jwt' : 'none',
          app: o.app,
          upstream: o.upstreamWebhook ? { webhook: redactUrl(o.upstreamWebhook as string) } : o.upstreamRedisStream ? { redisStream: o.upstreamStream } : null,
          serverApi: adminUrl ? `${adminUrl}v1/` : null,
          heartbeat: { ...p, silenceLimitMs: silenceLimitMs(p) },
          store: gw.options.store.kind,
          nodeId: gw.options.nodeId,
          admin: adminUrl,
          dashboard: adminUrl && admin?.hasDashboard ? adminUrl : null,
        },
        'longlink gateway listening',
      );
      // The primary's pings (--worker-hung-ms): answered by a live event loop.
      if (cluster.isWorker) process.on('message', (m: { event?: string }) => void (m?.event === 'ping' && process.send?.({ event: 'pong' })));
      process.send?.({ event: 'listening', tcp: addrs.tcp?.port ?? null, ws: addrs.ws?.port ?? null, nodeId: gw.options.nodeId, admin: adminUrl });
      onHangup(tls ? reloadTlsOnChange({ cert: o.tlsCert as string, key: o.tlsKey as string }, tls, (t) => gw.setTls(t), log, o.tlsReloadPollMs).hangup : () => nothingToReload(log));
    }));
}

/**
 * `--workers N`: N gateway processes on the same ports (node:cluster hands
 * each new connection to one of them). Each is a node of its own in the
 * Redis store (node id suffixed -w<i>), which is how they share presence,
 * sessions and routing: the primary holds no connection and no state. A
 * worker that dies is replaced; its clients reconnect to the others.
 */
function runPrimary(o: Record<string, unknown>, log: Logger): void {
  const n = o.workers as number;
  if (!o.redis) failStart(log, 'bad-option', '--workers > 1 needs --redis: workers share presence, sessions and routing through it', 2);
  const listening = new Map<number, { tcp: number | null; ws: number | null; nodeId: string }>();
  let stopping = false;
  const restarts = new WorkerRestarts();
  /** Workers that have listened (the ones asked for metrics and pinged), and when each was last heard. */
  const ready = new Map<Worker, { index: number; heardAt: number; killed: boolean }>();
  /** Workers sent a SIGHUP while starting: passed on once they have listened. */
  const hupWhenReady = new Set<Worker>();
  const fork = (index: number) => {
    const w = cluster.fork({ LL_WORKER: String(index) });
    restarts.started(index);
    let listened = false;
    w.on('message', (m: { event?: string; tcp: number | null; ws: number | null; nodeId: string }) => {
      const r = ready.get(w);
      if (r) r.heardAt = performance.now();
      if (m?.event !== 'listening') return;
      listened = true;
      ready.set(w, { index, heardAt: performance.now(), killed: false });
      if (hupWhenReady.delete(w)) w.process.kill('SIGHUP');
      const first = listening.size < n;
      listening.set(index, m);
      if (first && listening.size === n) void metricsReady.then(() => {
        const any = [...listening.values()][0];
        log.info(
          {
            event: 'listening',
            workers: n,
            metrics: adminUrl,
            tcp: any.tcp !== null ? `${o.tlsCert ? 'tls' : 'tcp'}://${o.host}:${any.tcp}` : null,
            ws: any.ws !== null ? `${o.tlsCert ? 'wss' : 'ws'}://${o.host}:${any.ws}${o.wsPath}` : null,
            nodes: [...listening.values()].map((x) => x.nodeId),
          },
          'longlink gateway workers listening',
        );
      });
    });
    w.on('exit', (code, signal) => {
      ready.delete(w);
      hupWhenReady.delete(w);
      if (stopping) return;
      // No worker has come up yet and this one died starting (a bad key file, a port in use, Redis
      // unreachable): every replacement would die the same way, forking for ever. Stop, as one
      // process would, with the worker's exit code (its line above says why).
      if (!listened && listening.size === 0) {
        log.fatal({ event: 'cannot-start', worker: index, code, signal }, `worker ${index} exited (${signal ?? `code ${code}`}) before it listened; stopping`);
        process.stderr.write(`longlink serve: worker ${index} could not start (its error is above); stopping\n`);
        stop('cannot-start', typeof code === 'number' && code !== 0 ? code : 1);
        return;
      }
      const delayMs = restarts.exited(index);
      log.warn({ event: 'worker-exit', worker: index, code, signal, restartInMs: delayMs }, delayMs === 0 ? 'worker died; starting another' : `worker died again; starting another in ${delayMs} ms`);
      setTimeout(() => stopping || fork(index), delayMs);
    });
  };
  // One port for the whole cluster's metrics: each worker's registries, summed (gauges of the
  // event-loop delay take the worst worker's), through prom-client's aggregation over IPC; a
  // worker that does not answer in time is left out of that scrape, not the whole cluster.
  let adminUrl: string | null = null;
  const metricsReady: Promise<void> =
    o.admin === false
      ? Promise.resolve()
      : new Promise((resolve) => {
          const agg = new ClusterMetrics(() => [...ready.keys()]);
          const token = adminToken(o);
          // Errors as the admin port answers them (docs/OPERATIONS.md): JSON with a stable code. Any
          // method was answered with a scrape, and a 401 or a failed scrape with no code to read.
          const fail = (res: http.ServerResponse, status: number, code: string, message: string) =>
            void res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }).end(JSON.stringify({ error: { code, message } }));
          const server = http.createServer(ADMIN_SERVER_OPTIONS, (req, res) => {
            let pathname: string;
            try {
              pathname = requestTarget(req).pathname;
            } catch (err) {
              const e = err as AdminError;
              return fail(res, e.status, e.code, e.message);
            }
            if (pathname !== '/metrics') return fail(res, 404, 'LL_ERR_NOT_FOUND', `the primary serves /metrics (the whole cluster); each worker has its admin port at --admin-port + 1 + i`);
            if (token && !sameSecret(bearer(req), token)) return fail(res, 401, 'LL_ERR_UNAUTHORIZED', 'a valid admin token is required');
            // Without a token, as a worker's admin port: loopback callers by a loopback Host only (no DNS rebinding).
            const refused = token ? null : notLoopback(req, 'set an admin token to serve other names');
            if (refused) return fail(res, refused.status, refused.code, refused.message);
            if (req.method !== 'GET') return fail(res, 405, 'LL_ERR_METHOD_NOT_ALLOWED', `${req.method} is not allowed on /metrics`);
            agg.text().then(
              (text) => res.writeHead(200, { 'content-type': agg.contentType, 'cache-control': 'no-store' }).end(text),
              (err: Error) => {
                log.error({ event: 'admin-error', err: err.message, url: '/metrics' }, 'admin request failed');
                fail(res, 500, 'LL_ERR_INTERNAL', err.message);
              },
            );
          });
          // The admin port's budgets: its sockets are the primary's files, which replacing a worker needs.
          limitAdminSockets(server);
          server.on('error', (err: NodeJS.ErrnoException) => failStart(log, 'cannot-start', `cannot listen for the cluster metrics on ${o.adminHost}:${o.adminPort}: ${err.code === 'EADDRINUSE' ? 'the port is in use' : err.message} (change --admin-port, or --no-admin)`));
          server.listen(o.adminPort as number, o.adminHost as string, () => {
            const a = server.address() as import('node:net').AddressInfo;
            adminUrl = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/metrics`;
            resolve();
          });
        });
  for (let i = 0; i < n; i++) fork(i);
  // A worker whose event loop is stuck (a bug's endless loop) does not die: the primary went on
  // handing it its share of new connections, which waited for a WELCOME that never came, for
  // good. Each ready worker is pinged; one not heard from for --worker-hung-ms is killed, and
  // replaced as a dead one is. Silence is counted on the monotonic clock and only while the
  // primary was pinging: after the primary itself stood still (a paused container, SIGSTOP, its own loop starved), every worker
  // had been silent that long because nobody asked, and all of them were killed at once.
  const hungMs = o.workerHungMs as number;
  if (hungMs > 0) {
    const tickMs = Math.max(50, Math.min(5000, Math.floor(hungMs / 4)));
    let lastTick = performance.now();
    setInterval(
      () => {
        const now = performance.now();
        const late = now - lastTick > 2 * tickMs;
        lastTick = now;
        for (const [w, r] of ready) {
          if (r.killed || !w.isConnected()) continue;
          if (late) r.heardAt = Math.max(r.heardAt, now - tickMs);
          if (now - r.heardAt > hungMs) {
            r.killed = true;
            log.error({ event: 'worker-hung', worker: r.index, silentForMs: Math.round(now - r.heardAt) }, `worker ${r.index} answered nothing for ${Math.round(now - r.heardAt)} ms; killing it`);
            w.process.kill('SIGKILL');
          } else w.send({ event: 'ping' });
        }
      },
      tickMs,
    ).unref();
  }
  let exitWith = 0;
  function stop(signal: string, exitCode = 0): void {
    if (stopping) return;
    stopping = true;
    exitWith = exitCode;
    log.info({ event: 'stopping', signal }, 'stopping workers');
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    const done = () => Object.keys(cluster.workers ?? {}).length === 0 && process.exit(exitWith);
    cluster.on('exit', done);
    done();
    // Each worker drains (GOAWAY hints over the window, acks in flight) before it exits. One still
    // there by then is stuck (an endless loop handles neither SIGTERM nor the primary's going): it
    // was left running, an orphan holding its connections. It is killed, and reaped before the exit.
    setTimeout(() => {
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
      setTimeout(() => process.exit(exitWith), 1000).unref();
    }, (o.drainWindowMs as number) + (o.drainAckTimeoutMs as number) + 5000).unref();
  }
  /** A second signal: each worker closes its links now (stop-now); the primary exits once they are gone. */
  let forced = false;
  function stopNow(signal: StopSignal): void {
    if (forced) return;
    forced = true;
    exitWith = forcedExitCode(signal);
    log.warn({ event: 'stop-forced', signal }, `${signal} while stopping: workers close every link now`);
    for (const w of Object.values(cluster.workers ?? {})) if (w?.isConnected()) w.send({ event: 'stop-now', signal });
    // A worker that does not go within its own 2 s (a stuck one) is killed.
    setTimeout(() => {
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
      setTimeout(() => process.exit(exitWith), 1000).unref();
    }, 3000).unref();
  }
  let signalled = false;
  onStop((signal) => {
    if (signalled) return stopNow(signal);
    signalled = true;
    stop(signal);
  });
  // Each worker serves TLS from its own listener: a reload is theirs to do. Without TLS there is
  // nothing to reload: said, and nothing ends (Node's default ended the primary, and every worker
  // with it, undrained). A worker is passed SIGHUP once it has listened: one still starting (a
  // replacement waits out its predecessor's lease) is passed it when it listens.
  onHangup(() => {
    if (!o.tlsCert) return nothingToReload(log);
    for (const w of Object.values(cluster.workers ?? {})) {
      if (!w || w.isDead()) continue;
      if (ready.has(w)) w.process.kill('SIGHUP');
      else hupWhenReady.add(w);
    }
  });
}

function nothingToReload(log: Logger): void {
  log.info({ event: 'nothing-to-reload', signal: 'SIGHUP' }, 'SIGHUP: nothing to reload without --tls-cert; serving on');
}

/**
 * The most `--workers`: past the CPUs a worker adds memory (tens of MB each), not throughput. A
 * value without a bound (100000, an extra zero) was forked as given, until the host ran out of
 * memory or processes.
 */
export const MAX_WORKERS = 256;

function workerCount(value: string): number {
  const n = int(value);
  if (n > MAX_WORKERS) throw new InvalidArgumentError(`expected at most ${MAX_WORKERS} (one per CPU is the most that helps: this host has ${os.availableParallelism()})`);
  return n;
}

/**
 * When the primary replaces a dead worker: at once the first time, then after
 * a delay that doubles with each death in a row of that worker (a worker that
 * dies as soon as it is up, Redis refusing it, say, was forked again at once,
 * dozens of processes a second, for ever), reset once one has stayed up.
 */
/** `--worker-hung-ms`: how long a worker may go without answering the primary's ping before it is killed. */
export const WORKER_HUNG_MS = 30_000;

/**
 * The least `--worker-hung-ms` but 0. Below the primary's ping period (50 ms at least) every
 * worker was silent too long at every check: `30` (meant as seconds) killed each worker as soon
 * as it listened, and its replacements, for good. A second also leaves a loaded worker's GC
 * pauses and bursts of TLS handshakes alone.
 */
export const MIN_WORKER_HUNG_MS = 1000;

function workerHungMs(value: string): number {
  const n = int(value);
  if (n !== 0 && n < MIN_WORKER_HUNG_MS) throw new InvalidArgumentError(`expected 0 (never) or at least ${MIN_WORKER_HUNG_MS} ms`);
  return n;
}

export const WORKER_RESTART = { firstDelayMs: 250, maxDelayMs: 30_000, healthyAfterMs: 30_000 };

export class WorkerRestarts {
  private readonly deaths = new Map<number, { inARow: number; startedAt: number }>();
  constructor(
    private readonly p = WORKER_RESTART,
    private readonly now: () => number = Date.now,
  ) {}

  started(index: number): void {
    const d = this.deaths.get(index);
    this.deaths.set(index, { inARow: d?.inARow ?? 0, startedAt: this.now() });
  }

  /** The delay before worker `index` is forked again. */
  exited(index: number): number {
    const d = this.deaths.get(index) ?? { inARow: 0, startedAt: this.now() };
    const inARow = this.now() - d.startedAt >= this.p.healthyAfterMs ? 0 : d.inARow;
    this.deaths.set(index, { inARow: inARow + 1, startedAt: d.startedAt });
    return inARow === 0 ? 0 : Math.min(this.p.maxDelayMs, this.p.firstDelayMs * 2 ** (inARow - 1));
  }
}

/** The message of a `fault` line, by its kind (an upstream failure had said "a listener threw"). */
const FAULT_LINES: Record<string, string> = {
  store: 'store call failed',
  config: 'option adjusted',
  listener: 'a listener threw',
  upstream: 'upstream call failed',
  auth: 'authenticator failed',
  broadcast: 'broadcast write failed',
};

/** Options whose empty value is refused: each turns a guard on, or names where to reach something. */
const EMPTY_REFUSED: [string, string][] = [
  // An unset variable in a compose file: '' listens on every interface.
  ['host', '--host'],
  ['adminHost', '--admin-host'],
  ['jwtSecret', '--jwt-secret'],
  ['jwtPublicKey', '--jwt-public-key'],
  ['jwksUrl', '--jwks-url'],
  ['jwtIssuer', '--jwt-issuer'],
  ['jwtAudience', '--jwt-audience'],
  ['apiKey', '--api-key'],
  ['adminToken', '--admin-token'],
  ['connectHook', '--connect-hook'],
  ['connectHookSecret', '--connect-hook-secret'],
  ['upstreamWebhook', '--upstream-webhook'],
  ['upstreamSecret', '--upstream-secret'],
  ['redis', '--redis'],
];

/**
 * Options that act only with another one. Given without it, they were accepted and never used: a
 * user who set them believed something was tuned that was not. Combinations that leave a belief
 * about liveness or security false are refused (exit 2); the rest are warned about at start.
 */
/** LONGLINK_* variables read by others: `client`'s token, and the test suite's seeds. */
const OTHER_ENV = ['LONGLINK_TOKEN', 'LONGLINK_FAULT_SEED', 'LONGLINK_FUZZ_SEED', 'LONGLINK_FUZZ_CASES', 'LONGLINK_KEEP_NEWUSER'];

export function optionMisuse(cmd: Command): { errors: string[]; warnings: string[] } {
  const o = cmd.opts();
  const errors: string[] = [];
  // TCP keepalive is on only with an idle time (0 is off): an interval or count alone was set on no socket.
  if (!((o.keepaliveIdleMs as number) > 0)) {
    const orphan = (
      [
        ['keepaliveIntervalMs', '--keepalive-interval-ms'],
        ['keepaliveCount', '--keepalive-count'],
      ] as const
    )
      .filter(([k]) => ((o[k] as number | undefined) ?? 0) > 0)
      .map(([, flag]) => flag);
    if (orphan.length > 0) errors.push(`${orphan.join(' and ')} need${orphan.length > 1 ? '' : 's'} --keepalive-idle-ms (TCP keepalive is off without an idle time)`);
  }
  // An issuer or audience restricts whose tokens pass: without a key no token is asked for at all.
  if (!jwtConfigured(o)) {
    const orphan = (
      [
        ['jwtIssuer', '--jwt-issuer'],
        ['jwtAudience', '--jwt-audience'],
      ] as const
    )
      .filter(([k]) => o[k] !== undefined)
      .map(([, flag]) => flag);
    if (orphan.length > 0) errors.push(`${orphan.join(' and ')} need${orphan.length > 1 ? '' : 's'} a key to verify tokens with (--jwt-secret, --jwt-public-key or --jwks-url): without one no token is checked`);
  }
  // Worker i's admin port is --admin-port + 1 + i: past 65535 those workers fail to listen after
  // another has, and the primary replaced them for ever (with backoff) while the rest served.
  const workers = o.workers as number;
  const adminPort = o.adminPort as number;
  if (workers > 1 && o.admin !== false && adminPort !== 0 && adminPort + workers > 65535) {
    errors.push(`--admin-port ${adminPort} with --workers ${workers}: worker i listens on --admin-port + 1 + i, up to ${adminPort + workers}, past 65535 (lower --admin-port, or 0 for any free port)`);
  }
  // The rest do nothing harmful when unused, but are said: each names what it needs.
  // A file value equal to the default is not counted: the file --print-config writes holds every
  // option at its default, and loading it named each option that needs another one as ignored.
  const given = (attr: string) => {
    const source = cmd.getOptionValueSource(attr);
    if (source === 'config') return !isDeepStrictEqual(o[attr], cmd.options.find((x) => x.attributeName() === attr && !x.negate)?.defaultValue);
    return source === 'cli' || source === 'env';
  };
  const upstream = Boolean(o.upstreamWebhook || o.upstreamRedisStream);
  const relay = o.app === 'relay' || (o.app === 'auto' && !upstream);
  const uses: [string[], boolean, string][] = [
    [['redisPrefix', 'redisCommandTimeoutMs', 'redisMailboxShards', 'leaseMs'], Boolean(o.redis), 'needs --redis'],
    [['redisCluster', 'redisWaitReplicas'], Boolean(o.redis || o.upstreamRedisStream), 'needs --redis or --upstream-redis-stream'],
    [['maxQueuedBytesTotal', 'maxQueuedBytesPerUser', 'maxDetachedSessionBytes', 'maxDetachedSessionBytesPerUser', 'maxDevicesPerUser'], !o.redis, 'applies to the in-memory store only, not with --redis'],
    [['tlsReloadPollMs'], Boolean(o.tlsCert), 'needs --tls-cert and --tls-key'],
    [['connectHookTimeoutMs', 'connectHookSecret'], Boolean(o.connectHook), 'needs --connect-hook'],
    [['upstreamSecret'], Boolean(o.upstreamWebhook), 'needs --upstream-webhook'],
    [['upstreamStream', 'upstreamStreamMaxlen'], Boolean(o.upstreamRedisStream), 'needs --upstream-redis-stream'],
    [['upstreamTimeoutMs', 'upstreamEvents', 'upstreamMaxPending', 'upstreamMaxPendingPerLink', 'upstreamMaxPendingEvents'], upstream, 'needs --upstream-webhook or --upstream-redis-stream'],
    [['relayPerUser', 'relayTotal'], relay, 'needs the built-in relay (--app relay, or auto without an upstream)'],
    [['apiKey', 'adminToken', 'adminHost', 'adminPort', 'adminAdvertiseUrl'], o.admin !== false, 'has no effect with --no-admin'],
    [['workerHungMs'], (o.workers as number) > 1, 'needs --workers above 1'],
    [['logFileSize', 'logFileFrequency', 'logFileCount'], Boolean(o.logFile), 'needs --log-file'],
    [['wsPort', 'wsPath'], o.ws !== false, 'has no effect with --no-ws'],
    [['tcpPort'], o.tcp !== false, 'has no effect with --no-tcp'],
    // A rate of 0 is no limit: no bucket is made, and the burst (and a source's share of it) sizes nothing.
    [['handshakeBurst', 'handshakeSourceShare'], (o.handshakesPerSecond as number) > 0, 'has no effect with --handshakes-per-second 0 (no limit)'],
    [['dataBurst'], (o.maxDataPerSecond as number) > 0, 'has no effect with --max-data-per-second 0 (no limit)'],
    [['pingBurst'], o.minPingGapMs === undefined || (o.minPingGapMs as number) > 0, 'has no effect with --min-ping-gap-ms 0 (no limit)'],
  ];
  const warnings: string[] = [];
  for (const [attrs, used, needs] of uses) {
    if (used) continue;
    for (const attr of attrs) if (given(attr)) warnings.push(`${cmd.options.find((x) => x.attributeName() === attr && !x.negate)!.long!} ${needs}: ignored`);
  }
  return { errors, warnings };
}

function adminToken(o: Record<string, unknown>): string | undefined {
  return (o.adminToken as string | undefined) ?? process.env.LONGLINK_ADMIN_TOKEN;
}

function tlsFiles(o: Record<string, unknown>): { cert: Buffer; key: Buffer } | undefined {
  if (!o.tlsCert && !o.tlsKey) return undefined;
  if (!o.tlsCert || !o.tlsKey) throw new Error('--tls-cert and --tls-key go together');
  const pair = { cert: readOptionFile('--tls-cert', o.tlsCert as string), key: readOptionFile('--tls-key', o.tlsKey as string) };
  // A pair that does not load was found only by listen, reported as a busy port to change (exit 1).
  try {
    createSecureContext(pair);
  } catch (err) {
    throw new Error(`--tls-cert ${o.tlsCert as string} and --tls-key ${o.tlsKey as string} do not load as a PEM certificate and its key: ${(err as Error).message}`);
  }
  return pair;
}

function jwtFromOptions(o: Record<string, unknown>): Authenticate | undefined {
  const secret = (o.jwtSecret as string | undefined) ?? process.env.LONGLINK_JWT_SECRET;
  const common = {
    ...(o.jwtIssuer ? { issuer: o.jwtIssuer as string } : {}),
    ...(o.jwtAudience ? { audience: o.jwtAudience as string } : {}),
  };
  const keys = {
    ...(secret ? { secret } : {}),
    ...(o.jwtPublicKey ? { publicKey: publicKeyFile(o.jwtPublicKey as string) } : {}),
    ...(o.jwksUrl ? { jwksUrl: o.jwksUrl as string } : {}),
  };
  // More than one key source is refused by jwtAuthenticator with a clear message.
  return Object.keys(keys).length ? jwtAuthenticator({ ...keys, ...common }) : undefined;
}

function publicKeyFile(file: string): ReturnType<typeof createPublicKey> {
  const pem = readOptionFile('--jwt-public-key', file);
  try {
    return createPublicKey(pem);
  } catch (err) {
    throw new Error(`--jwt-public-key ${file}: not a PEM public key (${(err as Error).message})`);
  }
}

/**
 * A start that cannot go on: one line a person reads on stderr, naming what
 * failed and the flag that changes it, and the same as one JSON line (no stack)
 * for whatever reads the log.
 */
function failStart(log: Logger, event: string, message: string, exitCode = 1): never {
  log.fatal({ event, err: message }, message);
  process.stderr.write(`longlink serve: ${message}\n`);
  process.exit(exitCode);
}

/**
 * JSON lines on stdout (fast, synchronous) unless a person is reading (a
 * terminal, or --log-format pretty: pino-pretty); with --log-file, JSON lines
 * also go to a file rolled by size and time (pino-roll, in pino's worker).
 */
function makeLogger(o: Record<string, unknown>): Logger {
  const level = o.logLevel as string;
  const base = { pid: process.pid };
  const pretty = o.logFormat === 'pretty' || (o.logFormat === 'auto' && process.stdout.isTTY === true);
  if (!pretty && !o.logFile) return pino({ level, base });
  const targets: pino.TransportTargetOptions[] = [
    pretty
      ? { target: 'pino-pretty', level, options: { destination: 1, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true } }
      : { target: 'pino/file', level, options: { destination: 1 } },
  ];
  if (o.logFile) {
    // pino-roll opens the file in its worker thread, after `listening` is printed, and its failure
    // there ended the process with a stack trace: the directory is made and checked here first.
    const dir = path.dirname(path.resolve(o.logFile as string));
    try {
      fs.mkdirSync(dir, { recursive: true });
      fs.accessSync(dir, fs.constants.W_OK);
    } catch (err) {
      process.stderr.write(`longlink serve: --log-file ${o.logFile as string}: cannot write to ${dir} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})\n`);
      process.exit(2);
    }
    targets.push({ target: 'pino-roll', level, options: { file: o.logFile, size: o.logFileSize, frequency: o.logFileFrequency, mkdir: true, limit: { count: o.logFileCount } } });
  }
  const transport = pino.transport({ targets });
  // A log that fails later (a full disk) is said once; it does not end the gateway.
  let told = false;
  transport.on('error', (err: Error) => {
    if (!told) process.stderr.write(`longlink serve: the log transport failed: ${err.message}\n`);
    told = true;
  });
  return pino({ level, base }, transport);
}

function jwtConfigured(o: Record<string, unknown>): boolean {
  return Boolean(o.jwtSecret ?? process.env.LONGLINK_JWT_SECRET ?? o.jwtPublicKey ?? o.jwksUrl);
}
