import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

// The types a user's code has to name to use what the docs show: the result of `gw.push()` (README),
// the adaptive option, what `client.learner.export()` gives and `adaptive.state` takes, the
// `interval` event's fields (docs/ADAPTIVE.md), a sink of one's own that takes lifecycle events
// (`UpstreamSink.sendEvent`, docs/SERVER-API.md), the phi detector's and the stall guard's options.
// They were used by exported signatures but not exported: an annotated variable or a class that
// implements UpstreamSink (whose method parameters are not typed from the interface) did not compile.

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

const USER_CODE = `
import { Gateway, LonglinkClient } from 'longlink';
import type { AdaptiveOptions, DeviceOutcome, DialOptions, GatewayOptions, LearnerChange, LearnerPhase, LearnerSnapshot, PhiOptions, PushResult, StallGuardOptions, UpstreamEvent, UpstreamEventType, UpstreamMessage, UpstreamSink } from 'longlink';

export async function pushAndReport(gw: Gateway): Promise<DeviceOutcome[]> {
  const r: PushResult = await gw.push('alice', 'hi');
  return r.devices.map((d) => d.status);
}

export function adaptiveClient(saved: LearnerSnapshot | undefined, save: (s: LearnerSnapshot) => void): LonglinkClient {
  const adaptive: AdaptiveOptions = { network: 'wifi:home', ...(saved ? { state: saved } : {}) };
  const client = new LonglinkClient({ url: 'tcp://127.0.0.1:7420', userId: 'u', deviceId: 'd', adaptive });
  client.on('interval', (e: { phase: LearnerPhase; change: LearnerChange }) => {
    if (e.change === 'settled' || e.phase === 'settled') save(client.learner!.export());
  });
  return client;
}

export class MySink implements UpstreamSink {
  readonly name = 'mine';
  async send(_msg: UpstreamMessage): Promise<void> {}
  async sendEvent(_e: UpstreamEvent): Promise<void> {}
}
const events: UpstreamEventType[] = ['online', 'offline'];
const phi: Partial<PhiOptions> = {};
const stall: Partial<StallGuardOptions> = { thresholdMs: 500 };
export const options: GatewayOptions = { upstream: { sink: new MySink(), events }, detector: { kind: 'phi', ...phi }, stallGuard: stall };
export type Dial = DialOptions;

// The tls option stays node:tls's in Node (declared apart so the browser entry's types need no Node types).
import type { ConnectionOptions } from 'node:tls';
import type { ClientOptions } from 'longlink';
export const withCa: ClientOptions = { url: 'tls://gw:7420', userId: 'u', deviceId: 'd', tls: { ca: 'pem', servername: 'gw' } };
export const fromTls = (tls: ConnectionOptions): ClientOptions => ({ url: 'tls://gw:7420', userId: 'u', deviceId: 'd', tls });
export const readBack = (c: LonglinkClient): ConnectionOptions | undefined => c.options.tls;
export const dialTls = (d: DialOptions): string | undefined => d.tls?.servername;
// @ts-expect-error node:tls's servername is a string
export const badTls: ClientOptions = { url: 'tls://gw:7420', userId: 'u', deviceId: 'd', tls: { servername: 5 } };
`;

test('the types the docs examples need are exported from longlink', () => {
  // Inside the repository, so `longlink` resolves to this package (its exports map, dist/src/index.d.ts).
  const dir = fs.mkdtempSync(path.join(ROOT, 'dist', 'public-types-'));
  try {
    const file = path.join(dir, 'user.ts');
    fs.writeFileSync(file, USER_CODE);
    const program = ts.createProgram([file], {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      types: ['node'],
      typeRoots: [path.join(ROOT, 'node_modules/@types')],
    });
    const errors = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    assert.deepEqual(errors, []);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
