// Codemarks as the server sends them (`marginalia/codemarks`), mapped to a neutral model of
// comment threads. Pure: no `vscode` here, so it is unit-tested without VS Code. Where a
// codemark is comes from the server alone; this only reshapes its answer.

export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

export interface ReplyJson {
  id: string;
  author: string;
  body: string;
  created: string;
}

export interface CodemarkJson {
  id: string;
  kind: string;
  title: string | null;
  body: string;
  status: string;
  anchorStatus?: string;
  range?: Range;
  author: string;
  created: string;
  updated?: string;
  pending?: boolean;
  shared?: string | null;
  replies: ReplyJson[];
}

export interface CommentModel {
  id: string;
  author: string;
  /** Markdown. */
  body: string;
  /** Milliseconds since the epoch, when the server's time parses. */
  timestamp?: number;
  /** `codemark` for the first comment (it can be edited), `reply` for the others. */
  contextValue: 'codemark' | 'reply';
}

export interface ThreadModel {
  id: string;
  /** 0-based, inclusive: the whole lines the codemark covers now. */
  startLine: number;
  endLine: number;
  /** The code is gone: the thread sits where it used to be. */
  deleted: boolean;
  resolved: boolean;
  /** "question · open", with what happened to the code. */
  label: string;
  /** What the `when` clauses of the thread menus test (`commentThread == open`). */
  contextValue: 'open' | 'resolved';
  comments: CommentModel[];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: unknown, field: string, where: string): string {
  if (typeof v !== 'string') {
    throw new Error(`${where}: \`${field}\` is not a string`);
  }
  return v;
}

function position(v: unknown, where: string): Position {
  if (!isObject(v) || typeof v.line !== 'number' || typeof v.character !== 'number') {
    throw new Error(`${where}: not a position {line, character}`);
  }
  return { line: v.line, character: v.character };
}

export function parseRange(v: unknown, where: string): Range {
  if (!isObject(v)) {
    throw new Error(`${where}: not a range {start, end}`);
  }
  return { start: position(v.start, `${where}.start`), end: position(v.end, `${where}.end`) };
}

/** Checks one codemark of the server's answer, naming the field that is wrong. */
export function parseCodemark(v: unknown, where = 'codemark'): CodemarkJson {
  if (!isObject(v)) {
    throw new Error(`${where} is not an object`);
  }
  const replies = v.replies === undefined ? [] : v.replies;
  if (!Array.isArray(replies)) {
    throw new Error(`${where}: \`replies\` is not a list`);
  }
  return {
    id: str(v.id, 'id', where),
    kind: str(v.kind, 'kind', where),
    title: typeof v.title === 'string' ? v.title : null,
    body: typeof v.body === 'string' ? v.body : '',
    status: str(v.status, 'status', where),
    anchorStatus: typeof v.anchorStatus === 'string' ? v.anchorStatus : undefined,
    range: v.range === undefined || v.range === null ? undefined : parseRange(v.range, `${where}.range`),
    author: typeof v.author === 'string' ? v.author : 'unknown',
    created: typeof v.created === 'string' ? v.created : '',
    updated: typeof v.updated === 'string' ? v.updated : undefined,
    pending: v.pending === true,
    shared: typeof v.shared === 'string' ? v.shared : null,
    replies: replies.map((r, i) => {
      const w = `${where}.replies[${i}]`;
      if (!isObject(r)) {
        throw new Error(`${w} is not an object`);
      }
      return {
        id: str(r.id, 'id', w),
        author: typeof r.author === 'string' ? r.author : 'unknown',
        body: typeof r.body === 'string' ? r.body : '',
        created: typeof r.created === 'string' ? r.created : '',
      };
    }),
  };
}

/** The answer of `marginalia/codemarks`: `{codemarks: [...]}`. */
export function parseCodemarks(result: unknown): CodemarkJson[] {
  if (!isObject(result) || !Array.isArray(result.codemarks)) {
    throw new Error('marginalia/codemarks answered without a `codemarks` list');
  }
  return result.codemarks.map((c, i) => parseCodemark(c, `codemarks[${i}]`));
}

/** The lines a range covers: a range ending at column 0 of a later line stops before it. */
export function coveredLines(r: Range): { startLine: number; endLine: number } {
  const endLine = r.end.character === 0 && r.end.line > r.start.line ? r.end.line - 1 : r.end.line;
  return { startLine: r.start.line, endLine: Math.max(r.start.line, endLine) };
}

function time(s: string): number | undefined {
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : t;
}

/** "question · open · code changed since" */
export function threadLabel(c: CodemarkJson): string {
  const parts = [c.kind, c.status];
  if (c.anchorStatus === 'modified') {
    parts.push('code changed since');
  } else if (c.anchorStatus === 'deleted') {
    parts.push('code deleted');
  }
  if (c.pending) {
    parts.push('on lines not committed yet');
  }
  return parts.join(' · ');
}

/** A codemark as a comment thread; `undefined` when the server gave it no place here. */
export function toThread(c: CodemarkJson): ThreadModel | undefined {
  if (!c.range) {
    return undefined;
  }
  const { startLine, endLine } = coveredLines(c.range);
  const deleted = c.anchorStatus === 'deleted';
  const title = c.title && c.title.trim() !== '' ? `**${c.title.trim()}**\n\n` : '';
  const resolved = c.status === 'resolved';
  return {
    id: c.id,
    startLine,
    endLine: deleted ? startLine : endLine,
    deleted,
    resolved,
    label: threadLabel(c),
    contextValue: resolved ? 'resolved' : 'open',
    comments: [
      { id: c.id, author: c.author, body: title + c.body, timestamp: time(c.created), contextValue: 'codemark' },
      ...c.replies.map(
        (r): CommentModel => ({
          id: r.id,
          author: r.author,
          body: r.body,
          timestamp: time(r.created),
          contextValue: 'reply',
        }),
      ),
    ],
  };
}

export function toThreads(codemarks: CodemarkJson[]): ThreadModel[] {
  return codemarks.map(toThread).filter((t): t is ThreadModel => t !== undefined);
}

export interface ThreadPlan {
  create: ThreadModel[];
  /** Threads whose content or place changed. */
  update: ThreadModel[];
  /** Ids of threads to dispose. */
  remove: string[];
}

/** A thread's content and place, to tell whether it changed. */
export function fingerprint(t: ThreadModel): string {
  return JSON.stringify(t);
}

/**
 * What to do to a document's threads: `shown` maps the ids of threads on screen to their
 * fingerprints. Unchanged threads are left alone, so a thread the user expanded stays expanded.
 */
export function planThreads(shown: ReadonlyMap<string, string>, next: ThreadModel[]): ThreadPlan {
  const plan: ThreadPlan = { create: [], update: [], remove: [] };
  const seen = new Set<string>();
  for (const t of next) {
    if (seen.has(t.id)) {
      continue;
    }
    seen.add(t.id);
    const before = shown.get(t.id);
    if (before === undefined) {
      plan.create.push(t);
    } else if (before !== fingerprint(t)) {
      plan.update.push(t);
    }
  }
  for (const id of shown.keys()) {
    if (!seen.has(id)) {
      plan.remove.push(id);
    }
  }
  return plan;
}

/**
 * Drops answers that arrive after a newer one for the same document (requests are answered
 * concurrently, so their answers can cross).
 */
export class Sequencer {
  private asked = new Map<string, number>();
  private applied = new Map<string, number>();

  next(key: string): number {
    const n = (this.asked.get(key) ?? 0) + 1;
    this.asked.set(key, n);
    return n;
  }

  /** True when answer `n` is the newest so far for `key` (and records it). */
  accept(key: string, n: number): boolean {
    if (n < (this.applied.get(key) ?? 0)) {
      return false;
    }
    this.applied.set(key, n);
    return true;
  }

  forget(key: string): void {
    this.asked.delete(key);
    this.applied.delete(key);
  }
}
