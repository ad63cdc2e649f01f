import assert from 'node:assert/strict';
import { test } from 'node:test';
import { redactUrl } from '../../src/gateway/stores/redis-connect.js';

// URLs go into log lines (serve's listening line names the webhook) and error messages.
test('redactUrl hides a password and every query value (a webhook key given as ?key=), and keeps the rest', () => {
  assert.equal(redactUrl('redis://:secret@127.0.0.1:6379'), 'redis://:***@127.0.0.1:6379');
  assert.equal(redactUrl('https://backend.example/hook?key=s3cr3t&key=again&v=2'), 'https://backend.example/hook?key=***&v=***');
  assert.equal(redactUrl('redis://a:1,redis://user:pw@b:2'), 'redis://a:1,redis://user:***@b:2');
  assert.equal(redactUrl('not a url'), 'not a url');
});
