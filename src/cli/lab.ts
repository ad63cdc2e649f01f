import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { Command } from 'commander';
import { labUnavailable } from '../lab/exec.js';
import { SCENARIOS } from '../lab/catalog.js';
import { markdownTable, svgChart } from '../lab/report.js';
import { natRuleset, faultRuleset, type Direction, type FaultRule } from '../lab/ruleset.js';
import { LabRun, labPolicy, type ScenarioReport } from '../lab/scenarios.js';
import { MAX_CLIENTS, MAX_NAT_TIMEOUT_SEC, sweepStaleLabs } from '../lab/topology.js';
import { InvalidArgumentError } from 'commander';
import { exitOnUsageError, int, positiveInt, positiveNumber } from './parse.js';
import { runAdaptiveLab } from '../lab/adaptive.js';
import { adaptiveMarkdown, adaptiveSvg } from '../lab/adaptive-report.js';

/**
 * `longlink lab`: the network lab. `run` plays scenarios and writes reports;
 * `up` builds a lab with a gateway and clients and takes fault commands on
 * stdin or from a schedule; `clean` deletes lab namespaces left by a killed
 * run.
 */
export function labCommand(): Command {
  // Set before its subcommands are added: they inherit it.
  const lab = new Command('lab').description('network lab: clients behind a real Linux NAT in network namespaces, with injected faults').exitOverride(exitOnUsageError);
  lab
    .command('check')
    .description('tell whether the lab can run on this machine')
    .action(async () => {
      const why = await labUnavailable();
      console.log(why ? `lab unavailable: ${why}` : 'lab available');
      process.exitCode = why ? 1 : 0;
    });
  lab
    .command('list')
    .description('list the scenarios')
    .action(() => {
      for (const s of SCENARIOS) console.log(`${s.name.padEnd(12)} ${s.title}`);
    });
  lab
    .command('rules')
    .description('print the nftables rules the router gets (NAT, and an example of each fault)')
    .action(() => {
      console.log(natRuleset({ clients: 2, strict: true }));
      console.log(faultRuleset([
        { kind: 'blackhole', client: 0, direction: 'both' },
        { kind: 'loss', client: 1, percent: 5, direction: 'up' },
        { kind: 'reset', client: 0, port: 40000 },
      ]));
    });
  lab
    .command('clean')
    .description('delete lab namespaces whose process is gone')
    .action(async () => {
      const gone = await sweepStaleLabs();
      console.log(gone.length ? `deleted ${gone.join(', ')}` : 'nothing to clean');
    });
  lab
    .command('run')
    .description('run scenarios and write <scenario>.json, .md and .svg reports')
    .argument('<scenario...>', `scenario names, or all (${SCENARIOS.map((s) => s.name).join(', ')})`)
    .option('--out <dir>', 'directory for the reports', 'lab-results')
    .option('--window-scale <x>', 'multiply every wait (for a slow machine)', positiveNumber, 1)
    .action(async (names: string[], o) => {
      const why = await labUnavailable();
      if (why) {
        console.error(`lab unavailable: ${why}`);
        process.exit(1);
      }
      await sweepStaleLabs();
      const chosen = names.includes('all') ? SCENARIOS : names.map((n) => SCENARIOS.find((s) => s.name === n) ?? fail(`unknown scenario ${n}`));
      fs.mkdirSync(o.out, { recursive: true });
      const reports = [];
      for (const s of chosen) {
        const t0 = Date.now();
        const rep = await s.run({ windowScale: o.windowScale, log: (m) => console.error(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${m}`) });
        reports.push(rep);
        const base = path.join(o.out, s.name);
        fs.writeFileSync(`${base}.json`, JSON.stringify(rep, null, 2) + '\n');
        fs.writeFileSync(`${base}.md`, markdownTable(rep));
        fs.writeFileSync(`${base}.svg`, svgChart([rep]));
        console.log(markdownTable(rep));
        console.error(`wrote ${base}.json, ${base}.md, ${base}.svg`);
      }
      if (reports.length > 1) {
        fs.writeFileSync(path.join(o.out, 'lab.svg'), svgChart(reports));
        fs.writeFileSync(path.join(o.out, 'lab.md'), reports.map(markdownTable).join('\n'));
        console.error(`wrote ${path.join(o.out, 'lab.svg')} and lab.md`);
      }
    });
  lab
    .command('adaptive')
    .description('the adaptive heartbeat against strict NATs of several timeouts, beside fixed intervals; writes adaptive.json, .md and .svg')
    .option('--timeouts <list>', 'NAT timeouts in seconds', intList(1, MAX_NAT_TIMEOUT_SEC), [8, 20, 45])
    .option('--span-s <s>', 'how long each lab runs', positiveInt, 720)
    .option('--start-ms <ms>', 'the adaptive client\'s start interval', positiveInt, 4000)
    .option('--fixed-ms <list>', 'fixed intervals to compare (30 s and 4.5 min, scaled by 1/10)', intList(1, 3_600_000, true), [3000, 27000])
    .option('--out <dir>', 'directory for the reports', 'lab-results')
    .action(async (o) => {
      const why = await labUnavailable();
      if (why) {
        console.error(`lab unavailable: ${why}`);
        process.exit(1);
      }
      await sweepStaleLabs();
      const t0 = Date.now();
      const rep = await runAdaptiveLab({
        timeoutsSec: o.timeouts,
        spanMs: o.spanS * 1000,
        startMs: o.startMs,
        fixedMs: o.fixedMs,
        log: (m) => console.error(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(5)} s] ${m}`),
      });
      fs.mkdirSync(o.out, { recursive: true });
      const base = path.join(o.out, 'adaptive');
      fs.writeFileSync(`${base}.json`, JSON.stringify(rep, null, 2) + '\n');
      fs.writeFileSync(`${base}.md`, adaptiveMarkdown(rep));
      fs.writeFileSync(`${base}.svg`, adaptiveSvg(rep));
      console.log(adaptiveMarkdown(rep));
      console.error(`wrote ${base}.json, ${base}.md, ${base}.svg`);
    });
  lab
    .command('report')
    .description('rebuild lab.svg and lab.md from the <scenario>.json reports in a directory')
    .option('--out <dir>', 'directory holding the reports', 'lab-results')
    .action((o) => {
      const order = SCENARIOS.map((s) => s.name);
      const reports = fs
        .readdirSync(o.out)
        .filter((f) => f.endsWith('.json') && order.includes(f.slice(0, -5)))
        .map((f) => JSON.parse(fs.readFileSync(path.join(o.out, f), 'utf8')) as ScenarioReport)
        .sort((a, b) => order.indexOf(a.scenario) - order.indexOf(b.scenario));
      fs.writeFileSync(path.join(o.out, 'lab.svg'), svgChart(reports));
      fs.writeFileSync(path.join(o.out, 'lab.md'), reports.map(markdownTable).join('\n'));
      console.error(`wrote ${path.join(o.out, 'lab.svg')} and lab.md from ${reports.length} reports`);
    });
  lab
    .command('up')
    .description('build a lab with a gateway and one client per namespace; read fault commands on stdin (type help)')
    .option('--clients <n>', `client namespaces (1 to ${MAX_CLIENTS})`, intIn(1, MAX_CLIENTS), 1)
    .option('--nat-timeout <s>', 'NAT idle timeout (conntrack TCP established), seconds', intIn(1, MAX_NAT_TIMEOUT_SEC), 10)
    .option('--loose', 'loose NAT: pick up mid-stream packets instead of dropping them')
    .option('--interval-ms <ms>', 'heartbeat interval (0 = heartbeats off)', int, 2000)
    .option('--schedule <list>', 'faults on a schedule: "SECONDS COMMAND; SECONDS COMMAND", e.g. "5 blackhole 0 both; 15 clear; 20 quit"')
    .action(async (o) => {
      const why = await labUnavailable();
      if (why) {
        console.error(`lab unavailable: ${why}`);
        process.exit(1);
      }
      const variant = o.intervalMs > 0
        ? { name: 'lab', gateway: { heartbeat: labPolicy(o.intervalMs), wheelTickMs: 50 }, client: { intervalMs: o.intervalMs } }
        : { name: 'lab', gateway: { heartbeat: labPolicy('off'), wheelTickMs: 50 }, client: { intervalMs: 3_600_000 } };
      // Read before the lab is built: a bad item must not exit with the namespaces left standing.
      const schedule = String(o.schedule ?? '')
        .split(';')
        .map((item) => item.trim())
        .filter(Boolean)
        .map((item) => {
          const m = /^(\d+(?:\.\d+)?)\s+(.+)$/.exec(item);
          if (!m) fail(`bad schedule item "${item}" (want "SECONDS COMMAND")`);
          // setTimeout fires at once past 2^31 ms: "3000000 quit" quit the lab as it came up.
          if (Number(m[1]) * 1000 > MAX_TIMER_MS) fail(`schedule item "${item}": at most ${Math.floor(MAX_TIMER_MS / 1000)} s`);
          return { atS: Number(m[1]), command: m[2] };
        });
      const run = await LabRun.open('up', Array.from({ length: o.clients }, () => variant), { natTimeoutSec: o.natTimeout, strict: !o.loose });
      const t0 = Date.now();
      const say = (m: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${m}`);
      for (const r of run.running) {
        for (const [who, p] of [['gateway', r.gateway], ['client', r.clients]] as const) {
          p.child.stdout!.on('data', () => {
            for (const l of p.lines.splice(0)) if (!['stats'].includes(l.ev)) say(`${who}[${r.index}] ${l.ev} ${JSON.stringify({ ...l, ev: undefined, t: undefined })}`);
          });
        }
      }
      say(`lab up: ${run.lab.namespaces.join(' ')}; type help for commands`);
      const quit = async () => {
        await run.close();
        say('lab torn down');
        process.exit(0);
      };
      const exec = async (line: string) => {
        const [cmd, ...a] = line.trim().split(/\s+/);
        const n = (i: number, d = 0) => (a[i] === undefined ? d : Number(a[i]));
        const r = run.running[n(0)];
        switch (cmd) {
          case '':
            return;
          case 'help':
            return say('blackhole C up|down|both · loss C PCT [dir] · rst C · flush [C] · down C · up C · freeze client|gateway [C] · thaw client|gateway [C] · clear · nat-timeout S · mappings · bytes · quit');
          case 'blackhole':
            await run.lab.addFault({ kind: 'blackhole', client: n(0), direction: (a[1] ?? 'both') as Direction });
            break;
          case 'loss':
            await run.lab.addFault({ kind: 'loss', client: n(0), percent: n(1, 5), direction: (a[2] ?? 'both') as Direction });
            break;
          case 'rst': {
            const s = await r.clients.stats();
            const port = (s.clients as { localPort: number }[])[0].localPort;
            await run.lab.addFault({ kind: 'reset', client: n(0), port } as FaultRule);
            break;
          }
          case 'flush':
            await run.lab.flushNat(a[0] === undefined ? undefined : n(0));
            break;
          case 'down':
          case 'up':
            await run.lab.link(n(0), cmd === 'up');
            break;
          case 'freeze':
          case 'thaw': {
            const t = run.running[n(1)];
            const p = a[0] === 'gateway' ? t.gateway : t.clients;
            if (cmd === 'freeze') p.freeze();
            else p.thaw();
            break;
          }
          case 'clear':
            await run.lab.clearFaults();
            break;
          case 'nat-timeout':
            await run.lab.setNatTimeout(n(0, 10));
            break;
          case 'mappings':
            return say((await run.lab.mappings()).join('\n') || 'no mappings');
          case 'bytes':
            return say(JSON.stringify(await run.lab.bytes()));
          case 'quit':
            return quit();
          default:
            return say(`unknown command ${cmd}; type help`);
        }
        say(`done: ${line.trim()}`);
      };
      const queue = (line: string) => void exec(line).catch((err) => say(`error: ${err.message}`));
      for (const { atS, command } of schedule) setTimeout(() => queue(command), atS * 1000);
      readline.createInterface({ input: process.stdin }).on('line', queue);
    });
  return lab;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/** An integer from `min` to `max` (exit 2 otherwise). */
function intIn(min: number, max: number) {
  return (v: string): number => {
    const n = v.trim() === '' ? NaN : Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer from ${min} to ${max}, got "${v}"`);
    return n;
  };
}

/**
 * Comma-separated integers from `min` to `max`, refused whole when any is not (exit 2): items that
 * were not numbers used to be dropped without a word, and Infinity kept. Empty is none (`emptyOk`).
 */
function intList(min: number, max: number, emptyOk = false) {
  return (v: string): number[] => {
    if (v.trim() === '' && emptyOk) return [];
    return v.split(',').map((x) => intIn(min, max)(x));
  };
}

function fail(msg: string): never {
  console.error(msg);
  process.exit(2);
}
