// Command arguments, the review and pull-request answers (mocked as the server will send them),
// and what the user is told when a command fails.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
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
} from '../commands';

const sel = (l1: number, c1: number, l2: number, c2: number) => ({
  start: { line: l1, character: c1 },
  end: { line: l2, character: c2 },
});

test('create: the selection as it is, an empty one as its whole line, a blank title left out', () => {
  assert.deepEqual(createArgs('file:///r/a.rs', sel(3, 2, 5, 0), 'question', 'Why?', '  '), {
    uri: 'file:///r/a.rs',
    range: sel(3, 2, 5, 0),
    kind: 'question',
    body: 'Why?',
  });
  assert.deepEqual(createArgs('file:///r/a.rs', sel(7, 4, 7, 4), 'comment', 'here', ' Title ').range, sel(7, 0, 8, 0));
  assert.equal(createArgs('file:///r/a.rs', sel(7, 4, 7, 4), 'comment', 'here', ' Title ').title, 'Title');
});

test('review request: reviewers split on commas and spaces, flags only when set', () => {
  assert.deepEqual(reviewRequestArgs(' Cache rework ', 'ana, bo  cy', false), {
    title: 'Cache rework',
    reviewers: ['ana', 'bo', 'cy'],
  });
  assert.deepEqual(reviewRequestArgs('T', '', true), { title: 'T', untracked: true });
});

test('review list: an object with `reviews` or a bare list, as quick-pick items', () => {
  const items = parseReviewList({
    reviews: [
      { id: 'rv1', title: 'Cache rework', status: 'open', author: 'ana', created: '2026-11-30T10:00:00Z' },
      { id: 2 },
    ],
  });
  assert.deepEqual(items, [
    { id: 'rv1', label: 'Cache rework', detail: 'open · by ana · 2026-11-30' },
    { id: '2', label: '2', detail: '' },
  ]);
  assert.deepEqual(parseReviewList([{ id: 'x', title: 'X' }]).map((i) => i.id), ['x']);
  assert.throws(() => parseReviewList({ reviews: [{ title: 'no id' }] }), /reviews\[0\] has no id/);
  assert.throws(() => parseReviewList({}), /no `reviews` list/);
});

test('review open: files with base and proposed marginalia-review: URIs', () => {
  const opened = parseReviewOpen({
    title: 'Cache rework',
    files: [
      { path: 'src/a.rs', base: 'marginalia-review:/rv1/base/src/a.rs', proposed: 'marginalia-review:/rv1/proposed/src/a.rs' },
      { path: 'src/new.rs', proposedUri: 'marginalia-review:/rv1/proposed/src/new.rs' },
    ],
  });
  assert.equal(opened.title, 'Cache rework');
  assert.deepEqual(opened.files[1], { path: 'src/new.rs', base: undefined, proposed: 'marginalia-review:/rv1/proposed/src/new.rs' });
  assert.equal(diffTitle('Cache rework', opened.files[0]), 'src/a.rs · Cache rework');
  assert.equal(diffTitle('Cache rework', opened.files[1]), 'src/new.rs (added) · Cache rework');
  assert.throws(() => parseReviewOpen({ files: [{ path: 'x' }] }), /files\[0\] needs a path and a base or proposed URI/);
});

test('pull request: one line for the current one, nothing without one', () => {
  assert.equal(describePr({ number: 42, title: 'Faster cache', url: 'https://example.com/pr/42' }), '#42 Faster cache');
  assert.equal(describePr({ url: 'https://example.com/pr/42' }), 'https://example.com/pr/42');
  assert.equal(describePr(null), undefined);
});

test("pull request threads become threads on their lines, with the provider's comments", () => {
  const [t] = parsePrThreads({
    threads: [
      {
        id: 991,
        range: sel(9, 0, 11, 0),
        resolved: false,
        outdated: true,
        comments: [{ id: 'c1', author: 'octo', body: 'nit', created: '2026-11-30T10:00:00Z' }, { body: 'ok' }],
      },
    ],
  });
  assert.equal(t.id, '991');
  assert.deepEqual([t.startLine, t.endLine], [9, 10]);
  assert.equal(t.label, 'pull request · open · outdated');
  assert.deepEqual(
    t.comments.map((c) => [c.id, c.author, c.body]),
    [
      ['c1', 'octo', 'nit'],
      ['991-1', 'unknown', 'ok'],
    ],
  );
  assert.throws(() => parsePrThreads({ threads: [{ id: 1 }] }), /threads\[0\]\.range: not a range/);
});

test('pull request comment: side only when given', () => {
  assert.deepEqual(prCommentArgs('file:///r/a.rs', sel(1, 0, 2, 0), 'hm'), { uri: 'file:///r/a.rs', range: sel(1, 0, 2, 0), body: 'hm' });
  assert.equal(prCommentArgs('file:///r/a.rs', sel(1, 0, 2, 0), 'hm', 'LEFT').side, 'LEFT');
});

test('an unknown command says the server does not support the feature yet', () => {
  // What `marginalia lsp` answers today for a command it does not have.
  const err = { code: -32602, message: 'unknown command `marginalia.review.request`: this server offers marginalia.codemark.create, ...' };
  const f = explainFailure(SERVER.reviewRequest, err, true);
  assert.equal(f.unsupported, true);
  assert.equal(f.alreadyShown, false);
  assert.equal(
    f.message,
    'This marginalia server does not support reviews (marginalia.review.request) yet. Update marginalia to a version that has it.',
  );
  assert.match(explainFailure(SERVER.prThreads, { code: -32602, message: 'unknown command `x`' }, true).message, /pull requests/);
});

test('an unknown request (MethodNotFound) is unsupported too', () => {
  const f = explainFailure('marginalia/reviewDocument', { code: -32601, message: 'Method not found' }, false);
  assert.equal(f.unsupported, true);
  assert.match(f.message, /does not support reviews \(marginalia\/reviewDocument\) yet/);
});

test("a command's own error was shown by the server; a request's or a dead client's was not", () => {
  const bad = { code: -32602, message: 'no codemark `abc`' };
  assert.deepEqual(explainFailure(SERVER.reply, bad, true), { unsupported: false, alreadyShown: true, message: 'marginalia: no codemark `abc`' });
  assert.equal(explainFailure('marginalia/codemarks', bad, false).alreadyShown, false);
  assert.equal(explainFailure(SERVER.reply, new Error('Client is not running'), true).alreadyShown, false);
});
