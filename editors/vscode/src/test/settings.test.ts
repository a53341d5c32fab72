// Settings to initializationOptions and the server's environment, and finding the binary.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { initializationOptions, readSettings, resolveBinary, serverEnv } from '../settings';

const config = (values: Record<string, unknown>) => (key: string) => values[key];

test('defaults: binary on PATH, no diagnostics, warn logs, the platform store', () => {
  const s = readSettings(config({}));
  assert.deepEqual(s, { path: '', diagnostics: false, logLevel: 'warn', dataDir: '' });
  assert.deepEqual(initializationOptions(s), { diagnostics: false });
});

test('settings map to initializationOptions and environment variables', () => {
  const s = readSettings(config({ path: ' /opt/m ', diagnostics: true, logLevel: 'DEBUG', dataDirectory: '/tmp/store' }));
  assert.deepEqual(initializationOptions(s), { diagnostics: true });
  const env = serverEnv(s, { PATH: '/bin', MARGINALIA_DATA_DIR: '/old' });
  assert.equal(env.MARGINALIA_LOG, 'debug');
  assert.equal(env.MARGINALIA_DATA_DIR, '/tmp/store');
  assert.equal(env.PATH, '/bin', "the editor's environment is kept");
});

test('wrong values fall back to the defaults', () => {
  const s = readSettings(config({ diagnostics: 'yes', logLevel: 'loud', path: 42 }));
  assert.deepEqual(s, { path: '', diagnostics: false, logLevel: 'warn', dataDir: '' });
  assert.equal(serverEnv(s, {}).MARGINALIA_DATA_DIR, undefined, 'no data dir set: the server picks its own');
});

test('the binary is found on PATH, in order', () => {
  const files = new Set(['/home/a/.cargo/bin/marginalia', '/usr/bin/marginalia']);
  const found = resolveBinary('', { PATH: '/usr/local/bin:/home/a/.cargo/bin:/usr/bin' }, 'linux', (p) => files.has(p));
  assert.deepEqual(found, { ok: true, path: '/home/a/.cargo/bin/marginalia' });
});

test('the setting wins: a path (with ~/) or a name to look up', () => {
  const files = new Set(['/home/a/bin/m2', '/usr/bin/marginalia-dev']);
  const isFile = (p: string) => files.has(p);
  assert.deepEqual(resolveBinary('~/bin/m2', { HOME: '/home/a', PATH: '' }, 'linux', isFile), { ok: true, path: '/home/a/bin/m2' });
  assert.deepEqual(resolveBinary('marginalia-dev', { PATH: '/usr/bin' }, 'linux', isFile), {
    ok: true,
    path: '/usr/bin/marginalia-dev',
  });
  const missing = resolveBinary('/nope/marginalia', { PATH: '/usr/bin' }, 'linux', isFile);
  assert.equal(missing.ok, false);
  assert.match(missing.ok ? '' : missing.message, /marginalia.path is \/nope\/marginalia, but there is no file there/);
});

test('on Windows PATHEXT extensions are tried', () => {
  const files = new Set(['C:\\Users\\a\\.cargo\\bin\\marginalia.exe']);
  const found = resolveBinary('', { Path: 'C:\\Windows;C:\\Users\\a\\.cargo\\bin', PATHEXT: '.COM;.EXE' }, 'win32', (p) =>
    files.has(p),
  );
  assert.deepEqual(found, { ok: true, path: 'C:\\Users\\a\\.cargo\\bin\\marginalia.exe' });
});

test('not found says how to install it', () => {
  const r = resolveBinary('', { PATH: '/usr/bin' }, 'linux', () => false);
  assert.equal(r.ok, false);
  assert.match(r.ok ? '' : r.message, /`marginalia` is not on PATH.*cargo install --path \..*marginalia\.path/);
});
