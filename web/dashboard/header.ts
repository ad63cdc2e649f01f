/** The header line: node id, uptime (counted locally between overviews), detector and policy. */
import type { Overview, PolicyView } from '../../src/admin/api-types.js';
import { byId, setText } from './dom.js';
import { fmtDuration } from './format.js';

export class Header {
  private readonly node = byId('hdr-node');
  private readonly uptime = byId('hdr-uptime');
  private readonly detector = byId('hdr-detector');
  private readonly policy = byId('hdr-policy');
  private uptimeAt: { uptimeMs: number; seenAt: number } | null = null;

  constructor() {
    setInterval(() => this.renderUptime(), 1000);
  }

  setOverview(o: Overview): void {
    setText(this.node, o.nodeId);
    setText(this.detector, o.detector);
    setText(this.policy, gatewayPolicyText(o.policy));
    this.policy.title = policyTitle({ ...o.policy, direction: 'client' }) + (o.policy.allowServerDirection ? '; clients may ask for server-sent heartbeats' : '');
    // Uptime, not startedAt: the two machines' clocks may disagree.
    this.uptimeAt = { uptimeMs: o.uptimeMs, seenAt: Date.now() };
    this.renderUptime();
  }

  private renderUptime(): void {
    if (!this.uptimeAt) return;
    const ms = this.uptimeAt.uptimeMs + (Date.now() - this.uptimeAt.seenAt);
    // Whole seconds: sub-second uptime precision is noise in a header.
    setText(this.uptime, fmtDuration(Math.floor(ms / 1000) * 1000));
  }
}

/** "25 s, server-sent allowed": the default interval, and whether clients may hand heartbeats to the gateway. */
function gatewayPolicyText(p: Overview['policy']): string {
  return `${fmtDuration(p.intervalMs)}${p.allowServerDirection ? ', server-sent allowed' : ', client-sent only'}`;
}

export function policyTitle(p: PolicyView): string {
  return (
    `heartbeats sent by the ${p.direction}; interval ${fmtDuration(p.intervalMs)} ` +
    `(allowed ${fmtDuration(p.minIntervalMs)}–${fmtDuration(p.maxIntervalMs)}), ` +
    `miss budget ${p.missBudget}, grace ${fmtDuration(p.graceMs)}`
  );
}
