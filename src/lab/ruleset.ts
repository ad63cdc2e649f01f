/**
 * nftables rulesets for the lab router, as text for `nft -f -`. Pure, so the
 * exact rules are unit-tested and shown by `longlink lab rules`.
 *
 * Table `ll` is the NAT itself: masquerade towards the server, per-client byte
 * counters, and in strict mode the drop of packets that match no mapping
 * (conntrack state invalid), as carrier-grade NATs do. Table `ll_fault` holds
 * the injected faults and is replaced whole on every change, so clearing a
 * fault is exact. Faults hook prerouting at raw priority (before conntrack:
 * a blackholed packet from a client does not refresh the mapping) and
 * postrouting last (after de-NAT, where the client interface is known; a
 * packet from the server dropped there has been through conntrack).
 */
export interface NatRules {
  clients: number;
  strict: boolean;
  /** Server ports whose client traffic is diverted to a delaying relay in the router, and the relay's ports. */
  relays?: { serverPort: number; relayPort: number }[];
}

export const clientIf = (i: number) => `c${i}`;
export const SERVER_IF = 'srv';

export function natRuleset(r: NatRules): string {
  const lines = [
    'table ip ll {',
    ...Array.from({ length: r.clients }, (_, i) => `  counter up_${i} {}\n  counter down_${i} {}`),
    '  chain pre_nat {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    ...(r.relays ?? []).map((x) => `    iifname "c*" tcp dport ${x.serverPort} redirect to :${x.relayPort}`),
    '  }',
    '  chain post_nat {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    `    oifname "${SERVER_IF}" masquerade`,
    '  }',
    // Counted on the client's link: up before the faults' raw-priority drop (-300), down after their
    // postrouting drop (300). It was the other way round: a blackhole counted none of what the client
    // sent into it and all that never reached the client.
    '  chain count_in {',
    '    type filter hook prerouting priority -350; policy accept;',
    ...Array.from({ length: r.clients }, (_, i) => `    iifname "${clientIf(i)}" counter name "up_${i}"`),
    '  }',
    '  chain count_out {',
    '    type filter hook postrouting priority 350; policy accept;',
    ...Array.from({ length: r.clients }, (_, i) => `    oifname "${clientIf(i)}" counter name "down_${i}"`),
    '  }',
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    ...(r.strict ? ['    ct state invalid counter drop'] : []),
    '  }',
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    ...(r.strict ? ['    ct state invalid counter drop'] : []),
    '  }',
    '}',
  ];
  return lines.join('\n') + '\n';
}

export type Direction = 'up' | 'down' | 'both';

/** One injected fault on one client's path (client index), or on all (-1). */
export type FaultRule =
  | { kind: 'blackhole'; client: number; direction: Direction }
  | { kind: 'loss'; client: number; percent: number; direction: Direction }
  | { kind: 'reset'; client: number; port: number };

const ifMatch = (dir: 'in' | 'out', client: number) => (client < 0 ? `${dir === 'in' ? 'iifname' : 'oifname'} "c*"` : `${dir === 'in' ? 'iifname' : 'oifname'} "${clientIf(client)}"`);

/** The whole `ll_fault` table for the faults in force (an empty table when none). */
export function faultRuleset(faults: FaultRule[]): string {
  const pre: string[] = [];
  const post: string[] = [];
  const fwd: string[] = [];
  for (const f of faults) {
    // Typed at the API, but `lab up` builds them from what is typed: a direction it did not know
    // became "both" and a client index that was not one ("cNaN") matched nothing, both reported done.
    if (!Number.isInteger(f.client) || f.client < -1) throw new RangeError(`fault client must be an index, or -1 for all, got ${f.client}`);
    if (f.kind !== 'reset' && !['up', 'down', 'both'].includes(f.direction)) throw new RangeError(`fault direction must be up, down or both, got ${f.direction}`);
    if (f.kind === 'reset' && !(Number.isInteger(f.port) && f.port > 0 && f.port < 65536)) throw new RangeError(`reset port must be a TCP port, got ${f.port}`);
    if (f.kind === 'blackhole' || f.kind === 'loss') {
      // In hundredths of a percent: drawn mod 100, 0.4 % rounded to a rule that never drops and 0.5 % to 1 %,
      // and the tuning works at 0.1 %–1 %.
      if (f.kind === 'loss' && !(f.percent >= 0.01 && f.percent <= 100)) throw new RangeError(`loss percent must be from 0.01 to 100, got ${f.percent}`);
      const verdict = f.kind === 'loss' ? `numgen random mod 10000 < ${Math.round(f.percent * 100)} counter drop` : 'counter drop';
      if (f.direction !== 'down') pre.push(`    ${ifMatch('in', f.client)} ${verdict}`);
      if (f.direction !== 'up') post.push(`    ${ifMatch('out', f.client)} ${verdict}`);
    } else {
      // A middlebox reset: the next segment of that connection in either
      // direction is answered with a RST to its sender (NAT applies to it).
      fwd.push(`    ${ifMatch('in', f.client)} tcp sport ${f.port} counter reject with tcp reset`);
      fwd.push(`    ${ifMatch('out', f.client)} tcp dport ${f.port} counter reject with tcp reset`);
    }
  }
  return [
    'table ip ll_fault {',
    '  chain pre {',
    '    type filter hook prerouting priority raw; policy accept;',
    ...pre,
    '  }',
    '  chain post {',
    '    type filter hook postrouting priority 300; policy accept;',
    ...post,
    '  }',
    '  chain forward {',
    '    type filter hook forward priority -10; policy accept;',
    ...fwd,
    '  }',
    '}',
    '',
  ].join('\n');
}
