/**
 * The per-connection panel: polls GET /api/connections/<id> every second
 * (the first ask starts the server's trace, so the timeline fills as it stays
 * open), draws the timeline, and offers Kick. A 404 means the connection is
 * gone: the panel keeps its last picture and says so.
 */
import type { ConnectionDetail, ConnectionView, OfflineNotice } from '../../src/admin/api-types.js';
import { ApiError, getConnection, kick } from './api.js';
import { byId, byTestId, setText } from './dom.js';
import { DASH, fmtClock, fmtDuration, fmtInt, fmtKv, fmtMs } from './format.js';
import { policyTitle } from './header.js';
import { Poller } from './poll.js';
import { Timeline } from './timeline.js';

export class ConnectionPanel {
  private readonly root = byTestId('connection-view');
  private readonly gone = byTestId('conn-gone');
  private readonly kickBtn = byTestId<HTMLButtonElement>('conn-kick');
  private readonly kickResult = byId('conn-kick-result');
  private readonly error = byId('conn-error');
  private readonly f = {
    id: byId('conn-id'),
    who: byId('conn-who'),
    interval: byTestId('conn-interval'),
    learned: byId('conn-learned'),
    rtt: byTestId('conn-rtt'),
    lastHeard: byTestId('conn-last-heard'),
    policy: byId('conn-policy'),
    connectedFor: byId('conn-connected-for'),
    unacked: byId('conn-unacked'),
    frames: byId('conn-frames'),
    heartbeats: byId('conn-heartbeats'),
    tracing: byId('conn-tracing'),
    state: byId('conn-state'),
    info: byId('conn-info'),
  };
  private readonly timeline: Timeline;
  private readonly poller = new Poller(() => this.load(), 1000);
  private current: ConnectionView | null = null;
  private openId: string | null = null;

  constructor(
    private readonly serverNow: () => number,
    /** Finds the offline notice that explains a 404, if the page saw one. */
    private readonly findOffline: (connectionId: string) => OfflineNotice | undefined,
    private readonly onClose: () => void,
  ) {
    this.timeline = new Timeline(byTestId('timeline-chart'));
    byId('conn-close').addEventListener('click', () => this.close());
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && this.openId) this.close();
    });
    this.kickBtn.addEventListener('click', () => void this.kick());
  }

  get connectionId(): string | null {
    return this.openId;
  }

  /** Opens with what the table knows, so the panel has content before the first detail arrives. */
  open(c: ConnectionView): void {
    if (this.openId === c.connectionId) return;
    this.poller.stop();
    this.openId = c.connectionId;
    this.current = c;
    this.gone.hidden = true;
    this.error.hidden = true;
    this.kickBtn.disabled = false;
    setText(this.kickResult, '');
    this.timeline.clear();
    setText(this.f.tracing, 'starting trace…');
    this.renderConnection(c);
    this.root.hidden = false;
    this.poller.start();
  }

  close(): void {
    this.poller.stop();
    this.openId = null;
    this.current = null;
    this.root.hidden = true;
    this.onClose();
  }

  /** The stream reported this connection closed: no need to wait for the 404. */
  offline(n: OfflineNotice): void {
    if (n.connectionId === this.openId) this.markGone(n);
  }

  private async load(): Promise<void> {
    const id = this.openId;
    if (!id) return;
    let detail: ConnectionDetail;
    try {
      detail = await getConnection(id);
    } catch (err) {
      if (id !== this.openId) return;
      if (err instanceof ApiError && err.status === 404) {
        this.markGone(this.findOffline(id));
        return;
      }
      this.error.hidden = false;
      setText(this.error, `Could not refresh: ${(err as Error).message}`);
      return;
    }
    if (id !== this.openId) return; // closed or switched while the request was out
    this.error.hidden = true;
    this.current = detail.connection;
    this.renderConnection(detail.connection);
    const n = detail.timeline.events.length;
    const tl = detail.timeline;
    const kept = tl.keptSince != null && tl.keptSince > tl.tracingSince ? ` · the last ${fmtInt(n)} kept, from ${fmtClock(tl.keptSince)}` : ` · ${fmtInt(n)} event${n === 1 ? '' : 's'}`;
    setText(this.f.tracing, `traced since ${fmtClock(tl.tracingSince)}${kept} · recording started when this view opened`);
    this.timeline.update(detail, this.serverNow());
  }

  private markGone(n: OfflineNotice | undefined): void {
    this.poller.stop();
    this.kickBtn.disabled = true;
    this.gone.hidden = false;
    setText(
      this.gone,
      n
        ? `Connection closed at ${fmtClock(n.t)}: ${n.reason}${n.detection ? ' (detected by the gateway)' : ''}, silent for ${fmtDuration(n.silentForMs)}.`
        : 'This connection is gone: the gateway no longer has it.',
    );
  }

  private renderConnection(c: ConnectionView): void {
    const p = c.policy;
    setText(this.f.id, c.connectionId);
    setText(this.f.who, `${c.userId} · ${c.deviceId} · ${c.transport} · ${c.remoteAddress}`);
    setText(this.f.interval, p ? fmtDuration(p.intervalMs) : DASH);
    this.f.interval.dataset['ms'] = p ? String(p.intervalMs) : '';
    setText(this.f.learned, c.announcedIntervalMs == null ? 'not announced' : fmtDuration(c.announcedIntervalMs));
    setText(this.f.rtt, c.rttMs == null ? 'no samples' : fmtMs(c.rttMs));
    this.f.rtt.dataset['ms'] = c.rttMs == null ? '' : String(c.rttMs);
    setText(this.f.lastHeard, `${fmtDuration(c.lastHeardMsAgo)} ago`);
    this.f.lastHeard.dataset['ms'] = String(c.lastHeardMsAgo);
    this.f.lastHeard.classList.toggle('warn', c.suspected);
    setText(
      this.f.policy,
      p ? `${p.direction}-driven · ${fmtDuration(p.minIntervalMs)}–${fmtDuration(p.maxIntervalMs)} · miss ${p.missBudget} · grace ${fmtDuration(p.graceMs)}` : 'not granted yet',
    );
    this.f.policy.title = p ? policyTitle(p) : '';
    setText(this.f.connectedFor, fmtDuration(c.connectedForMs));
    setText(this.f.unacked, fmtInt(c.unacked));
    setText(this.f.frames, `${fmtInt(c.stats.framesIn)} in · ${fmtInt(c.stats.framesOut)} out`);
    setText(this.f.heartbeats, `${fmtInt(c.stats.pingsIn)} in · ${fmtInt(c.stats.pingsOut)} out`);
    setText(this.f.state, fmtKv(c.clientState) || DASH);
    setText(this.f.info, fmtKv(c.clientInfo) || DASH);
  }

  private async kick(): Promise<void> {
    const c = this.current;
    if (!c) return;
    this.kickBtn.disabled = true;
    setText(this.kickResult, 'kicking…');
    try {
      const r = await kick(c.connectionId, { userId: c.userId, deviceId: c.deviceId });
      setText(this.kickResult, r.kicked ? `kicked ${r.kicked} connection${r.kicked === 1 ? '' : 's'}` : 'nothing to kick');
      this.kickBtn.disabled = r.kicked > 0; // the offline event (or a 404) follows
    } catch (err) {
      setText(this.kickResult, `kick failed: ${(err as Error).message}`);
      this.kickBtn.disabled = false;
    }
  }
}
