/**
 * The source a per-source budget counts a peer address against: an IPv4
 * address as it is (an IPv4-mapped IPv6 address as its IPv4), an IPv6 address
 * by its /64, the smallest prefix a subscriber is given: one laptop on IPv6 can
 * send from any of 2^64 addresses of its own network, and counted one by one
 * each would have a budget of its own.
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
    groups = [...head, ...new Array<string>(Math.max(0, 8 - head.length - tail.length)).fill('0'), ...tail];
  }
  return `${groups
    .slice(0, 4)
    .map((g) => (parseInt(g, 16) || 0).toString(16))
    .join(':')}::/64`;
}
