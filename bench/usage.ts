import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * `--help` (or `-h`) for the bench tools whose usage is their header
 * comment: prints that comment as text and exits. The comment is the one
 * place their flags are written down, so the help cannot drift from it.
 */
export function exitOnHelp(moduleUrl: string, argv: readonly string[] = process.argv.slice(2)): void {
  if (!argv.includes('--help') && !argv.includes('-h')) return;
  const source = fs.readFileSync(fileURLToPath(moduleUrl), 'utf8');
  const header = /^\/\*\*([\s\S]*?)\*\//.exec(source);
  const text = header ? header[1].split('\n').map((l) => l.replace(/^\s*\* ?/, '')).join('\n').trim() : 'no usage written';
  process.stdout.write(text + '\n');
  process.exit(0);
}
