export * from './protocol/index.js';
export * from './core/clock.js';
export * from './core/timer-wheel.js';
export * from './core/backoff.js';
export * from './core/rtt-tracker.js';
export * from './core/heartbeat-policy.js';
export * from './core/heartbeat-scheduler.js';
export * from './core/liveness-detector.js';
export type { Link, LinkEvents, TransportKind } from './link/link.js';
export { applyKeepalive, readKeepalive, type KeepaliveOptions } from './link/socket-tuning.js';
export { Gateway } from './gateway/gateway.js';
export type { TypedEmitter } from './core/typed-emitter.js';
export type * from './gateway/gateway.js';
export * from './gateway/options.js';
export type { DisconnectReason } from './gateway/disconnect.js';
export type * from './gateway/stores/store.js';
export { MemoryStore, MEMORY_STORE_DEFAULTS, type MemoryStoreOptions } from './gateway/stores/memory-store.js';
export { LonglinkClient } from './client/client.js';
export { ClientCore } from './client/client-core.js';
export { AdminServer, AdminError, DEFAULT_ADMIN_PORT, type AdminOptions } from './admin/admin-server.js';
export { GatewayMetrics, DETECTION_REASONS, type MetricsOptions } from './admin/metrics.js';
export { LiveFeed } from './admin/live-feed.js';
export type * from './admin/api-types.js';
export type * from './client/client.js';
export type { AdaptiveOptions, ClientOptions, TokenProvider } from './client/options.js';
// Types that exported signatures use (push's result, the adaptive option and what the learner exports,
// an UpstreamSink's events, detector and stall-guard options): a user's code has to be able to name them.
// From connect.js, which also gives the `tls` option node:tls's type (client/dial-options.ts).
export type { DialOptions } from './client/connect.js';
export type { PushResult, DeviceOutcome } from './gateway/push-tracker.js';
export type { LearnerSnapshot, LearnerOptions, LearnerPhase, LearnerChange, NetworkRecord } from './core/interval-learner.js';
export type { PhiOptions } from './core/phi-accrual-detector.js';
export type { StallGuardOptions } from './gateway/event-loop-guard.js';
export { jwtAuthenticator, type JwtAuthOptions } from './auth/jwt-authenticator.js';
export { webhookSink, webhookSignature, verifyWebhookSignature, WEBHOOK_TOLERANCE_SECONDS, type VerifyWebhookOptions, type WebhookOptions, type WebhookBody } from './upstream/webhook.js';
export { UPSTREAM_DEFAULTS, UpstreamBusyError, UpstreamRejectedError, type UpstreamSink, type UpstreamMessage, type UpstreamEvent, type UpstreamEventType, type UpstreamAnswer, type UpstreamOptions } from './gateway/upstream.js';
export { connectHook, type ConnectHookOptions, type ConnectHookRequest, type ConnectHookAnswer } from './auth/connect-hook.js';
