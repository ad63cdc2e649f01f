import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

// A new user: the packed tarball installed into fresh projects, the README's
// examples compiled (strict, NodeNext) and run as written, the CLI started
// from the installed bin, the browser entry bundled for the web. Then the
// same without optional dependencies.

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const npm = (cwd: string, args: string[]) => execFileSync('npm', [...args, '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 180_000 });
const ourVersion = (pkg: string) => JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')).version as string;

/** The code block after `heading` in the README, of the given language. */
function readmeBlock(heading: string, lang: string): string {
  const at = README.indexOf(heading);
  assert.ok(at >= 0, `README has "${heading}"`);
  const m = new RegExp('```' + lang + '\\n([\\s\\S]*?)```').exec(README.slice(at));
  assert.ok(m, `a \`\`\`${lang} block after "${heading}"`);
  return m[1];
}

let work: string;
let tarball: string;
before(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'longlink-newuser-'));
  // npm test has just built dist; packing runs no script (prepack would rebuild under the other tests' feet).
  const [packed] = JSON.parse(execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: ROOT, encoding: 'utf8' })) as { filename: string; entryCount: number; size: number; files: { path: string }[] }[];
  tarball = path.join(work, packed.filename);
  console.log(`tarball: ${packed.filename}, ${packed.size} bytes, ${packed.entryCount} files`);
  const paths = packed.files.map((f) => f.path);
  assert.ok(!paths.some((p) => /^dist\/(test|bench)\/|\.map$|^src\//.test(p)), 'no tests, benches, sources or source maps');
  // The bundles a browser or a user's bundler loads name no source map the package lacks.
  for (const p of paths.filter((x) => /^dist\/web\/.*\.js$/.test(x))) assert.doesNotMatch(fs.readFileSync(path.join(ROOT, p), 'utf8'), /sourceMappingURL=/, `${p} names a source map the package leaves out`);
  for (const p of ['LICENSE', 'CHANGELOG.md', 'README.md', 'dist/src/cli/index.js', 'dist/src/redis.js', 'dist/web/longlink.js', 'dist/web/index.html', 'dist/web-types/src/browser/index.d.ts']) assert.ok(paths.includes(p), `the tarball has ${p}`);
});
after(() => { if (!process.env.LONGLINK_KEEP_NEWUSER) fs.rmSync(work, { recursive: true, force: true }); });

/** Whether `stated` (a figure the README gives) is within 10% of `actual`. */
const near = (stated: number, actual: number) => Math.abs(stated - actual) <= actual / 10;

// The sizes the README states are what a user gets (they had drifted: 365 KB and 251 files for a
// 411 KB, 263-file tarball; 46 KB for a 50 KB bundle). Within 10%, so a small change needs no edit.
test("the README's package and browser-bundle sizes are the real ones, within 10%", () => {
  const [packed] = JSON.parse(execFileSync('npm', ['pack', '--ignore-scripts', '--dry-run', '--json'], { cwd: ROOT, encoding: 'utf8' })) as { size: number; entryCount: number }[];
  const pkg = /: (\d+) KB, (\d+) files \(it was/.exec(README);
  assert.ok(pkg, 'the README states the package size as "N KB, N files (it was"');
  assert.ok(near(Number(pkg[1]) * 1000, packed.size), `README: ${pkg[1]} KB; the tarball is ${Math.round(packed.size / 1000)} KB`);
  assert.ok(near(Number(pkg[2]), packed.entryCount), `README: ${pkg[2]} files; the tarball has ${packed.entryCount}`);
  const web = /(\d+) KB minified, (\d+) KB gzipped/.exec(README);
  assert.ok(web, 'the README states the browser bundle size as "N KB minified, N KB gzipped"');
  const js = fs.readFileSync(path.join(ROOT, 'dist/web/longlink.js'));
  assert.ok(near(Number(web[1]) * 1000, js.length), `README: ${web[1]} KB minified; dist/web/longlink.js is ${Math.round(js.length / 1000)} KB`);
  const gz = zlib.gzipSync(js, { level: 9 }).length;
  assert.ok(near(Number(web[2]) * 1000, gz), `README: ${web[2]} KB gzipped; it is ${Math.round(gz / 1000)} KB`);
});

function project(name: string, pkg: Record<string, unknown>, files: Record<string, string>): string {
  const dir = path.join(work, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name, private: true, type: 'module', ...pkg }, null, 2));
  for (const [f, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), text);
  return dir;
}

/** Runs `node file` until a line matches each of `want`, then stops it; resolves with everything it printed. */
function runUntil(cwd: string, cmd: string, args: string[], want: RegExp[], timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    const check = () => {
      if (want.every((w) => w.test(out))) {
        clearTimeout(t);
        child.kill('SIGKILL');
        resolve(out);
      }
    };
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')}: no ${want.filter((w) => !w.test(out)).join(', ')} within ${timeoutMs} ms; output:\n${out.slice(-2000)}`));
    }, timeoutMs);
    child.stdout.on('data', (d) => ((out += d), check()));
    child.stderr.on('data', (d) => ((out += d), check()));
    child.once('exit', (code) => {
      if (!want.every((w) => w.test(out))) {
        clearTimeout(t);
        reject(new Error(`${cmd} exited (${code}) before ${want.join(', ')}; output:\n${out.slice(-2000)}`));
      }
    });
  });
}

const TSCONFIG_NODE = JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, outDir: 'out', skipLibCheck: false, types: ['node'] }, include: ['*.ts'] }, null, 2);

for (const variant of ['full', 'omit-optional'] as const) {
  describe(`a new user's Node project (${variant === 'full' ? 'all dependencies' : '--omit=optional'})`, () => {
    let dir: string;
    before(() => {
      dir = project(`app-${variant}`, {}, { 'tsconfig.json': TSCONFIG_NODE, 'example.ts': readmeBlock('## Using it from code', 'ts') });
      npm(dir, ['install', tarball, ...(variant === 'omit-optional' ? ['--omit=optional'] : [])]);
      npm(dir, ['install', '-D', `typescript@${ourVersion('typescript')}`, `@types/node@${ourVersion('@types/node')}`, ...(variant === 'omit-optional' ? ['--omit=optional'] : [])]);
    });

    test("the README's code example compiles (strict, NodeNext) and runs as written", async () => {
      execFileSync(path.join(dir, 'node_modules/.bin/tsc'), ['-p', '.'], { cwd: dir, encoding: 'utf8' });
      const out = await runUntil(dir, process.execPath, ['out/example.js'], [/online alice phone/, /gateway has /]);
      if (variant === 'omit-optional') assert.match(out, /net-keepalive could not be loaded/, 'the portable keepalive fallback, with its warning');
      else assert.doesNotMatch(out, /net-keepalive could not be loaded/);
    });

    test('the installed bin serves, and its client connects', async () => {
      const bin = path.join(dir, 'node_modules/.bin/longlink');
      assert.ok(fs.existsSync(bin));
      const serve = spawn(bin, ['serve', '--tcp-port', '0', '--ws-port', '0', '--admin-port', '0'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
      try {
        const tcp = await new Promise<string>((resolve, reject) => {
          let buf = '';
          const t = setTimeout(() => reject(new Error(`serve did not listen: ${buf}`)), 20_000);
          serve.stdout.on('data', (d) => {
            buf += d;
            const m = /"event":"listening".*?"tcp":"(tcp:\/\/[^"]+)"/.exec(buf);
            if (m) (clearTimeout(t), resolve(m[1]));
          });
        });
        await runUntil(dir, bin, ['client', '--url', tcp, '--user', 'newcomer', '--json'], [/"event":"open"/]);
      } finally {
        serve.kill('SIGKILL');
      }
    });

    if (variant === 'full') {
      test("the README's quick start: the gateway, a client, and a push to it with curl, as written (default ports)", async () => {
        const bin = path.join(dir, 'node_modules/.bin/longlink');
        const clientLine = readmeBlock('In another terminal', 'sh').split('\n')[0].replace(/\s+#.*$/, '');
        const curlLine = readmeBlock('A backend in any language pushes', 'sh').trim();
        assert.match(clientLine, /^npx longlink client --user alice/);
        assert.match(curlLine, /^curl .*\/v1\/push$/);
        // `npm start` is `longlink serve` with its defaults.
        const serve = spawn(bin, ['serve'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
        let client: ReturnType<typeof spawn> | null = null;
        try {
          await new Promise<void>((resolve, reject) => {
            let buf = '';
            const t = setTimeout(() => reject(new Error(`serve did not listen: ${buf}`)), 20_000);
            const on = (d: Buffer) => {
              buf += d;
              if (/"event":"listening"/.test(buf) || /listening/.test(buf)) (clearTimeout(t), resolve());
            };
            serve.stdout.on('data', on);
            serve.stderr.on('data', on);
          });
          // A process group of its own: npx runs the client as a child, which killing bash alone would orphan.
          const c = (client = spawn('bash', ['-c', clientLine], { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'], detached: true }));
          let out = '';
          c.stdout!.on('data', (d) => (out += d));
          c.stderr!.on('data', (d) => (out += d));
          for (let i = 0; i < 200 && !/"event":"open"/.test(out); i++) await new Promise((r) => setTimeout(r, 100));
          assert.match(out, /"event":"open"/, out);
          const answer = execFileSync('bash', ['-c', curlLine], { cwd: dir, encoding: 'utf8' });
          assert.equal((JSON.parse(answer) as { status: string }).status, 'ok', answer);
          for (let i = 0; i < 100 && !/hi from the backend/.test(out); i++) await new Promise((r) => setTimeout(r, 100));
          assert.match(out, /hi from the backend/, 'alice got the push');
        } finally {
          if (client?.pid) {
            try {
              process.kill(-client.pid, 'SIGKILL');
            } catch {
              /* already gone */
            }
          }
          serve.kill('SIGKILL');
        }
      });

      test('longlink/redis resolves (with ioredis, an optional peer, installed by the user)', () => {
        npm(dir, ['install', `ioredis@${ourVersion('ioredis')}`]);
        const out = execFileSync(process.execPath, ['--input-type=module', '-e', "import { RedisStore } from 'longlink/redis'; console.log(typeof RedisStore)"], { cwd: dir, encoding: 'utf8' });
        assert.equal(out.trim(), 'function');
      });
    } else {
      test('without ioredis, longlink imports and a RedisStore says which package it needs', () => {
        const out = execFileSync(process.execPath, ['--input-type=module', '-e', "import { Gateway } from 'longlink'; import { RedisStore } from 'longlink/redis'; try { new RedisStore({ url: 'redis://127.0.0.1:1' }) } catch (e) { console.log(typeof Gateway, e.code, e.message) }"], {
          cwd: dir,
          encoding: 'utf8',
          // Bounded: were ioredis found after all (from a node_modules above the project), the store would retry forever.
          timeout: 30_000,
        });
        assert.match(out, /^function LL_ERR_MISSING_DEPENDENCY RedisStore needs the ioredis package \(npm install ioredis\)/);
      });
    }
  });
}

describe("a new user's web project (esbuild)", () => {
  test("import { LonglinkBrowserClient } from 'longlink/browser' type-checks and bundles without Node built-ins", async () => {
    const main = readmeBlock('With a bundler', 'ts');
    const dir = project('web', {}, {
      'tsconfig.json': JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'ESNext', moduleResolution: 'Bundler', lib: ['ES2022', 'DOM'], strict: true, noEmit: true, skipLibCheck: true, types: [] }, include: ['*.ts'] }, null, 2),
      'main.ts': `declare function show(text: string): void;\n${main}`,
    });
    npm(dir, ['install', tarball]);
    execFileSync(path.join(ROOT, 'node_modules/.bin/tsc'), ['-p', '.'], { cwd: dir, encoding: 'utf8' });
    const { build } = await import('esbuild');
    const r = await build({ entryPoints: [path.join(dir, 'main.ts')], bundle: true, format: 'esm', platform: 'browser', write: false, absWorkingDir: dir, logLevel: 'silent' });
    const js = r.outputFiles[0].text;
    assert.ok(js.length > 1000);
    assert.doesNotMatch(js, /from\s*["']node:|require\(["'](net|tls|node:net)["']\)/, 'no Node built-ins in the browser bundle');
  });

  // A browser-only project checks the libraries' declarations too (skipLibCheck off) and has no
  // Node types: the declarations of `longlink/browser` must need none (they imported node:tls and
  // node:net, so the README's example did not compile there).
  test("the README's example type-checks in a browser-only project: skipLibCheck off, no @types/node", () => {
    const dir = project('web-strict', {}, {
      'tsconfig.json': JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'ESNext', moduleResolution: 'Bundler', lib: ['ES2022', 'DOM'], strict: true, noEmit: true, skipLibCheck: false, types: [] }, include: ['*.ts'] }, null, 2),
      'main.ts': `declare function show(text: string): void;\n${readmeBlock('With a bundler', 'ts')}`,
    });
    npm(dir, ['install', tarball]);
    assert.ok(!fs.existsSync(path.join(dir, 'node_modules/@types/node')), 'the package pulls in no @types/node');
    try {
      execFileSync(path.join(ROOT, 'node_modules/.bin/tsc'), ['-p', '.'], { cwd: dir, encoding: 'utf8' });
    } catch (e) {
      assert.fail(`tsc: ${(e as { stdout?: string }).stdout ?? String(e)}`);
    }
  });
});
