// Loaded before every test file (npm test: node --import). Each file runs in a child process that
// reports to the runner through a pipe, and --test-force-exit exits it as soon as its tests are
// done: with asynchronous pipe writes, the last verdicts could be lost and the suite report fewer
// tests than ran, still exiting 0 (nodejs/node#64833). Blocking writes lose none.
for (const stream of [process.stdout, process.stderr]) stream._handle?.setBlocking?.(true);
