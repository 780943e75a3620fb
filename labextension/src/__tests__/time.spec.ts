import {
  absoluteTime,
  formatBytes,
  formatDuration,
  parseTime,
  relativeTime,
  secondsBetween
} from '../time';

const NOW = Date.parse('2024-05-01T12:00:00Z');
const ago = (s: number) => new Date(NOW - s * 1000).toISOString();

describe('relativeTime', () => {
  it.each([
    [0, 'just now'],
    [4, 'just now'],
    [5, '5 s ago'],
    [59, '59 s ago'],
    [60, '1 min ago'],
    [120, '2 min ago'],
    [179, '2 min ago'],
    [3599, '59 min ago'],
    [3600, '1 h ago'],
    [86399, '23 h ago'],
    [86400, '1 d ago'],
    [30 * 86400, '30 d ago']
  ])('%i seconds ago → %s', (seconds, text) => {
    expect(relativeTime(ago(seconds), NOW)).toBe(text);
  });
  it('shows a date past 30 days', () => {
    expect(relativeTime(ago(40 * 86400), NOW)).toBe('2024-03-22');
  });
  it('reads small clock skew as just now and large future times as dates', () => {
    expect(relativeTime(ago(-10), NOW)).toBe('just now');
    expect(relativeTime('2030-01-01T00:00:00Z', NOW)).toBe('2030-01-01 00:00:00 UTC');
  });
  it('shows a dash for missing or bad values', () => {
    expect(relativeTime(null, NOW)).toBe('—');
    expect(relativeTime(undefined, NOW)).toBe('—');
    expect(relativeTime('not a date', NOW)).toBe('—');
  });
  it('reads timestamps without zone as UTC', () => {
    expect(parseTime('2024-05-01T11:58:00')).toBe(NOW - 120_000);
    expect(relativeTime('2024-05-01T11:58:00.123456', NOW)).toBe('1 min ago');
    expect(parseTime('2024-05-01T13:58:00+02:00')).toBe(NOW - 120_000);
  });
});

describe('absoluteTime', () => {
  it('is UTC and locale independent', () => {
    expect(absoluteTime('2024-05-01T12:00:00.250Z')).toBe('2024-05-01 12:00:00 UTC');
    expect(absoluteTime(null)).toBe('—');
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0 s'],
    [12.7, '12 s'],
    [65, '1 min 05 s'],
    [3600, '1 h 00 min'],
    [3720, '1 h 02 min'],
    [90000, '1 d 01 h']
  ])('%d → %s', (s, text) => {
    expect(formatDuration(s)).toBe(text);
  });
  it('shows a dash for nothing', () => {
    expect(formatDuration(null)).toBe('—');
    expect(formatDuration(-1)).toBe('—');
    expect(formatDuration(NaN)).toBe('—');
  });
});

describe('secondsBetween', () => {
  it('measures closed and open intervals', () => {
    expect(secondsBetween(ago(100), ago(40), NOW)).toBe(60);
    expect(secondsBetween(ago(100), null, NOW)).toBe(100);
    expect(secondsBetween(null, ago(1), NOW)).toBeNull();
    expect(secondsBetween(ago(10), ago(20), NOW)).toBe(0);
  });
});

describe('formatBytes', () => {
  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1536, '1.5 KB'],
    [10 * 1024 * 1024, '10 MB'],
    [5 * 1024 ** 3, '5.0 GB']
  ])('%d → %s', (n, text) => {
    expect(formatBytes(n)).toBe(text);
  });
  it('shows a dash for nothing', () => {
    expect(formatBytes(undefined)).toBe('—');
  });
});
