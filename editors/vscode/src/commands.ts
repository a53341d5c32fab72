// The server's commands as the extension calls them: argument building, reading the answers of
// the review and pull-request commands, and what to tell the user when one fails. Pure.

import { CommentModel, Range, ThreadModel, coveredLines, parseRange } from './model';

/** The server's command names (README: "Stable names"); review and PR names per issue 8. */
export const SERVER = {
  create: 'marginalia.codemark.create',
  reply: 'marginalia.codemark.reply',
  resolve: 'marginalia.codemark.resolve',
  reopen: 'marginalia.codemark.reopen',
  edit: 'marginalia.codemark.edit',
  delete: 'marginalia.codemark.delete',
  show: 'marginalia.codemark.show',
  reviewRequest: 'marginalia.review.request',
  reviewList: 'marginalia.review.list',
  reviewOpen: 'marginalia.review.open',
  prCurrent: 'marginalia.pr.current',
  prThreads: 'marginalia.pr.threads',
  prComment: 'marginalia.pr.comment',
  prReply: 'marginalia.pr.reply',
} as const;

export const REQUESTS = {
  codemarks: 'marginalia/codemarks',
  codemark: 'marginalia/codemark',
  reviewDocument: 'marginalia/reviewDocument',
  didChangeCodemarks: 'marginalia/didChangeCodemarks',
} as const;

export const REVIEW_SCHEME = 'marginalia-review';

export const KINDS = ['comment', 'question', 'issue', 'bookmark'] as const;
export type Kind = (typeof KINDS)[number];

export interface CreateArgs {
  uri: string;
  range: Range;
  kind: Kind;
  body: string;
  title?: string;
}

/**
 * `marginalia.codemark.create`'s argument. An empty selection is its whole line; a selection
 * ending at column 0 of a later line stops before that line (the server reads it so too).
 */
export function createArgs(uri: string, selection: Range, kind: Kind, body: string, title?: string): CreateArgs {
  let range = selection;
  if (selection.start.line === selection.end.line && selection.start.character === selection.end.character) {
    range = { start: { line: selection.start.line, character: 0 }, end: { line: selection.start.line + 1, character: 0 } };
  }
  const args: CreateArgs = { uri, range, kind, body };
  if (title !== undefined && title.trim() !== '') {
    args.title = title.trim();
  }
  return args;
}

/** `marginalia.review.request`'s argument; reviewers typed as "ana, bo" or "ana bo". */
export function reviewRequestArgs(
  title: string,
  reviewers: string,
  untracked: boolean,
): { title: string; reviewers?: string[]; untracked?: boolean } {
  const names = reviewers
    .split(/[\s,]+/)
    .map((r) => r.trim())
    .filter((r) => r !== '');
  const args: { title: string; reviewers?: string[]; untracked?: boolean } = { title: title.trim() };
  if (names.length > 0) {
    args.reviewers = names;
  }
  if (untracked) {
    args.untracked = true;
  }
  return args;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function listIn(result: unknown, key: string): unknown[] {
  if (Array.isArray(result)) {
    return result;
  }
  if (isObject(result) && Array.isArray(result[key])) {
    return result[key] as unknown[];
  }
  throw new Error(`the server's answer has no \`${key}\` list`);
}

function text(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

export interface ReviewItem {
  id: string;
  label: string;
  detail: string;
}

/** `marginalia.review.list`'s answer (`{reviews: [...]}` or a list) as quick-pick items. */
export function parseReviewList(result: unknown): ReviewItem[] {
  return listIn(result, 'reviews').map((r, i) => {
    if (!isObject(r) || (typeof r.id !== 'string' && typeof r.id !== 'number')) {
      throw new Error(`reviews[${i}] has no id`);
    }
    const id = String(r.id);
    const detail = [text(r.status), text(r.author) && `by ${String(r.author)}`, text(r.created)?.slice(0, 10)]
      .filter((s) => s)
      .join(' · ');
    return { id, label: text(r.title) ?? id, detail };
  });
}

export interface ReviewFile {
  path: string;
  /** `marginalia-review:` URIs of the two sides; one is missing for an added or deleted file. */
  base?: string;
  proposed?: string;
}

/** `marginalia.review.open`'s answer: `{files: [{path, base, proposed}]}` (or `baseUri`, ...). */
export function parseReviewOpen(result: unknown): { title: string; files: ReviewFile[] } {
  const files = listIn(result, 'files').map((f, i): ReviewFile => {
    if (!isObject(f)) {
      throw new Error(`files[${i}] is not an object`);
    }
    const base = text(f.base) ?? text(f.baseUri);
    const proposed = text(f.proposed) ?? text(f.proposedUri);
    const path = text(f.path) ?? text(f.newPath) ?? text(f.oldPath);
    if (path === undefined || (base === undefined && proposed === undefined)) {
      throw new Error(`files[${i}] needs a path and a base or proposed URI`);
    }
    return { path, base, proposed };
  });
  const title = isObject(result) ? (text(result.title) ?? 'review') : 'review';
  return { title, files };
}

/** The diff editor's title for one file of a review. */
export function diffTitle(review: string, file: ReviewFile): string {
  const side = file.base === undefined ? ' (added)' : file.proposed === undefined ? ' (deleted)' : '';
  return `${file.path}${side} · ${review}`;
}

/** `marginalia.pr.current`'s answer in one line, or undefined when there is no pull request. */
export function describePr(result: unknown): string | undefined {
  if (!isObject(result)) {
    return undefined;
  }
  const number = typeof result.number === 'number' || typeof result.number === 'string' ? `#${result.number}` : '';
  const title = text(result.title) ?? '';
  const parts = [number, title].filter((s) => s !== '');
  return parts.length > 0 ? parts.join(' ') : (text(result.url) ?? undefined);
}

/** `marginalia.pr.threads`'s answer (`{threads: [...]}` or a list) as comment threads. */
export function parsePrThreads(result: unknown): ThreadModel[] {
  return listIn(result, 'threads').map((t, i) => {
    const where = `threads[${i}]`;
    if (!isObject(t) || (typeof t.id !== 'string' && typeof t.id !== 'number')) {
      throw new Error(`${where} has no id`);
    }
    const { startLine, endLine } = coveredLines(parseRange(t.range, `${where}.range`));
    const comments = (Array.isArray(t.comments) ? t.comments : []).map((c, j): CommentModel => {
      const o = isObject(c) ? c : {};
      const created = text(o.created) ?? text(o.createdAt);
      const ts = created === undefined ? NaN : Date.parse(created);
      return {
        id: text(o.id) ?? `${String(t.id)}-${j}`,
        author: text(o.author) ?? 'unknown',
        body: text(o.body) ?? '',
        timestamp: Number.isNaN(ts) ? undefined : ts,
        contextValue: 'reply',
      };
    });
    const resolved = t.resolved === true;
    const label = ['pull request', resolved ? 'resolved' : 'open', t.outdated === true ? 'outdated' : '']
      .filter((s) => s !== '')
      .join(' · ');
    return {
      id: String(t.id),
      startLine,
      endLine,
      deleted: false,
      resolved,
      label,
      contextValue: resolved ? 'resolved' : 'open',
      comments,
    };
  });
}

/** `marginalia.pr.comment`'s argument. */
export function prCommentArgs(
  uri: string,
  range: Range,
  body: string,
  side?: 'LEFT' | 'RIGHT',
): { uri: string; range: Range; body: string; side?: 'LEFT' | 'RIGHT' } {
  return side === undefined ? { uri, range, body } : { uri, range, body, side };
}

const FEATURES: Record<string, string> = {
  'marginalia.review.': 'reviews',
  'marginalia.pr.': 'pull requests',
  'marginalia/reviewDocument': 'reviews',
};

export interface Failure {
  /** The server does not know this command or request: it is older than the feature. */
  unsupported: boolean;
  /** The server already showed it (window/showMessage), so the extension need not again. */
  alreadyShown: boolean;
  message: string;
}

/**
 * What a failed command or request means to the user. The server answers an unknown command
 * with "unknown command `...`" and an unknown request with JSON-RPC's MethodNotFound; it shows
 * every other command error itself.
 */
export function explainFailure(name: string, err: unknown, isCommand: boolean): Failure {
  const code = isObject(err) && typeof err.code === 'number' ? err.code : undefined;
  const raw = isObject(err) && typeof err.message === 'string' ? err.message : err instanceof Error ? err.message : String(err);
  const unsupported = /unknown command/i.test(raw) || code === -32601;
  if (unsupported) {
    const feature = Object.entries(FEATURES).find(([prefix]) => name.startsWith(prefix))?.[1];
    const what = feature ? `${feature} (${name})` : name;
    return {
      unsupported,
      alreadyShown: false,
      message: `This marginalia server does not support ${what} yet. Update marginalia to a version that has it.`,
    };
  }
  // Answered by the server (InvalidParams, InternalError) to a command: it showed it already.
  const answered = code === -32602 || code === -32603;
  return { unsupported, alreadyShown: isCommand && answered, message: `marginalia: ${raw.replace(/^marginalia: /, '')}` };
}
