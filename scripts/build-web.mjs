// Bundles the browser code with esbuild: the SDK (ESM and a <script> global)
// and the dashboard, into dist/web, which the admin port serves.
import { build } from 'esbuild';
import { chmodSync, cpSync, existsSync, mkdirSync } from 'node:fs';

const out = 'dist/web';
mkdirSync(out, { recursive: true });
const common = {
  bundle: true,
  minify: true,
  // Maps written beside the bundles but not named in them: the package leaves maps out, and a
  // bundle naming a file it lacks makes a user's bundler or devtools warn on every build.
  sourcemap: 'external',
  target: ['es2022'],
  platform: 'browser',
  // The client core extends node:events' EventEmitter; the `events` package is its browser port.
  alias: { 'node:events': 'events' },
  logLevel: 'warning',
};
await Promise.all([
  build({ ...common, entryPoints: ['src/browser/index.ts'], format: 'esm', outfile: `${out}/longlink.js` }),
  build({ ...common, entryPoints: ['src/browser/index.ts'], format: 'iife', globalName: 'Longlink', outfile: `${out}/longlink.iife.js` }),
  build({ ...common, entryPoints: ['web/dashboard/main.ts'], format: 'esm', outfile: `${out}/dashboard.js`, loader: { '.css': 'css' } }),
]);
cpSync('web/dashboard/index.html', `${out}/index.html`);

// tsc writes the CLI entry without the execute bit npm gave the bin link's target at install:
// every build sets it again, so `npx longlink` works after any npm script.
if (existsSync('dist/src/cli/index.js')) chmodSync('dist/src/cli/index.js', 0o755);
