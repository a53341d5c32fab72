// Shows thread models (src/model.ts) in VS Code's comments UI: one comment thread per codemark
// (or pull-request thread), updated in place so an expanded thread stays expanded. The only
// code that knows vscode's comment API; what goes in the threads is decided in model.ts.

import * as vscode from 'vscode';
import { ThreadModel, fingerprint, planThreads } from './model';

export interface Shown {
  thread: vscode.CommentThread;
  model: ThreadModel;
  fingerprint: string;
}

function comments(m: ThreadModel): vscode.Comment[] {
  return m.comments.map((c) => {
    const body = new vscode.MarkdownString(c.body);
    body.supportHtml = false;
    body.isTrusted = false;
    return {
      body,
      mode: vscode.CommentMode.Preview,
      author: { name: c.author },
      contextValue: c.contextValue,
      timestamp: c.timestamp === undefined ? undefined : new Date(c.timestamp),
    };
  });
}

function range(m: ThreadModel): vscode.Range {
  return new vscode.Range(m.startLine, 0, m.endLine, m.deleted ? 0 : Number.MAX_SAFE_INTEGER);
}

function apply(thread: vscode.CommentThread, m: ThreadModel): void {
  thread.range = range(m);
  thread.label = m.label;
  thread.contextValue = m.contextValue;
  thread.comments = comments(m);
  thread.canReply = true;
  thread.state = m.resolved ? vscode.CommentThreadState.Resolved : vscode.CommentThreadState.Unresolved;
}

/** The threads of one comment controller, per document. */
export class ThreadView implements vscode.Disposable {
  private docs = new Map<string, Map<string, Shown>>();

  constructor(private readonly controller: vscode.CommentController) {}

  /** Makes a document's threads match `next`. */
  show(uri: vscode.Uri, next: ThreadModel[]): void {
    const key = uri.toString();
    const shown = this.docs.get(key) ?? new Map<string, Shown>();
    this.docs.set(key, shown);
    const plan = planThreads(new Map([...shown].map(([id, s]) => [id, s.fingerprint])), next);
    for (const id of plan.remove) {
      shown.get(id)?.thread.dispose();
      shown.delete(id);
    }
    for (const m of plan.update) {
      const s = shown.get(m.id);
      if (s) {
        apply(s.thread, m);
        shown.set(m.id, { thread: s.thread, model: m, fingerprint: fingerprint(m) });
      }
    }
    for (const m of plan.create) {
      const thread = this.controller.createCommentThread(uri, range(m), []);
      thread.collapsibleState = vscode.CommentThreadCollapsibleState.Collapsed;
      apply(thread, m);
      shown.set(m.id, { thread, model: m, fingerprint: fingerprint(m) });
    }
  }

  /** The codemark id of a thread this view shows. */
  idOf(thread: vscode.CommentThread): string | undefined {
    for (const shown of this.docs.values()) {
      for (const [id, s] of shown) {
        if (s.thread === thread) {
          return id;
        }
      }
    }
    return undefined;
  }

  find(id: string): Shown | undefined {
    for (const shown of this.docs.values()) {
      const s = shown.get(id);
      if (s) {
        return s;
      }
    }
    return undefined;
  }

  uris(): vscode.Uri[] {
    return [...this.docs.keys()].map((k) => vscode.Uri.parse(k));
  }

  forget(uri: vscode.Uri): void {
    const key = uri.toString();
    for (const s of this.docs.get(key)?.values() ?? []) {
      s.thread.dispose();
    }
    this.docs.delete(key);
  }

  dispose(): void {
    for (const key of [...this.docs.keys()]) {
      this.forget(vscode.Uri.parse(key));
    }
  }
}
