/**
 * Control characters (C0 but tab, DEL, C1) as \xNN: text from the gateway
 * (a message, a close reason) must not drive the terminal it is printed on.
 */
export function escapeControls(s: string): string {
  return s.replace(/[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
