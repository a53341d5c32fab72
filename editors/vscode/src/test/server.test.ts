// The glue against the real server's answers (not mocks): run when MARGINALIA_BIN names a built
// `marginalia` (.ci/test sets it), skipped otherwise. It checks that what `marginalia lsp`
// answers today is what model.ts and commands.ts expect: the shape of `marginalia/codemarks`,
// and the answer to a command the server does not have yet.
import assert from 'node:assert/strict';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { MessageConnection, StreamMessageReader, StreamMessageWriter, createMessageConnection } from 'vscode-jsonrpc/node';
import { SERVER, createArgs, explainFailure } from '../commands';
import { parseCodemarks, toThreads } from '../model';

const bin = process.env.MARGINALIA_BIN;
const skip = bin ? false : 'MARGINALIA_BIN is not set (the path of a built marginalia binary)';

let dir = '';
let server: ChildProcess | undefined;
let rpc: MessageConnection | undefined;
const changed: string[] = [];

function git(...args: string[]): void {
  execFileSync('git', ['-c', 'init.defaultBranch=main', ...args], {
    cwd: join(dir, 'repo'),
    env: { ...process.env, GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1', GIT_AUTHOR_NAME: 'T', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 'T', GIT_COMMITTER_EMAIL: 't@example.com' },
  });
}

before(async () => {
  if (!bin) {
    return;
  }
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'marginalia-vscode-')));
  mkdirSync(join(dir, 'repo', 'src'), { recursive: true });
  git('init', '-q');
  const lines = Array.from({ length: 20 }, (_, i) => `fn line_${i + 1}() -> u32 { ${i * 37} }`);
  writeFileSync(join(dir, 'repo', 'src', 'lib.rs'), lines.join('\n') + '\n');
  git('add', '-A');
  git('commit', '-q', '-m', 'start');
  server = spawn(bin, ['lsp'], {
    cwd: join(dir, 'repo'),
    env: { ...process.env, MARGINALIA_DATA_DIR: join(dir, 'store'), MARGINALIA_LOG: 'error' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const stdout = server.stdout;
  const stdin = server.stdin;
  assert.ok(stdout && stdin);
  rpc = createMessageConnection(new StreamMessageReader(stdout), new StreamMessageWriter(stdin));
  rpc.onRequest(() => null);
  rpc.onNotification('marginalia/didChangeCodemarks', (p: { uri: string }) => changed.push(p.uri));
  rpc.listen();
  const root = pathToFileURL(join(dir, 'repo')).href;
  await rpc.sendRequest('initialize', {
    processId: process.pid,
    rootUri: root,
    workspaceFolders: [{ uri: root, name: 'repo' }],
    initializationOptions: { diagnostics: false },
    capabilities: { general: { positionEncodings: ['utf-16'] } },
  });
  await rpc.sendNotification('initialized', {});
});

after(async () => {
  if (rpc) {
    await rpc.sendRequest('shutdown');
    await rpc.sendNotification('exit');
    rpc.dispose();
  }
  server?.kill();
  if (dir !== '') {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the server's codemarks map to threads where it placed them", { skip }, async () => {
  const c = rpc as MessageConnection;
  const uri = pathToFileURL(join(dir, 'repo', 'src', 'lib.rs')).href;
  const made = await c.sendRequest('workspace/executeCommand', {
    command: SERVER.create,
    arguments: [createArgs(uri, { start: { line: 4, character: 3 }, end: { line: 6, character: 0 } }, 'question', 'Why?', 'Title')],
  });
  assert.equal((made as { kind: string }).kind, 'question');
  await c.sendRequest('workspace/executeCommand', {
    command: SERVER.reply,
    arguments: [{ id: (made as { id: string }).id, body: 'Because.' }],
  });
  const [t] = toThreads(parseCodemarks(await c.sendRequest('marginalia/codemarks', { textDocument: { uri } })));
  assert.deepEqual([t.startLine, t.endLine], [4, 5], 'lines 5-6: the selection stops before column 0 of line 7');
  assert.equal(t.label, 'question · open', 'committed lines, code unchanged');
  assert.deepEqual(
    t.comments.map((m) => [m.body, m.contextValue]),
    [
      ['**Title**\n\nWhy?', 'codemark'],
      ['Because.', 'reply'],
    ],
  );
  assert.ok(t.comments.every((m) => m.timestamp !== undefined), 'the server\'s times parse');
});

test('a command the server does not have yet is reported as not supported', { skip }, async () => {
  const c = rpc as MessageConnection;
  const future = 'marginalia.review.someday';
  await assert.rejects(
    c.sendRequest('workspace/executeCommand', { command: future, arguments: [{}] }),
    (err: unknown) => {
      const f = explainFailure(future, err, true);
      assert.equal(f.unsupported, true, JSON.stringify(err));
      assert.match(f.message, /does not support reviews \(marginalia\.review\.someday\) yet/);
      return true;
    },
  );
});

test('a command the server has, given bad arguments, is an error the server already showed', { skip }, async () => {
  const c = rpc as MessageConnection;
  await assert.rejects(
    c.sendRequest('workspace/executeCommand', { command: SERVER.reviewRequest, arguments: [{}] }),
    (err: unknown) => {
      const f = explainFailure(SERVER.reviewRequest, err, true);
      assert.equal(f.unsupported, false, JSON.stringify(err));
      assert.equal(f.alreadyShown, true, JSON.stringify(err));
      return true;
    },
  );
});
