/** The stat tiles along the top. Each value element holds only the value. */
import type { OfflineNotice, Overview, Tick } from '../../src/admin/api-types.js';
import { byId, byTestId, setText } from './dom.js';
import { fmtDuration, fmtInt, fmtMs } from './format.js';

export class Tiles {
  private readonly online = byTestId('stat-online');
  private readonly connections = byTestId('stat-connections');
  private readonly users = byTestId('stat-users');
  private readonly heartbeats = byTestId('stat-heartbeats');
  private readonly detections = byTestId('stat-detections');
  private readonly falseSuspicions = byTestId('stat-false-suspicions');
  private readonly rtt = byTestId('stat-rtt');
  private readonly subConnections = byId('sub-connections');
  private readonly subHeartbeats = byId('sub-heartbeats');
  private readonly subSuspicions = byId('sub-suspicions');
  private readonly subRtt = byId('sub-rtt');
  /** Running total; between ticks each detection notice adds one, so the tile moves the moment it happens. */
  private detected = 0;

  private showDetections(): void {
    setText(this.detections, fmtInt(this.detected));
    // Red only once something was found dead: zero is the good news.
    this.detections.closest('.tile')?.classList.toggle('some', this.detected > 0);
  }

  setOverview(o: Overview, fromSnapshot: boolean): void {
    this.detected = fromSnapshot ? o.detections : Math.max(this.detected, o.detections);
    this.showDetections();
    this.setSuspicions(o.suspicions, o.falseSuspicions);
    const hs = o.connections.handshaking ? ` · ${fmtInt(o.connections.handshaking)} handshaking` : '';
    setText(this.subConnections, `tcp ${fmtInt(o.connections.tcp)} · ws ${fmtInt(o.connections.ws)}${hs}`);
  }

  /** Before the first tick arrives, the overview's counts stand in. */
  setCountsFromOverview(o: Overview): void {
    setText(this.online, fmtInt(o.online.devices));
    setText(this.connections, fmtInt(o.connections.total));
    setText(this.users, fmtInt(o.online.users));
  }

  setTick(t: Tick): void {
    setText(this.online, fmtInt(t.online));
    setText(this.connections, fmtInt(t.connections));
    setText(this.users, fmtInt(t.users));
    setText(this.heartbeats, fmtInt(t.heartbeatsPerSec));
    setText(this.subHeartbeats, `${fmtInt(t.framesPerSec)} frames/s`);
    this.detected = Math.max(this.detected, t.detections);
    this.showDetections();
    this.setSuspicions(t.suspicions, t.falseSuspicions);
    const r = t.rtt;
    const none = r.count === 0 || r.p50 == null;
    this.rtt.classList.toggle('none', none);
    if (none) {
      setText(this.rtt, 'no samples');
      setText(this.subRtt, 'gateway PINGs · 1 min');
    } else {
      setText(this.rtt, pair(r.p50, r.p99));
      // The newest 20,000 are kept: on a busy gateway they cover less than the minute.
      const span = r.windowMs != null && r.windowMs < 60_000 ? `last ${fmtDuration(r.windowMs)}` : '1 min';
      setText(this.subRtt, `${fmtInt(r.count)} samples · ${span}`);
    }
  }

  private setSuspicions(suspicions: number, falseSuspicions: number): void {
    setText(this.falseSuspicions, fmtInt(falseSuspicions));
    setText(this.subSuspicions, `of ${fmtInt(suspicions)} suspicions`);
  }

  countOffline(n: OfflineNotice): void {
    if (!n.detection) return;
    this.detected++;
    this.showDetections();
  }
}

/** A tile has room for about a dozen characters: "84 / 240 ms", or "84 ms / 1.5 s" once p99 passes a second. */
function pair(p50: number | null, p99: number | null): string {
  const short = (ms: number | null): string => (ms != null && ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : fmtMs(ms));
  if (p99 != null && p99 >= 1000) return `${short(p50)} / ${short(p99)}`;
  return `${fmtMs(p50).replace(' ms', '')} / ${fmtMs(p99)}`;
}
