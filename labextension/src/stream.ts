/**
 * The panel's one connection to the middleware's event stream
 * (`GET <base>/hpcbridge/api/events/stream`, server-sent events, forwarded by
 * the Jupyter server extension with the user's token).
 *
 * Messages: `event: job` (`id: <n>`, data: the job as `GET jobs/{id}` answers)
 * and `event: log` (no id, data: `{job_id, stream, offset, text}`).
 *
 * States: `off` (not wanted) → `connecting` → `live`; after `failAttempts`
 * failed attempts in a row, or `failAfterMs` without getting (back) through,
 * `unavailable`: the caller polls instead, and the stream is tried again every
 * `retryMs` (resuming after the last job message it saw). EventSource cannot
 * send headers: the resume point travels as `?last_event_id=`, and the browser's
 * Jupyter cookie authenticates the request.
 */
import type { IJob } from './api';

export type StreamState = 'off' | 'connecting' | 'live' | 'unavailable';

/** `event: log`: text appended to a job's stdout/stderr at byte `offset`. */
export interface ILogMessage {
  job_id: string;
  stream: 'stdout' | 'stderr';
  offset: number;
  /** null: too large to carry; fetch the range from `offset`. */
  text: string | null;
  /** Bytes of the log the text stands for (when the middleware sends it). */
  size?: number;
}

/** What the stream needs of the browser's EventSource (a fake in unit tests). */
export interface IEventSourceLike {
  readonly readyState: number;
  onopen: ((event: Event) => void) | null;
  onerror: ((event: Event) => void) | null;
  addEventListener(type: string, listener: (event: MessageEvent) => void): void;
  close(): void;
}

export type EventSourceFactory = (url: string) => IEventSourceLike;

/** EventSource.CLOSED: the browser gave up (an HTTP error answer) and will not retry. */
const CLOSED = 2;

export interface IJobStreamOptions {
  /** The stream's URL, resuming after `lastEventId` when there is one. */
  url: (lastEventId: string | null) => string;
  create: EventSourceFactory;
  onJob: (job: IJob) => void;
  onLog: (message: ILogMessage) => void;
  onState: (state: StreamState) => void;
  /** Failed attempts in a row before falling back (2). */
  failAttempts?: number;
  /** ms without (re)connecting before falling back (10000). */
  failAfterMs?: number;
  /** ms before opening again after the browser gave up, while not yet unavailable (2000). */
  reopenMs?: number;
  /** ms between attempts while unavailable (20000). */
  retryMs?: number;
}

export class JobStream {
  constructor(options: IJobStreamOptions) {
    this._options = options;
    this._failAttempts = options.failAttempts ?? 2;
    this._failAfterMs = options.failAfterMs ?? 10_000;
    this._reopenMs = options.reopenMs ?? 2000;
    this._retryMs = options.retryMs ?? 20_000;
  }

  get state(): StreamState {
    return this._state;
  }

  /** The id of the last job message received (where a new connection resumes). */
  get lastEventId(): string | null {
    return this._lastEventId;
  }

  /** Connect unless connected or connecting already. */
  start(): void {
    if (this._state === 'off') {
      this._failures = 0;
      this._open();
    }
  }

  /** Close and forget every timer (state `off`). */
  stop(): void {
    this._close();
    this._clearTimers();
    this._setState('off');
  }

  private _open(): void {
    this._close();
    this._clearTimer('reopen');
    const source = this._options.create(this._options.url(this._lastEventId));
    this._source = source;
    if (this._state !== 'unavailable') {
      this._setState('connecting');
      this._armFailTimer();
    }
    source.onopen = () => {
      if (source !== this._source) {
        return;
      }
      this._failures = 0;
      this._clearTimer('fail');
      this._setState('live');
    };
    source.onerror = (event: Event) => {
      if (source !== this._source) {
        return;
      }
      if ((event as MessageEvent).data !== undefined) {
        // `event: error` from the middleware (e.g. a revoked token); the stream ends next
        console.warn('hpcbridge: event stream error', (event as MessageEvent).data);
        return;
      }
      this._failed(source);
    };
    source.addEventListener('job', (event: MessageEvent) => {
      if (source !== this._source) {
        return;
      }
      const job = parse<IJob>(event.data);
      if (event.lastEventId) {
        this._lastEventId = event.lastEventId;
      }
      if (job && typeof job.id === 'string') {
        this._options.onJob(job);
      }
    });
    source.addEventListener('log', (event: MessageEvent) => {
      if (source !== this._source) {
        return;
      }
      const message = parse<ILogMessage>(event.data);
      if (message && typeof message.job_id === 'string' && Number.isFinite(message.offset)) {
        this._options.onLog(message);
      }
    });
  }

  /** A connection attempt failed or a live connection dropped. */
  private _failed(source: IEventSourceLike): void {
    this._failures++;
    const gaveUp = source.readyState === CLOSED;
    if (this._state === 'unavailable') {
      // a retry that did not get through: wait for the next one
      this._close();
      this._schedule('reopen', this._retryMs);
      return;
    }
    if (this._failures >= this._failAttempts) {
      this._fallBack();
      return;
    }
    if (this._state === 'live') {
      this._setState('connecting');
    }
    this._armFailTimer();
    if (gaveUp) {
      // the browser retries network errors itself, never an HTTP error answer
      this._close();
      this._schedule('reopen', this._reopenMs);
    }
  }

  private _fallBack(): void {
    this._close();
    this._clearTimers();
    this._setState('unavailable');
    this._schedule('reopen', this._retryMs);
  }

  private _armFailTimer(): void {
    if (!this._timers.fail) {
      this._timers.fail = setTimeout(() => {
        this._timers.fail = null;
        if (this._state === 'connecting') {
          this._fallBack();
        }
      }, this._failAfterMs);
    }
  }

  private _schedule(name: 'reopen', ms: number): void {
    this._clearTimer(name);
    this._timers[name] = setTimeout(() => {
      this._timers[name] = null;
      this._open();
    }, ms);
  }

  private _clearTimer(name: 'fail' | 'reopen'): void {
    const timer = this._timers[name];
    if (timer) {
      clearTimeout(timer);
      this._timers[name] = null;
    }
  }

  private _clearTimers(): void {
    this._clearTimer('fail');
    this._clearTimer('reopen');
  }

  private _close(): void {
    const source = this._source;
    this._source = null;
    if (source) {
      source.onopen = null;
      source.onerror = null;
      source.close();
    }
  }

  private _setState(state: StreamState): void {
    if (state !== this._state) {
      this._state = state;
      this._options.onState(state);
    }
  }

  private _options: IJobStreamOptions;
  private _failAttempts: number;
  private _failAfterMs: number;
  private _reopenMs: number;
  private _retryMs: number;
  private _state: StreamState = 'off';
  private _source: IEventSourceLike | null = null;
  private _failures = 0;
  private _lastEventId: string | null = null;
  private _timers: {
    fail: ReturnType<typeof setTimeout> | null;
    reopen: ReturnType<typeof setTimeout> | null;
  } = { fail: null, reopen: null };
}

function parse<T>(data: unknown): T | null {
  if (typeof data !== 'string') {
    return null;
  }
  try {
    return JSON.parse(data) as T;
  } catch {
    console.warn('hpcbridge: an event stream message that is not JSON', data);
    return null;
  }
}

/** The browser's EventSource, or null where there is none (then the panel polls). */
export function browserEventSource(): EventSourceFactory | null {
  if (typeof EventSource === 'undefined') {
    return null;
  }
  return (url: string) => new EventSource(url);
}
