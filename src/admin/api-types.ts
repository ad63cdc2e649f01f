/**
 * The admin API's JSON shapes: what the admin port serves and the dashboard
 * reads. Types only, so the browser bundle can share them.
 */

export type TransportName = 'tcp' | 'ws';

/** The heartbeat policy a connection was granted (and the interval in force now). */
export interface PolicyView {
  direction: 'client' | 'server';
  intervalMs: number;
  minIntervalMs: number;
  maxIntervalMs: number;
  missBudget: number;
  graceMs: number;
}

export interface ConnectionView {
  connectionId: string;
  userId: string;
  deviceId: string;
  sessionId: string;
  transport: TransportName;
  remoteAddress: string;
  policy: PolicyView | null;
  /** The interval the client announced in HELLO or a PING, if it did: a fixed choice, or an adaptive client's learned value. */
  announcedIntervalMs: number | null;
  connectedForMs: number;
  lastHeardMsAgo: number;
  /** Smoothed RTT the gateway measured with its own PINGs (server-sent heartbeats, probes); null before the first. */
  rttMs: number | null;
  /** A heartbeat is overdue and a probe is out. */
  suspected: boolean;
  clientInfo: Record<string, string>;
  clientState: Record<string, string>;
  stats: { framesIn: number; framesOut: number; pingsIn: number; pingsOut: number; dataIn: number; dataOut: number };
  /** Messages written and not yet acknowledged. */
  unacked: number;
  /** The path as this link's client heartbeats measure it (see ConnectionInfo.path). */
  path: { gaps: number; missed: number; lossRate: number; latenessMeanMs: number; latenessDevMs: number; latenessMaxMs: number };
}

import type { TraceKind } from '../gateway/connection-trace.js';

export type { TraceKind };

/** One point on a connection's timeline; `value` is the RTT (pong-in) or the new interval (interval), in ms. */
export interface TraceEvent {
  /** Wall clock, ms since the epoch. */
  t: number;
  kind: TraceKind;
  value?: number;
}

export interface ConnectionDetail {
  connection: ConnectionView;
  /**
   * Recorded from when the connection was first asked for (tracing starts on demand). Only the
   * last 1,024 events are kept: `keptSince` is from when `events` are complete (`tracingSince`
   * until more came, then the oldest kept); an empty stretch before it is not silence.
   */
  timeline: { tracingSince: number; keptSince: number; events: TraceEvent[] };
}

export interface RttSummary {
  /** Samples in the window the summary covers. */
  count: number;
  /**
   * The span (ms) back from the tick the samples cover: the last minute, or less when more
   * than 20,000 samples came in it (only the newest are kept).
   */
  windowMs: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  /** Histogram: samples with RTT <= le ms (not cumulative: each bucket counts only its own range); le null is the overflow bucket. */
  buckets: { le: number | null; count: number }[];
}

/** One second of the gateway, as the dashboard charts it. */
export interface Tick {
  /** Wall clock, ms since the epoch. */
  t: number;
  connections: number;
  online: number;
  users: number;
  /** PINGs in and out in the last second (heartbeats and probes). */
  heartbeatsPerSec: number;
  framesPerSec: number;
  /** Running totals since the gateway started: closes by the gateway's detection, suspicions, and suspicions cleared. */
  detections: number;
  suspicions: number;
  falseSuspicions: number;
  /** RTT samples over the last minute. */
  rtt: RttSummary;
  /** Online and offline notices since the last tick not streamed (past the feed's per-tick budget; the counts above still hold them). */
  noticesSkipped: number;
  /**
   * After notices were skipped: the latest disconnections (as the snapshot's `recent`), so a
   * page's list, which missed some, is whole again. Not kept in the history.
   */
  recent?: OfflineNotice[];
}

export interface OnlineNotice {
  t: number;
  userId: string;
  deviceId: string;
  connectionId: string;
  transport: TransportName;
  resumed: boolean;
}

export interface OfflineNotice {
  t: number;
  userId: string;
  deviceId: string;
  connectionId: string;
  transport: TransportName;
  reason: string;
  code: number;
  silentForMs: number;
  /** Closed by the gateway's own detection (heartbeat-timeout, slow-consumer), not by the peer or the transport. */
  detection: boolean;
  /** For `replaced` (a newer link of the device took over; the device stays online): the old link had been silent for more than its heartbeat interval, so it had most likely died unnoticed. */
  stale?: boolean;
}

export interface Overview {
  nodeId: string;
  startedAt: number;
  uptimeMs: number;
  connections: { total: number; tcp: number; ws: number; handshaking: number };
  online: { devices: number; users: number };
  /** The gateway's default policy: clients send heartbeats unless they ask the server to (if it allows that). */
  policy: Omit<PolicyView, 'direction'> & { allowServerDirection: boolean };
  detector: string;
  traffic: { framesIn: number; framesOut: number; pingsIn: number; pingsOut: number; dataIn: number; dataOut: number };
  delivery: Record<string, number>;
  admission: Record<string, number>;
  disconnects: Record<string, number>;
  /** Closes by the gateway's own detection (heartbeat-timeout, slow-consumer) since the admin port opened. */
  detections: number;
  suspicions: number;
  falseSuspicions: number;
  eventLoop: { p50Ms: number; p99Ms: number; maxMs: number; gcLongestMs: number; gcPauses: number } | null;
}

/**
 * GET /api/connections?limit=N&before=CURSOR&user=ID: the most recently
 * accepted first, at most `limit` (200 by default, 1,000 at most); `next`,
 * when present, is the cursor of the following page.
 */
export interface ConnectionsPage {
  total: number;
  connections: ConnectionView[];
  next?: string;
}

/** POST /api/kick */
export interface KickResult {
  kicked: number;
}

/** Every error answer: a stable code (LL_ERR_...) and a message. */
export interface ApiErrorBody {
  error: { code: string; message: string };
}

/** The first message on /api/events: where the dashboard starts. */
export interface Snapshot {
  overview: Overview;
  /** The last ticks, oldest first (up to 10 minutes). */
  history: Tick[];
  /** The last disconnections, newest first. */
  recent: OfflineNotice[];
}

/**
 * GET /api/cluster: every node holding a lease in the shared store (just this
 * one on the in-memory store), each with its overview as its own admin port
 * gives it, or why it could not be read; and the sums over those read.
 */
export interface ClusterView {
  nodes: { nodeId: string; self: boolean; adminUrl: string | null; overview?: Overview; error?: string }[];
  totals: { nodes: number; reachable: number; connections: number; devices: number; detections: number; suspicions: number; falseSuspicions: number };
}
