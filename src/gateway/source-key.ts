/**
 * The source a per-source budget counts a peer address against: an IPv4
 * address as it is (an IPv4-mapped IPv6 address as its IPv4), an IPv6 address
 * by its /64, the smallest prefix a subscriber is given: one laptop on IPv6 can
 * send from any of 2^64 addresses of its own network, and counted one by one
 * each would have a budget of its own. Two prefixes carry an IPv4 address and
 * count as it: 64:ff9b::/96 (NAT64's well-known prefix: behind a translator
 * every IPv4 client of the internet arrives from it, and by /64 they all
 * shared one budget), and 6to4's 2002::/16 (a site's /48 is its IPv4 address,
 * and by /64 one host had 65,536 budgets, one per subnet it may write).
 */
export function sourceKey(address: string): string {
  if (address.indexOf(':') < 0) return address;
  const zone = address.indexOf('%');
  const a = zone >= 0 ? address.slice(0, zone) : address;
  if (a.startsWith('::ffff:') && a.indexOf('.') > 0) return a.slice(7);
  const gap = a.indexOf('::');
  let groups: string[];
  if (gap < 0) groups = a.split(':');
  else {
    const head = gap === 0 ? [] : a.slice(0, gap).split(':');
    const tail = gap + 2 >= a.length ? [] : a.slice(gap + 2).split(':');
    groups = [...head, ...new Array<string>(Math.max(0, 8 - head.length - tail.length - (a.indexOf('.') > 0 ? 1 : 0))).fill('0'), ...tail];
  }
  const n = groups.map((g) => parseInt(g, 16) || 0);
  if (n[0] === 0x64 && n[1] === 0xff9b && n[2] === 0 && n[3] === 0 && n[4] === 0 && n[5] === 0) {
    // The last 32 bits, written as hex groups or as a dotted quad.
    const last = groups[groups.length - 1];
    return last.indexOf('.') > 0 ? last : ipv4(n[6], n[7]);
  }
  if (n[0] === 0x2002) return ipv4(n[1], n[2]);
  return `${n
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(':')}::/64`;
}

function ipv4(hi: number, lo: number): string {
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}
