#!/usr/bin/env node
import { Command } from 'commander';
import { serveCommand } from './serve.js';
import { clientCommand } from './client.js';

const program = new Command('longlink')
  .description('Long-connection heartbeat gateway and client')
  .version('0.1.0');
program.addCommand(serveCommand());
program.addCommand(clientCommand());
await program.parseAsync(process.argv);
