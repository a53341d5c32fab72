// The VS Code extension: starts `marginalia lsp`, shows its codemarks in VS Code's comments UI,
// and offers the palette and context-menu commands. Glue only: anchoring, placing and storing
// are the server's; the mapping of its answers lives in model.ts and commands.ts.

import * as fs from 'node:fs';
import * as vscode from 'vscode';
import {
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
} from 'vscode-languageclient/node';
import {
  KINDS,
  Kind,
  REQUESTS,
  REVIEW_SCHEME,
  SERVER,
  createArgs,
  describePr,
  diffTitle,
  explainFailure,
  parsePrThreads,
  parseReviewList,
  parseReviewOpen,
  prCommentArgs,
  reviewRequestArgs,
} from './commands';
import { Sequencer, parseCodemarks, toThreads } from './model';
import { initializationOptions, readSettings, resolveBinary, serverEnv } from './settings';
import { ThreadView } from './threads';

let client: LanguageClient | undefined;
let output: vscode.OutputChannel;
let codemarks: ThreadView;
let prThreads: ThreadView;
const sequencer = new Sequencer();
const due = new Map<string, ReturnType<typeof setTimeout>>();

function settings() {
  const c = vscode.workspace.getConfiguration('marginalia');
  return readSettings((k) => c.get(k));
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/** A running client, or a message saying why there is none. */
function running(): LanguageClient | undefined {
  if (client?.state === State.Running) {
    return client;
  }
  void vscode.window.showWarningMessage('marginalia: the language server is not running (see the Marginalia output).');
  return undefined;
}

/** Runs a server command; undefined when it failed (the user was told). */
async function execute(command: string, arg: unknown): Promise<unknown> {
  const c = running();
  if (!c) {
    return undefined;
  }
  try {
    const result: unknown = await c.sendRequest(ExecuteCommandRequest.type, { command, arguments: [arg] });
    return result ?? null;
  } catch (err) {
    report(command, err, true);
    return undefined;
  }
}

function report(name: string, err: unknown, isCommand: boolean): void {
  const f = explainFailure(name, err, isCommand);
  output.appendLine(`${name} failed: ${f.message}`);
  if (f.unsupported) {
    void vscode.window.showWarningMessage(f.message);
  } else if (!f.alreadyShown) {
    void vscode.window.showErrorMessage(f.message);
  }
}

function protocolUri(uri: vscode.Uri): string {
  return client ? client.code2ProtocolConverter.asUri(uri) : uri.toString();
}

/** Asks the server for a document's codemarks and shows them as threads. */
async function refresh(uri: vscode.Uri): Promise<void> {
  const c = client;
  if (!c || c.state !== State.Running || uri.scheme !== 'file') {
    return;
  }
  const key = uri.toString();
  const n = sequencer.next(key);
  try {
    const result: unknown = await c.sendRequest(REQUESTS.codemarks, { textDocument: { uri: protocolUri(uri) } });
    const open = vscode.workspace.textDocuments.some((d) => d.uri.toString() === key);
    if (sequencer.accept(key, n) && open) {
      codemarks.show(uri, toThreads(parseCodemarks(result)));
    }
  } catch (err) {
    output.appendLine(`${REQUESTS.codemarks} for ${key}: ${explainFailure(REQUESTS.codemarks, err, false).message}`);
  }
}

/** A burst of notifications (typing) is one request. */
function refreshSoon(uri: vscode.Uri): void {
  const key = uri.toString();
  if (due.has(key)) {
    return;
  }
  due.set(
    key,
    setTimeout(() => {
      due.delete(key);
      void refresh(uri);
    }, 30),
  );
}

function refreshOpen(): void {
  for (const doc of vscode.workspace.textDocuments) {
    if (doc.uri.scheme === 'file') {
      refreshSoon(doc.uri);
    }
  }
}

async function startClient(context: vscode.ExtensionContext): Promise<void> {
  const s = settings();
  const bin = resolveBinary(s.path, process.env, process.platform, isFile);
  if (!bin.ok) {
    output.appendLine(bin.message);
    const open = 'Open Settings';
    void vscode.window.showErrorMessage(`marginalia: ${bin.message}`, open).then((choice) => {
      if (choice === open) {
        void vscode.commands.executeCommand('workbench.action.openSettings', 'marginalia.path');
      }
    });
    return;
  }
  output.appendLine(`starting ${bin.path} lsp`);
  const serverOptions: ServerOptions = {
    command: bin.path,
    args: ['lsp'],
    options: { env: serverEnv(s, process.env) },
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: 'file' }],
    initializationOptions: initializationOptions(s),
    synchronize: { configurationSection: 'marginalia' },
    outputChannel: output,
    middleware: {
      // A code lens ("question: Why? · 2 comments · open") opens the thread in place instead of
      // the server's message with the same text.
      executeCommand: async (command, args, next) => {
        const id = command === SERVER.show ? (args[0] as { id?: unknown } | undefined)?.id : undefined;
        const shown = typeof id === 'string' ? codemarks.find(id) : undefined;
        if (shown) {
          shown.thread.collapsibleState = vscode.CommentThreadCollapsibleState.Expanded;
          return null;
        }
        return next(command, args);
      },
    },
  };
  const c = new LanguageClient('marginalia', 'Marginalia', serverOptions, clientOptions);
  client = c;
  context.subscriptions.push(
    c.onNotification(REQUESTS.didChangeCodemarks, (p: { uri?: unknown }) => {
      if (typeof p?.uri === 'string') {
        refreshSoon(c.protocol2CodeConverter.asUri(p.uri));
      }
    }),
  );
  try {
    await c.start();
    refreshOpen();
  } catch (err) {
    output.appendLine(`the language server did not start: ${String(err)}`);
    void vscode.window.showErrorMessage(`marginalia: the language server did not start: ${String(err)}`);
  }
}

async function stopClient(): Promise<void> {
  const c = client;
  client = undefined;
  codemarks.dispose();
  prThreads.dispose();
  if (c) {
    await c.stop().catch(() => undefined);
  }
}

/** Opens the thread of a codemark the server just returned (it is shown after the refresh). */
function expand(made: unknown): void {
  const id = (made as { id?: unknown } | null)?.id;
  const shown = typeof id === 'string' ? codemarks.find(id) : undefined;
  if (shown) {
    shown.thread.collapsibleState = vscode.CommentThreadCollapsibleState.Expanded;
  }
}

async function pickKind(): Promise<Kind | undefined> {
  const picked = await vscode.window.showQuickPick(
    KINDS.map((k) => ({ label: k })),
    { placeHolder: 'What kind of codemark?' },
  );
  return picked?.label as Kind | undefined;
}

async function addCodemark(): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor || editor.document.uri.scheme !== 'file') {
    void vscode.window.showWarningMessage('marginalia: open a file of a git repository and select lines first.');
    return;
  }
  const kind = await pickKind();
  if (!kind) {
    return;
  }
  const body = await vscode.window.showInputBox({
    prompt: `The ${kind}`,
    placeHolder: kind === 'bookmark' ? 'optional' : 'Markdown',
  });
  if (body === undefined || (body.trim() === '' && kind !== 'bookmark')) {
    return;
  }
  const c = running();
  if (!c) {
    return;
  }
  const sel = c.code2ProtocolConverter.asRange(editor.selection);
  const made = await execute(SERVER.create, createArgs(protocolUri(editor.document.uri), sel, kind, body));
  if (made) {
    await refresh(editor.document.uri);
    expand(made);
  }
}

/** A thread started from the gutter's "+": the first comment becomes the codemark. */
async function createFromThread(reply: vscode.CommentReply): Promise<void> {
  const thread = reply.thread;
  const c = running();
  if (!c || !thread.range) {
    return;
  }
  const range = c.code2ProtocolConverter.asRange(
    new vscode.Range(thread.range.start.line, 0, thread.range.end.line + 1, 0),
  );
  const made = await execute(SERVER.create, createArgs(protocolUri(thread.uri), range, 'comment', reply.text));
  if (made) {
    thread.dispose();
    await refresh(thread.uri);
    expand(made);
  }
}

async function onThread(
  thread: vscode.CommentThread,
  run: (id: string) => Promise<unknown>,
): Promise<void> {
  const id = codemarks.idOf(thread);
  if (!id) {
    return;
  }
  if ((await run(id)) !== undefined) {
    await refresh(thread.uri);
  }
}

async function requestReview(): Promise<void> {
  const title = await vscode.window.showInputBox({ prompt: 'Title of the review request' });
  if (!title || title.trim() === '') {
    return;
  }
  const reviewers = await vscode.window.showInputBox({
    prompt: 'Reviewers (names or emails, separated by commas; empty for anyone on the team)',
  });
  if (reviewers === undefined) {
    return;
  }
  const untracked = await vscode.window.showQuickPick(['No', 'Yes'], {
    placeHolder: 'Include untracked files?',
  });
  if (untracked === undefined) {
    return;
  }
  const result = await execute(SERVER.reviewRequest, reviewRequestArgs(title, reviewers, untracked === 'Yes'));
  if (result !== undefined) {
    void vscode.window.showInformationMessage(`marginalia: review requested: ${title.trim()}`);
  }
}

async function openReview(): Promise<void> {
  const list = await execute(SERVER.reviewList, {});
  if (list === undefined) {
    return;
  }
  let items;
  try {
    items = parseReviewList(list);
  } catch (err) {
    report(SERVER.reviewList, err, false);
    return;
  }
  if (items.length === 0) {
    void vscode.window.showInformationMessage('marginalia: no reviews to open.');
    return;
  }
  const picked = await vscode.window.showQuickPick(items, { placeHolder: 'Open which review?' });
  if (!picked) {
    return;
  }
  const opened = await execute(SERVER.reviewOpen, { id: picked.id });
  if (opened === undefined) {
    return;
  }
  let review;
  try {
    review = parseReviewOpen(opened);
  } catch (err) {
    report(SERVER.reviewOpen, err, false);
    return;
  }
  const files =
    review.files.length === 1
      ? review.files
      : ((
          await vscode.window.showQuickPick(
            review.files.map((f) => ({ label: f.path, file: f, picked: true })),
            { canPickMany: true, placeHolder: 'Which files?' },
          )
        )?.map((p) => p.file) ?? []);
  for (const f of files) {
    const title = diffTitle(picked.label, f);
    if (f.base !== undefined && f.proposed !== undefined) {
      await vscode.commands.executeCommand('vscode.diff', vscode.Uri.parse(f.base), vscode.Uri.parse(f.proposed), title);
    } else {
      await vscode.window.showTextDocument(vscode.Uri.parse((f.proposed ?? f.base) as string), { preview: false });
    }
  }
}

async function showPrComments(): Promise<void> {
  const current = await execute(SERVER.prCurrent, {});
  if (current === undefined) {
    return;
  }
  const pr = describePr(current);
  if (pr === undefined) {
    void vscode.window.showInformationMessage('marginalia: this branch has no pull request.');
    return;
  }
  const docs = vscode.window.visibleTextEditors.map((e) => e.document).filter((d) => d.uri.scheme === 'file');
  let count = 0;
  for (const doc of docs) {
    const result = await execute(SERVER.prThreads, { uri: protocolUri(doc.uri) });
    if (result === undefined) {
      return;
    }
    try {
      const threads = parsePrThreads(result);
      count += threads.length;
      prThreads.show(doc.uri, threads);
    } catch (err) {
      report(SERVER.prThreads, err, false);
      return;
    }
  }
  void vscode.window.showInformationMessage(`marginalia: ${pr}: ${count} comment thread(s) in the open files.`);
}

async function commentOnPr(): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  const c = running();
  if (!editor || !c) {
    return;
  }
  const body = await vscode.window.showInputBox({ prompt: 'Comment on the pull request (Markdown)' });
  if (!body || body.trim() === '') {
    return;
  }
  const range = c.code2ProtocolConverter.asRange(editor.selection);
  const result = await execute(SERVER.prComment, prCommentArgs(protocolUri(editor.document.uri), range, body));
  if (result !== undefined) {
    void vscode.window.showInformationMessage('marginalia: commented on the pull request.');
  }
}

/** The review documents (base and proposed sides) come from the server. */
class ReviewDocuments implements vscode.TextDocumentContentProvider {
  async provideTextDocumentContent(uri: vscode.Uri): Promise<string> {
    const c = running();
    if (!c) {
      return '';
    }
    try {
      const result: unknown = await c.sendRequest(REQUESTS.reviewDocument, { uri: uri.toString() });
      const text = (result as { text?: unknown } | null)?.text;
      return typeof text === 'string' ? text : '';
    } catch (err) {
      report(REQUESTS.reviewDocument, err, false);
      return '';
    }
  }
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel('Marginalia');
  const controller = vscode.comments.createCommentController('marginalia', 'Marginalia codemarks');
  controller.options = { prompt: 'Start a discussion on these lines', placeHolder: 'Markdown' };
  controller.commentingRangeProvider = {
    provideCommentingRanges: (doc) => (doc.uri.scheme === 'file' ? [new vscode.Range(0, 0, Math.max(doc.lineCount - 1, 0), 0)] : []),
  };
  const prController = vscode.comments.createCommentController('marginalia-pr', 'Pull request');
  codemarks = new ThreadView(controller);
  prThreads = new ThreadView(prController);

  const on = (name: string, f: (...args: never[]) => unknown) =>
    context.subscriptions.push(vscode.commands.registerCommand(name, f));
  on('marginalia.addCodemark', addCodemark);
  on('marginalia.requestReview', requestReview);
  on('marginalia.openReview', openReview);
  on('marginalia.showPrComments', showPrComments);
  on('marginalia.commentOnPr', commentOnPr);
  on('marginalia.restartServer', async () => {
    await stopClient();
    await startClient(context);
  });
  on('marginalia.thread.create', createFromThread);
  on('marginalia.thread.reply', (reply: vscode.CommentReply) =>
    onThread(reply.thread, (id) => execute(SERVER.reply, { id, body: reply.text })),
  );
  on('marginalia.thread.resolve', (thread: vscode.CommentThread) => onThread(thread, (id) => execute(SERVER.resolve, { id })));
  on('marginalia.thread.reopen', (thread: vscode.CommentThread) => onThread(thread, (id) => execute(SERVER.reopen, { id })));
  on('marginalia.thread.delete', async (thread: vscode.CommentThread) => {
    const sure = await vscode.window.showWarningMessage('Delete this codemark and its replies?', { modal: true }, 'Delete');
    if (sure === 'Delete') {
      await onThread(thread, (id) => execute(SERVER.delete, { id }));
    }
  });
  on('marginalia.thread.edit', async (thread: vscode.CommentThread) => {
    const id = codemarks.idOf(thread);
    const shown = id ? codemarks.find(id) : undefined;
    if (!id || !shown) {
      return;
    }
    const body = await vscode.window.showInputBox({ prompt: 'Edit the codemark', value: shown.model.comments[0]?.body ?? '' });
    if (body !== undefined && body.trim() !== '') {
      await onThread(thread, (i) => execute(SERVER.edit, { id: i, body }));
    }
  });
  on('marginalia.prThread.reply', async (reply: vscode.CommentReply) => {
    const id = prThreads.idOf(reply.thread);
    if (id && (await execute(SERVER.prReply, { threadId: id, body: reply.text })) !== undefined) {
      await showPrComments();
    }
  });

  context.subscriptions.push(
    controller,
    prController,
    codemarks,
    prThreads,
    output,
    vscode.workspace.registerTextDocumentContentProvider(REVIEW_SCHEME, new ReviewDocuments()),
    vscode.workspace.onDidOpenTextDocument((d) => refreshSoon(d.uri)),
    vscode.workspace.onDidCloseTextDocument((d) => {
      sequencer.forget(d.uri.toString());
      codemarks.forget(d.uri);
      prThreads.forget(d.uri);
    }),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (e.affectsConfiguration('marginalia.path') || e.affectsConfiguration('marginalia.logLevel') || e.affectsConfiguration('marginalia.dataDirectory')) {
        const restart = 'Restart';
        if ((await vscode.window.showInformationMessage('marginalia: restart the language server to use the new setting?', restart)) === restart) {
          await stopClient();
          await startClient(context);
        }
      }
    }),
  );
  await startClient(context);
}

export async function deactivate(): Promise<void> {
  for (const t of due.values()) {
    clearTimeout(t);
  }
  due.clear();
  await stopClient();
}
