import { readFileSync } from 'node:fs';
import type { Command, Option } from 'commander';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { z } from 'zod';
import { redactUrl } from '../gateway/stores/redis-connect.js';
import { LonglinkError } from '../protocol/errors.js';

/**
 * Configuration as operators expect it: every flag of a command may also come
 * from an environment variable (`--tcp-port` → `LONGLINK_TCP_PORT`) and from
 * a YAML or JSON file (`--config longlink.yaml`, keys are the flags without
 * their dashes, `--no-ws` is `ws: false`). Precedence: flags > environment >
 * file > defaults. The file is checked against a schema made from the flags
 * themselves (zod): an unknown key or a value of the wrong kind is refused
 * with its path.
 */

/** The environment variable for a flag: `--tcp-port` → `LONGLINK_TCP_PORT`. */
export function envName(long: string): string {
  return `LONGLINK_${long.replace(/^--/, '').replace(/-/g, '_').toUpperCase()}`;
}

/** The file key for a flag: `--tcp-port` → `tcp-port`, `--no-ws` → `ws`. */
export function fileKey(opt: Option): string {
  return opt.long!.replace(/^--(no-)?/, '');
}

/**
 * Names every option's environment variable (shown in --help). Commander only
 * reads variables set before an option is added, so `applyEnv` reads them.
 */
export function bindEnv(cmd: Command): Command {
  for (const opt of cmd.options) {
    // --config too (LONGLINK_CONFIG, the usual way to hand a container its file): it was read from the flag alone.
    if (!opt.long || opt.long === '--print-config' || opt.long === '--help' || opt.envVar) continue;
    opt.env(envName(opt.long));
  }
  return cmd;
}

type Parser = (value: string, previous: unknown) => unknown;

/** Applies LONGLINK_* variables to every option the command line did not set. */
export function applyEnv(cmd: Command, env: NodeJS.ProcessEnv = process.env): void {
  for (const opt of cmd.options) {
    const name = opt.envVar;
    const raw = name ? env[name] : undefined;
    if (!name || raw === undefined) continue;
    const attr = opt.attributeName();
    if (cmd.getOptionValueSource(attr) === 'cli') continue;
    const off = ['', '0', 'false', 'no'].includes(raw.trim().toLowerCase());
    let value: unknown;
    if (opt.negate) {
      if (off) continue;
      value = false;
    } else if (opt.isBoolean()) {
      value = !off;
    } else {
      try {
        if (opt.argChoices && !opt.argChoices.includes(raw)) throw new Error(`expected one of ${opt.argChoices.join(', ')}`);
        const parse = (opt as unknown as { parseArg?: Parser }).parseArg;
        value = parse ? parse(raw, undefined) : raw;
      } catch (err) {
        throw new LonglinkError('LL_ERR_INVALID_CONFIG', `${name}=${JSON.stringify(raw)}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    cmd.setOptionValueWithSource(attr, value, 'env');
  }
}

/** Edit distance (Levenshtein) between two names. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

/** The known name nearest to `name`, if near enough to be what was meant (as git and npm suggest). */
export function nearest(name: string, known: Iterable<string>, prefix = ''): string | undefined {
  const bare = name.slice(prefix.length).toLowerCase();
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = distance(bare, k.slice(prefix.length).toLowerCase());
    if (d < bestD) [best, bestD] = [k, d];
  }
  return bestD <= Math.max(2, Math.floor(bare.length / 2)) ? best : undefined;
}

/**
 * LONGLINK_* variables set in the environment that no option reads (a misspelled
 * LONGLINK_TCP_PORTT, or LONGLINK_REDIS_URL for LONGLINK_REDIS): each read nothing, so
 * whoever set it in a container believed it applied. One warning each, naming the nearest
 * known variable. `others` are read by other commands or tools, not unknown.
 */
export function unknownEnv(cmd: Command, env: NodeJS.ProcessEnv = process.env, others: readonly string[] = []): string[] {
  const known = new Set([...cmd.options.map((o) => o.envVar).filter((v): v is string => Boolean(v)), ...others]);
  const out: string[] = [];
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith('LONGLINK_') || known.has(name)) continue;
    const near = nearest(name, known, 'LONGLINK_');
    out.push(`${name} is not a longlink ${cmd.name()} variable${near ? ` (did you mean ${near}?)` : ''}: ignored`);
  }
  return out;
}

/** The schema of one option's value in a file, from what the option takes. */
function valueSchema(opt: Option): z.ZodType {
  if (opt.negate || opt.isBoolean()) return z.boolean();
  if (opt.argChoices) return z.enum(opt.argChoices as [string, ...string[]]);
  const parse = (opt as unknown as { parseArg?: Parser }).parseArg;
  if (!parse) return z.string();
  // A number option: its own parser is the judge, so a file value is held to the same range as a flag.
  // A list option (--upstream-events a,b) takes a YAML list too: --print-config writes it as one.
  return z.union([z.number(), z.string(), z.array(z.union([z.number(), z.string()]))]).transform((v, ctx) => {
    try {
      return parse(Array.isArray(v) ? v.join(',') : String(v), undefined);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: err instanceof Error ? err.message : String(err) });
      return z.NEVER;
    }
  });
}

export function configSchema(cmd: Command): z.ZodObject {
  const shape: Record<string, z.ZodType> = {};
  for (const opt of cmd.options) {
    // --print-config is an action, not a setting: in a file it made every start print and exit 0.
    if (!opt.long || opt.long === '--config' || opt.long === '--help' || opt.long === '--print-config') continue;
    shape[fileKey(opt)] = valueSchema(opt).optional();
  }
  return z.strictObject(shape);
}

/**
 * Reads `file` and applies its values to every option the command line and
 * the environment left at its default. Throws LL_ERR_INVALID_CONFIG naming the
 * file and each bad key's path.
 */
export function applyConfigFile(cmd: Command, file: string): void {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new LonglinkError('LL_ERR_INVALID_CONFIG', `${file}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
  if (raw === null || raw === undefined) return;
  const r = configSchema(cmd).safeParse(raw);
  if (!r.success) {
    const keys = Object.keys(configSchema(cmd).shape);
    const unknown = (k: string) => {
      const near = nearest(k, keys);
      return near ? `${k} (did you mean ${near}?)` : k;
    };
    const problems = r.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.code === 'unrecognized_keys' ? `unknown key${i.keys.length > 1 ? 's' : ''} ${i.keys.map(unknown).join(', ')}` : i.message}`);
    throw new LonglinkError('LL_ERR_INVALID_CONFIG', `${file}: ${problems.join('; ')}`);
  }
  const values = r.data as Record<string, unknown>;
  for (const opt of cmd.options) {
    if (!opt.long) continue;
    const key = fileKey(opt);
    if (!(key in values) || values[key] === undefined) continue;
    const attr = opt.attributeName();
    const source = cmd.getOptionValueSource(attr);
    if (source === 'cli' || source === 'env') continue;
    // `--no-ws` and `--ws` share the attribute: a file's `ws: false` means the negation.
    cmd.setOptionValueWithSource(attr, values[key], 'config');
  }
}

/** The effective configuration as a commented YAML file (`serve --print-config`): every key, its value and what it does. */
export function printConfig(cmd: Command): string {
  const values = cmd.opts() as Record<string, unknown>;
  const lines = ['# longlink serve configuration: every flag, without its dashes (--no-ws is `ws: false`).', '# Each may also be set from the environment (LONGLINK_TCP_PORT, ...). Precedence: flags > environment > this file > defaults.', ''];
  const seen = new Set<string>();
  for (const opt of cmd.options) {
    if (!opt.long || opt.long === '--config' || opt.long === '--help' || opt.long === '--print-config') continue;
    const key = fileKey(opt);
    if (seen.has(key)) continue;
    seen.add(key);
    const v = values[opt.attributeName()];
    const what = opt.negate ? `false is ${opt.long}: ${opt.description}` : opt.description;
    lines.push(`# ${what} (${opt.long}, ${envName(opt.long)})`);
    // Secrets are not echoed, wherever they came from.
    if (/secret|token|api-key/.test(key) && !key.endsWith('-bytes')) lines.push(`# ${key}: ${v === undefined ? '' : '(set)'}`.trimEnd());
    // And a URL's password (--redis redis://:pw@host, a webhook's Basic auth) is one too.
    else lines.push(v === undefined ? `# ${key}:` : stringifyYaml({ [key]: typeof v === 'string' && v.includes('@') ? redactUrl(v) : v }).trimEnd());
  }
  return lines.join('\n') + '\n';
}
