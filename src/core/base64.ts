/**
 * Whether `s` is base64 (the standard alphabet, padding optional) of a
 * length base64 can have. Buffer.from(s, 'base64') takes anything, skipping
 * what it cannot read, so a backend's mistake would reach a device as other
 * bytes instead of being refused.
 */
export function isBase64(s: string): boolean {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s)) return false;
  // One character past a group of four carries no whole byte; padding only ends a whole group.
  return s.replace(/=+$/, '').length % 4 !== 1 && (!s.endsWith('=') || s.length % 4 === 0);
}
