import {
  finalTransitions,
  FINAL_STATUSES,
  isCancellable,
  isFinal,
  isJobStatus,
  JOB_STATUSES,
  shortId,
  statusClass,
  statusLabel,
  statusMap
} from '../status';

describe('status helpers', () => {
  it('knows the final statuses', () => {
    expect(FINAL_STATUSES).toEqual(['succeeded', 'failed', 'cancelled']);
    for (const s of JOB_STATUSES) {
      expect(isFinal(s)).toBe(['succeeded', 'failed', 'cancelled'].includes(s));
    }
    expect(isFinal(null)).toBe(false);
    expect(isFinal('bogus')).toBe(false);
  });
  it('labels and classes', () => {
    expect(statusLabel('running')).toBe('Running');
    expect(statusLabel('weird')).toBe('weird');
    expect(statusClass('succeeded')).toBe('hpcbridge-status-succeeded');
    expect(statusClass('Odd Status')).toBe('hpcbridge-status-odd-status');
    expect(statusClass('')).toBe('hpcbridge-status-unknown');
    expect(isJobStatus('queued')).toBe(true);
    expect(isJobStatus('QUEUED')).toBe(false);
  });
  it('cancellable until final or requested', () => {
    expect(isCancellable('running')).toBe(true);
    expect(isCancellable('queued')).toBe(true);
    expect(isCancellable('running', true)).toBe(false);
    expect(isCancellable('succeeded')).toBe(false);
    expect(isCancellable('bogus')).toBe(false);
  });
  it('shortens ids', () => {
    expect(shortId('0123456789abcdef')).toBe('01234567');
    expect(shortId('abc')).toBe('abc');
  });
});

describe('finalTransitions', () => {
  const job = (id: string, status: string, user = 'alice') => ({ id, status, user });
  it('reports jobs that became final since the last poll', () => {
    const prev = statusMap([
      job('a', 'running'),
      job('b', 'queued'),
      job('c', 'succeeded'),
      job('d', 'running')
    ]);
    const now = [
      job('a', 'succeeded'),
      job('b', 'running'),
      job('c', 'succeeded'),
      job('d', 'failed'),
      job('e', 'failed')
    ];
    expect(finalTransitions(prev, now).map(j => j.id)).toEqual(['a', 'd']);
  });
  it('reports nothing on the first poll', () => {
    expect(finalTransitions(new Map(), [job('a', 'failed')])).toEqual([]);
  });
  it('skips other users when a user is given', () => {
    const prev = statusMap([job('a', 'running', 'bob'), job('b', 'running')]);
    const now = [job('a', 'cancelled', 'bob'), job('b', 'cancelled')];
    expect(finalTransitions(prev, now, 'alice').map(j => j.id)).toEqual(['b']);
    expect(finalTransitions(prev, now).map(j => j.id)).toEqual(['a', 'b']);
  });
});
