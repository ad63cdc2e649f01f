import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Command, Option } from 'commander';
import { serveCommand } from '../../src/cli/serve.js';
import { clientCommand } from '../../src/cli/client.js';
import { labCommand } from '../../src/cli/lab.js';
import { demoCommand } from '../../src/cli/demo.js';
import { tuneCommand } from '../../src/cli/tune.js';
import { MODES } from '../../bench/bench-args.js';

// The docs name flags and state their defaults in prose ("`--connect-hook-timeout-ms` (2 s)");
// nothing but this keeps them true when a flag is renamed or a default changes.

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const DOCS = ['README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
/** Each doc with its line breaks made spaces, so a phrase wrapped over two lines is one. */
const text = new Map(DOCS.map((f) => [f, fs.readFileSync(path.join(ROOT, f), 'utf8').replace(/\s+/g, ' ')]));

function optionsOf(cmd: Command): Option[] {
  return [...cmd.options, ...cmd.commands.flatMap(optionsOf)];
}

/**
 * Flags of other programs the docs show in commands (npm, node and its V8 flags, redis-server, redis-cli, the
 * detector simulation and the Redis load script), and interface names in LAB.md's diagram.
 */
const OTHER_TOOLS = new Set(['--omit', '--test', '--port', '--cluster', '--tune', '--default-bound', '--hours', '--count', '--steady-s', '--interval-ms', '--no-x', '--eth0', '--srv', '--trace-generalization']);

test('every --flag the docs name exists: an option of a longlink command, or of npm run bench', () => {
  const known = new Set<string>(['--help', '--publish', '--out']);
  for (const cmd of [serveCommand(), clientCommand(), labCommand(), demoCommand(), tuneCommand()]) for (const o of optionsOf(cmd)) if (o.long) known.add(o.long);
  for (const mode of Object.values(MODES)) {
    if (mode.flag) known.add(mode.flag);
    for (const f of Object.keys(mode.flags)) known.add(`--${f}`);
  }
  const unknown: string[] = [];
  // docs/BENCHMARKS.md also shows the flags of the single-purpose bench tools (profile-server, fast-path, ...).
  for (const [file, t] of text) {
    if (file === 'docs/BENCHMARKS.md') continue;
    for (const m of t.matchAll(/(?<![\w-])--[a-z][a-z0-9-]*/g)) if (!known.has(m[0]) && !OTHER_TOOLS.has(m[0])) unknown.push(`${file}: ${m[0]}`);
  }
  assert.deepEqual([...new Set(unknown)], []);
});

// `longlink <command> --help` is what the README sends a newcomer to: commander appends each
// default, so a description that states its own printed two ("(default: <host>-cli, ...) (default: "vm-cli")").
test('no option of a longlink command states its default twice in --help', () => {
  const twice: string[] = [];
  for (const cmd of [serveCommand(), clientCommand(), labCommand(), demoCommand(), tuneCommand()]) {
    for (const o of optionsOf(cmd)) if ((cmd.createHelp().optionDescription(o).match(/\(default/g) ?? []).length > 1) twice.push(`${cmd.name()} ${o.flags}`);
  }
  assert.deepEqual(twice, []);
});

/** A figure as the docs write it ("30 s", "16 KiB", "10,000") in the flag's own unit. */
function valueOf(flag: string, figure: string, unit: string | undefined): number {
  const n = Number(figure.replace(/,/g, ''));
  const scale: Record<string, number> = { ms: 1, s: flag.endsWith('-ms') ? 1000 : 1, h: 3_600_000, KiB: 1024, MiB: 1 << 20 };
  return n * (unit ? scale[unit] : 1);
}

test('every default the docs state beside a serve flag is its default', () => {
  const defaults = new Map(serveCommand().options.filter((o) => o.long).map((o) => [o.long!, o.defaultValue as unknown]));
  const claims: { file: string; flag: string; stated: string; value: number | string }[] = [];
  const NUM = '(\\d+(?:[,.]\\d+)*)(?![,.]?\\d)\\s*(ms|s|h|KiB|MiB)?';
  for (const [file, t] of text) {
    // "`--flag` (2 s)", "`--flag`, 30 s, and", "`--flag`, default 10 s)"
    for (const m of t.matchAll(new RegExp('`(--[a-z0-9-]+)`(?:,| \\()\\s*(?:default )?' + NUM + '\\s*[),]', 'g'))) claims.push({ file, flag: m[1], stated: m[0], value: valueOf(m[1], m[2], m[3]) });
    // "(default 15 s, `--flag`)", "10,000 (`--flag`)"
    for (const m of t.matchAll(new RegExp('(?:default )?' + NUM + '(?:,| \\()\\s*`(--[a-z0-9-]+)`\\)', 'g'))) claims.push({ file, flag: m[3], stated: m[0], value: valueOf(m[3], m[1], m[2]) });
    // a table row "| `--flag` | `info` |" or "| `--flag <path>` | none |"
    for (const m of t.matchAll(/\| `(--[a-z0-9-]+)(?: <[^>]+>)?` \| `?([^|`]+?)`? \|/g)) claims.push({ file, flag: m[1], stated: m[0], value: /^\d[\d,]*$/.test(m[2]) ? valueOf(m[1], m[2], undefined) : m[2] });
  }
  assert.ok(claims.length >= 10, `found the docs' stated defaults (${claims.length})`);
  const wrong: string[] = [];
  for (const c of claims) {
    if (!defaults.has(c.flag)) continue; // another command's flag
    const d = defaults.get(c.flag);
    const actual = d === undefined ? 'none' : d;
    if (actual !== c.value) wrong.push(`${c.file}: "${c.stated}" but ${c.flag} defaults to ${String(actual)}`);
  }
  assert.deepEqual(wrong, []);
});

// docs/OPERATIONS.md's metrics table: each row's metric (or metrics) with its type and labels, and
// every metric the gateway registers has its row (an upstream configured, so its metrics exist too).
test('docs/OPERATIONS.md lists every gateway metric with its type and labels, and no other', async () => {
  const { Gateway } = await import('../../src/gateway/gateway.js');
  const { GatewayMetrics } = await import('../../src/admin/metrics.js');
  const gw = new Gateway({ tcp: false, ws: false, upstream: { sink: { name: 'test', send: async () => {} } } });
  try {
    const metrics = (await new GatewayMetrics(gw, { processMetrics: false }).registry.getMetricsAsJSON()) as unknown as { name: string; type: string; values: { labels: Record<string, unknown> }[] }[];
    const registered = new Map(metrics.map((m) => [m.name, m]));
    const ops = fs.readFileSync(path.join(ROOT, 'docs/OPERATIONS.md'), 'utf8');
    const rows = [...ops.matchAll(/^\| ((?:`longlink_[a-z_]+`(?:, )?)+) \| (counter|gauge|histogram) \|\s*([^|]*?)\s*\|/gm)];
    assert.ok(rows.length > 30, `the table's rows (${rows.length})`);
    const documented = new Set<string>();
    for (const [, names, type, labels] of rows) {
      // The labels a row names: `direction`, `transport` = `tcp`, ... (the names before each "=" or alone).
      const labelNames = [...labels.matchAll(/(?:^|, )`([a-z_]+)`/g)].map((l) => l[1]).filter((l) => l !== 'quantile' || type !== 'histogram');
      for (const n of names.match(/longlink_[a-z_]+/g)!) {
        documented.add(n);
        const m = registered.get(n);
        assert.ok(m, `${n} is documented but not registered`);
        assert.equal(m.type, type, `${n}: type`);
        for (const v of m.values) for (const l of Object.keys(v.labels)) if (l !== 'le') assert.ok(labelNames.includes(l), `${n}: label ${l} is not in its row (${labels})`);
      }
    }
    for (const n of registered.keys()) assert.ok(documented.has(n), `${n} is registered but has no row in docs/OPERATIONS.md`);
  } finally {
    await gw.close();
  }
});

// The admin port's refusals: every status and code admin-server.ts answers with has its row in
// docs/OPERATIONS.md's error table (the server API's own, /v1, are in docs/SERVER-API.md).
test('docs/OPERATIONS.md lists every error the admin port answers, with its status', () => {
  const src = fs.readFileSync(path.join(ROOT, 'src/admin/admin-server.ts'), 'utf8');
  const ops = fs.readFileSync(path.join(ROOT, 'docs/OPERATIONS.md'), 'utf8');
  const answered = [...src.matchAll(/AdminError\((\d{3}), '(LL_ERR_[A-Z_]+)'/g), ...src.matchAll(/json\(res, (\d{3}), \{ error: \{ code: '(LL_ERR_[A-Z_]+)'/g)].map((m) => [m[2], m[1]]);
  assert.ok(answered.length >= 10);
  for (const [code, status] of answered) assert.ok(ops.includes(`| \`${code}\` | ${status} |`), `docs/OPERATIONS.md has the row | \`${code}\` | ${status} |`);
});

// README: `longlink serve` takes "a flag per limit of the gateway". A limit added without its flag
// could only be set from code.
test('every limit of the gateway (limits.*) has its serve flag', async () => {
  const { Gateway } = await import('../../src/gateway/gateway.js');
  const gw = new Gateway({ tcp: false, ws: false });
  try {
    const flags = new Set(serveCommand().options.map((o) => o.long));
    const kebab = (k: string) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    const missing = Object.keys(gw.options.limits).filter((k) => !flags.has(kebab(k)));
    assert.deepEqual(missing, []);
  } finally {
    await gw.close();
  }
});

// docs/ARCHITECTURE.md's module table says how the code is laid out: a module it does not name is one
// a newcomer cannot place. Named by path, by file name, or by its folder (`src/link/*`).
test('docs/ARCHITECTURE.md names every module under src/', () => {
  const arch = fs.readFileSync(path.join(ROOT, 'docs/ARCHITECTURE.md'), 'utf8');
  const files = (fs.readdirSync(path.join(ROOT, 'src'), { recursive: true }) as string[]).filter((f) => f.endsWith('.ts')).map((f) => `src/${f.split(path.sep).join('/')}`);
  assert.ok(files.length > 50);
  const unnamed = files.filter((f) => !arch.includes(f) && !arch.includes(`${path.posix.basename(f)}`) && !arch.includes(`${path.posix.dirname(f)}/*`));
  assert.deepEqual(unnamed, []);
});

// docs/PROTOCOL.md: "0 turns off `a`, `b`, ... and is refused for the rest". The list had left out
// maxPartialFrameBytes, which takes 0 (no budget); LimitOptions' comment said every limit did.
test("docs/PROTOCOL.md's list of limits that 0 turns off is the gateway's", async () => {
  const { Gateway } = await import('../../src/gateway/gateway.js');
  const proto = fs.readFileSync(path.join(ROOT, 'docs/PROTOCOL.md'), 'utf8').replace(/\s+/g, ' ');
  const m = /0 turns off ((?:`[A-Za-z]+`(?:, | and |,? and )?)+), and is refused for the rest/.exec(proto);
  assert.ok(m, 'PROTOCOL.md has "0 turns off ..., and is refused for the rest"');
  const listed = [...m[1].matchAll(/`([A-Za-z]+)`/g)].map((x) => x[1]).sort();
  const probe = new Gateway({ tcp: false, ws: false });
  const keys = Object.keys(probe.options.limits);
  await probe.close();
  const zeroOk: string[] = [];
  for (const k of keys) {
    try {
      await new Gateway({ tcp: false, ws: false, limits: { [k]: 0 } }).close();
      zeroOk.push(k);
    } catch {
      /* refused */
    }
  }
  assert.deepEqual(listed, zeroOk.sort());
});
