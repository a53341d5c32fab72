// Thread mapping: the server's `marginalia/codemarks` answer to the neutral thread model.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Sequencer, coveredLines, fingerprint, parseCodemarks, planThreads, toThread, toThreads } from '../model';

// An answer as `marginalia lsp` gives it (README: "Stable names").
const answer = {
  codemarks: [
    {
      id: '01a2085e-71a5-7135-9710-fdf01f5c9dd6',
      kind: 'question',
      title: null,
      body: 'Why cache here?',
      status: 'open',
      anchorStatus: 'modified',
      range: { start: { line: 12, character: 0 }, end: { line: 14, character: 27 } },
      author: 'Ana <ana@example.com>',
      created: '2026-11-30T10:00:00Z',
      updated: '2026-11-30T10:05:00Z',
      pending: false,
      shared: null,
      replies: [{ id: 'r1', author: 'Bo', body: 'Because of the **cost**.', created: '2026-11-30T10:05:00Z' }],
    },
    {
      id: 'b2',
      kind: 'bookmark',
      title: 'Entry point',
      body: '',
      status: 'resolved',
      anchorStatus: 'deleted',
      range: { start: { line: 3, character: 0 }, end: { line: 3, character: 0 } },
      author: 'Ana',
      created: 'not a time',
      pending: true,
      replies: [],
    },
  ],
};

test('a codemark becomes a thread on its whole lines, the codemark first, then its replies', () => {
  const [q] = toThreads(parseCodemarks(answer));
  assert.equal(q.id, '01a2085e-71a5-7135-9710-fdf01f5c9dd6');
  assert.deepEqual([q.startLine, q.endLine], [12, 14]);
  assert.equal(q.label, 'question · open · code changed since');
  assert.equal(q.contextValue, 'open');
  assert.equal(q.resolved, false);
  assert.deepEqual(
    q.comments.map((c) => [c.author, c.body, c.contextValue]),
    [
      ['Ana <ana@example.com>', 'Why cache here?', 'codemark'],
      ['Bo', 'Because of the **cost**.', 'reply'],
    ],
  );
  assert.equal(q.comments[0].timestamp, Date.parse('2026-11-30T10:00:00Z'));
});

test('a resolved codemark whose code was deleted sits where the code was, titled, marked pending', () => {
  const b = toThreads(parseCodemarks(answer))[1];
  assert.equal(b.deleted, true);
  assert.deepEqual([b.startLine, b.endLine], [3, 3]);
  assert.equal(b.resolved, true);
  assert.equal(b.contextValue, 'resolved');
  assert.equal(b.label, 'bookmark · resolved · code deleted · on lines not committed yet');
  assert.equal(b.comments[0].body, '**Entry point**\n\n');
  assert.equal(b.comments[0].timestamp, undefined, 'a time that does not parse is left out');
});

test('a range ending at column 0 of a later line stops before it', () => {
  assert.deepEqual(coveredLines({ start: { line: 4, character: 0 }, end: { line: 6, character: 0 } }), {
    startLine: 4,
    endLine: 5,
  });
  assert.deepEqual(coveredLines({ start: { line: 4, character: 0 }, end: { line: 4, character: 0 } }), {
    startLine: 4,
    endLine: 4,
  });
});

test('a codemark without a place here (marginalia/codemark of another file) is no thread', () => {
  const [c] = parseCodemarks({ codemarks: [{ ...answer.codemarks[0], range: undefined }] });
  assert.equal(toThread(c), undefined);
});

test('an answer of the wrong shape is an error that names the field', () => {
  assert.throws(() => parseCodemarks({}), /without a `codemarks` list/);
  assert.throws(() => parseCodemarks({ codemarks: [{ ...answer.codemarks[0], id: 7 }] }), /codemarks\[0\]: `id`/);
  assert.throws(
    () => parseCodemarks({ codemarks: [{ ...answer.codemarks[0], range: { start: { line: 1 } } }] }),
    /codemarks\[0\]\.range\.start: not a position/,
  );
  assert.throws(() => parseCodemarks({ codemarks: [{ ...answer.codemarks[0], replies: {} }] }), /`replies` is not a list/);
});

test('threads are created, updated only when changed, and removed when gone', () => {
  const [q, b] = toThreads(parseCodemarks(answer));
  const first = planThreads(new Map(), [q, b]);
  assert.deepEqual(first.create.map((t) => t.id), [q.id, b.id]);
  assert.deepEqual([first.update, first.remove], [[], []]);

  const shown = new Map([
    [q.id, fingerprint(q)],
    [b.id, fingerprint(b)],
  ]);
  assert.deepEqual(planThreads(shown, [q, b]), { create: [], update: [], remove: [] }, 'nothing changed');

  const moved = { ...q, startLine: 15, endLine: 17 };
  const next = planThreads(shown, [moved]);
  assert.deepEqual(next.update.map((t) => [t.id, t.startLine]), [[q.id, 15]]);
  assert.deepEqual(next.remove, [b.id]);
  assert.deepEqual(next.create, []);
});

test('a codemark listed twice (two anchors in one file) is shown once', () => {
  const [q] = toThreads(parseCodemarks(answer));
  assert.equal(planThreads(new Map(), [q, { ...q, startLine: 40 }]).create.length, 1);
});

test('an answer that arrives after a newer one for the same document is dropped', () => {
  const s = new Sequencer();
  const a = s.next('file:///a');
  const b = s.next('file:///a');
  const other = s.next('file:///b');
  assert.equal(s.accept('file:///a', b), true);
  assert.equal(s.accept('file:///a', a), false, 'older than the one shown');
  assert.equal(s.accept('file:///b', other), true, 'documents are independent');
});
