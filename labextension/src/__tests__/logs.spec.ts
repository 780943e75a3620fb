import {
  applyLogPiece,
  dropLeadingBytes,
  emptyLog,
  gapNotice,
  ILogBuffer,
  mergeLogChunk,
  shouldPollLog
} from '../logs';

const chunk = (offset: number, data: string, complete = false) => ({
  offset,
  next_offset: offset + Buffer.byteLength(data, 'utf8'),
  data,
  complete
});

describe('mergeLogChunk', () => {
  it('appends consecutive chunks', () => {
    let b = emptyLog();
    b = mergeLogChunk(b, chunk(0, 'hello '));
    b = mergeLogChunk(b, chunk(6, 'world\n'));
    expect(b).toEqual({ text: 'hello world\n', nextOffset: 12, complete: false, truncated: false });
  });
  it('handles an empty answer (nothing new yet)', () => {
    const b = mergeLogChunk(emptyLog(), chunk(0, 'abc'));
    const same = mergeLogChunk(b, { offset: 3, next_offset: 3, data: '', complete: false });
    expect(same).toBe(b);
  });
  it('marks complete on an empty final answer', () => {
    const b = mergeLogChunk(emptyLog(), chunk(0, 'abc'));
    const done = mergeLogChunk(b, { offset: 3, next_offset: 3, data: '', complete: true });
    expect(done.complete).toBe(true);
    expect(done.text).toBe('abc');
  });
  it('ignores a stale or repeated answer', () => {
    const b = mergeLogChunk(mergeLogChunk(emptyLog(), chunk(0, 'abc')), chunk(3, 'def'));
    expect(mergeLogChunk(b, chunk(0, 'abc'))).toBe(b);
    expect(mergeLogChunk(b, chunk(3, 'def'))).toBe(b);
  });
  it('appends only the new part of an overlapping answer', () => {
    const b = mergeLogChunk(emptyLog(), chunk(0, 'abcd'));
    const c = mergeLogChunk(b, chunk(2, 'cdef'));
    expect(c.text).toBe('abcdef');
    expect(c.nextOffset).toBe(6);
  });
  it('counts offsets in bytes (multi-byte characters)', () => {
    const b = mergeLogChunk(emptyLog(), chunk(0, 'é'));
    expect(b.nextOffset).toBe(2);
    const c = mergeLogChunk(b, chunk(0, 'éü'));
    expect(c.text).toBe('éü');
    expect(c.nextOffset).toBe(4);
  });
  it('marks a gap when the server skipped bytes', () => {
    const b = mergeLogChunk(emptyLog(), chunk(100, 'tail'));
    expect(b.text).toBe(gapNotice(100) + 'tail');
    expect(b.nextOffset).toBe(104);
  });
  it('ignores a malformed answer', () => {
    const b = emptyLog();
    expect(mergeLogChunk(b, { offset: 5, next_offset: 2, data: 'x', complete: false })).toBe(b);
    expect(mergeLogChunk(b, { offset: 0, next_offset: NaN, data: 'x', complete: false })).toBe(b);
  });
  it('keeps only the end of a long log', () => {
    let b: ILogBuffer = emptyLog();
    b = mergeLogChunk(b, chunk(0, 'a'.repeat(8)), 10);
    b = mergeLogChunk(b, chunk(8, 'b'.repeat(8)), 10);
    expect(b.text).toBe('aabbbbbbbb');
    expect(b.truncated).toBe(true);
    expect(b.nextOffset).toBe(16);
  });
  it('does not modify its input', () => {
    const b = emptyLog();
    mergeLogChunk(b, chunk(0, 'x'));
    expect(b).toEqual(emptyLog());
  });
});

describe('dropLeadingBytes', () => {
  it('drops bytes, not characters', () => {
    expect(dropLeadingBytes('héllo', 3)).toBe('llo');
    expect(dropLeadingBytes('abc', 0)).toBe('abc');
    expect(dropLeadingBytes('abc', 5)).toBe('');
  });
});

describe('shouldPollLog', () => {
  const open = emptyLog();
  const done = { ...emptyLog(), complete: true };
  it('polls while the job runs', () => {
    expect(shouldPollLog(false, open, null)).toBe(true);
    expect(shouldPollLog(false, done, null)).toBe(true);
  });
  it('after the end, polls until complete or the grace time is over', () => {
    expect(shouldPollLog(true, open, 1000)).toBe(true);
    expect(shouldPollLog(true, done, 1000)).toBe(false);
    expect(shouldPollLog(true, open, 120_000)).toBe(false);
  });
});

describe('applyLogPiece (event stream `log` messages)', () => {
  const buffer = (text: string, nextOffset: number) => ({
    ...emptyLog(),
    text,
    nextOffset
  });

  it('appends text that starts at the end, counting UTF-8 bytes', () => {
    const [b, fetch] = applyLogPiece(buffer('ab', 2), { offset: 2, text: 'é\n' });
    expect(fetch).toBe(false);
    expect(b.text).toBe('abé\n');
    expect(b.nextOffset).toBe(5); // é is two bytes
    expect(b.complete).toBe(false);
  });

  it('takes only the new part of a piece it partly has, and ignores a repeated one', () => {
    const start = buffer('hello ', 6);
    const [b] = applyLogPiece(start, { offset: 0, text: 'hello world' });
    expect(b.text).toBe('hello world');
    expect(b.nextOffset).toBe(11);
    const [same, fetch] = applyLogPiece(b, { offset: 6, text: 'world' });
    expect(same).toBe(b);
    expect(fetch).toBe(false);
  });

  it('asks for a fetch after a gap or when the text did not come with the message', () => {
    const start = buffer('abc', 3);
    expect(applyLogPiece(start, { offset: 10, text: 'later' })).toEqual([start, true]);
    expect(applyLogPiece(start, { offset: 3, text: null })).toEqual([start, true]);
  });

  it('ignores a piece with a broken offset', () => {
    const start = buffer('abc', 3);
    expect(applyLogPiece(start, { offset: NaN, text: 'x' })).toEqual([start, false]);
    expect(applyLogPiece(start, { offset: -1, text: 'x' })).toEqual([start, false]);
  });

  it('keeps the buffer under its limit', () => {
    const [b] = applyLogPiece(buffer('abcdef', 6), { offset: 6, text: 'ghij' }, 5);
    expect(b.text).toBe('fghij');
    expect(b.truncated).toBe(true);
  });
});

describe('applyLogPiece and cut characters', () => {
  it('uses the byte size the stream gives, and fetches when a replaced character makes it unknown', () => {
    const start = { ...emptyLog(), text: 'a', nextOffset: 1 };
    const [b] = applyLogPiece(start, { offset: 1, text: 'x\uFFFD', size: 2 });
    expect(b.nextOffset).toBe(3);
    expect(applyLogPiece(start, { offset: 1, text: 'x\uFFFD' })).toEqual([start, true]);
  });
});
