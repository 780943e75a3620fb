/**
 * Time formatting (pure, unit tested). The API sends ISO-8601 UTC strings or null.
 */

/** Parse an API timestamp; null/undefined/unparseable → null. */
export function parseTime(value: string | null | undefined): number | null {
  if (!value) {
    return null;
  }
  let text = value;
  // A naive timestamp from the API is UTC: do not let the browser read it as local time.
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(text)) {
    text += 'Z';
  }
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : ms;
}

/**
 * "just now", "42 s ago", "2 min ago", "3 h ago", "5 d ago", or the date for
 * anything older than 30 days. Times slightly in the future (clock skew) read
 * "just now". `now` is in ms since the epoch (Date.now()).
 */
export function relativeTime(value: string | null | undefined, now: number = Date.now()): string {
  const t = parseTime(value);
  if (t === null) {
    return '—';
  }
  const seconds = Math.floor((now - t) / 1000);
  if (seconds < 5) {
    return seconds < -60 ? absoluteTime(value) : 'just now';
  }
  if (seconds < 60) {
    return `${seconds} s ago`;
  }
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    return `${minutes} min ago`;
  }
  const hours = Math.floor(minutes / 60);
  if (hours < 24) {
    return `${hours} h ago`;
  }
  const days = Math.floor(hours / 24);
  if (days <= 30) {
    return `${days} d ago`;
  }
  return absoluteTime(value).slice(0, 10);
}

/** "2024-05-01 13:45:10 UTC" (stable across browser locales). */
export function absoluteTime(value: string | null | undefined): string {
  const t = parseTime(value);
  if (t === null) {
    return '—';
  }
  return new Date(t)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, ' UTC')
    .replace(/Z$/, ' UTC');
}

/** "12 s", "3 min 05 s", "1 h 02 min", "2 d 04 h"; negative or NaN → "—". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) {
    return '—';
  }
  const s = Math.floor(seconds);
  if (s < 60) {
    return `${s} s`;
  }
  const pad = (n: number) => String(n).padStart(2, '0');
  const m = Math.floor(s / 60);
  if (m < 60) {
    return `${m} min ${pad(s % 60)} s`;
  }
  const h = Math.floor(m / 60);
  if (h < 24) {
    return `${h} h ${pad(m % 60)} min`;
  }
  const d = Math.floor(h / 24);
  return `${d} d ${pad(h % 24)} h`;
}

/**
 * Seconds between two timestamps; if `end` is missing the interval is still
 * open and runs until `now`. Missing start → null.
 */
export function secondsBetween(
  start: string | null | undefined,
  end: string | null | undefined,
  now: number = Date.now()
): number | null {
  const a = parseTime(start);
  if (a === null) {
    return null;
  }
  const b = end ? parseTime(end) : now;
  if (b === null) {
    return null;
  }
  return Math.max(0, (b - a) / 1000);
}

/** "1.5 KB", "12 MB"… for result sizes (powers of 1024). */
export function formatBytes(size: number | null | undefined): string {
  if (size === null || size === undefined || !Number.isFinite(size) || size < 0) {
    return '—';
  }
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = size;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  const text = i === 0 || value >= 10 ? String(Math.round(value)) : value.toFixed(1);
  return `${text} ${units[i]}`;
}
