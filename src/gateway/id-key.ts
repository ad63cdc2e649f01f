/**
 * One map key for two ids, whatever characters they hold: the first one's
 * length first. User, device and message ids may hold any character (NUL
 * included: HELLO and the server API's JSON carry it), and joined by a
 * separator, user `a\0b` device `c` and user `a` device `b\0c` were one key.
 * Nest it for more: `idKey(user, idKey(device, id))`.
 */
export const idKey = (first: string, rest: string): string => `${first.length}:${first}${rest}`;
