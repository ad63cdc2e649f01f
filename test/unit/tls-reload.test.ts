import assert from 'node:assert/strict';
import { test } from 'node:test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { reloadTlsOnChange } from '../../src/cli/tls-reload.js';
import { testCertificate } from '../helpers/certs.js';

test('files renewed between start-up (the pair the gateway loaded) and the watcher starting are served: the watcher compared the next poll with the renewed files, saw no change, and kept the old certificate', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'longlink-tls-reload-'));
  const files = { cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') };
  const [a, b] = [await testCertificate(), await testCertificate()];
  fs.writeFileSync(files.cert, a.cert);
  fs.writeFileSync(files.key, a.key);
  // What serve reads at start-up and hands the listeners.
  const loaded = { cert: fs.readFileSync(files.cert), key: fs.readFileSync(files.key) };
  let serving: { cert: Buffer; key: Buffer } = loaded;
  // Renewed while the gateway was still starting (connecting to Redis, say).
  fs.writeFileSync(files.cert, b.cert);
  fs.writeFileSync(files.key, b.key);
  const w = reloadTlsOnChange(files, loaded, (t) => (serving = t), pino({ level: 'silent' }), 20);
  try {
    for (let i = 0; i < 50 && serving === loaded; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(serving.cert.toString(), b.cert, 'serving the renewed certificate');
    assert.equal(serving.key.toString(), b.key);
  } finally {
    w.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a watcher started on the files the gateway serves applies nothing until they change', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'longlink-tls-reload-'));
  const files = { cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') };
  const a = await testCertificate();
  fs.writeFileSync(files.cert, a.cert);
  fs.writeFileSync(files.key, a.key);
  const loaded = { cert: fs.readFileSync(files.cert), key: fs.readFileSync(files.key) };
  let applied = 0;
  const w = reloadTlsOnChange(files, loaded, () => applied++, pino({ level: 'silent' }), 20);
  try {
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(applied, 0);
  } finally {
    w.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
