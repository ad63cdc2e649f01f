#!/usr/bin/env node
import { Command } from 'commander';
import { serveCommand } from './serve.js';
import { clientCommand } from './client.js';
import { labCommand } from './lab.js';
import { demoCommand } from './demo.js';
import { tuneCommand } from './tune.js';
import { exitOnUsageError } from './parse.js';

// `longlink client --json | head -1`: the reader went away. Node ignores SIGPIPE, so the next write
// failed with an uncaught EPIPE (a stack trace, exit 1); end quietly as a Unix tool does.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

const program = new Command('longlink')
  .description('Long-connection heartbeat gateway and client')
  .version('0.1.0')
  .exitOverride(exitOnUsageError);
program.addCommand(serveCommand());
program.addCommand(clientCommand());
program.addCommand(labCommand());
program.addCommand(demoCommand());
program.addCommand(tuneCommand());
await program.parseAsync(process.argv);
