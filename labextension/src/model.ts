/**
 * The panel's state outside React: which view is shown, the job list, HPCs,
 * apps and the current user. React views render from it and re-render when
 * `changed` fires.
 *
 * Live updates come from one event stream (`stream.ts`) shared by the list,
 * detail and log views, open while the panel is shown or some job is active.
 * While it is live the panel makes no periodic API request: the list is
 * fetched when the stream (re)connects and when the panel is shown, and job
 * messages update it. When the stream is unavailable the panel falls back to
 * polling the list every 3 s (and says so) until the stream is back.
 */
import { ISignal, Signal } from '@lumino/signaling';

import type { HpcBridgeApi, IApp, IHpc, IJob, IMe, ISweep } from './api';
import { ApiError } from './errors';
import { isFinal } from './status';
import {
  browserEventSource,
  EventSourceFactory,
  ILogMessage,
  JobStream,
  StreamState
} from './stream';

export type View =
  | { kind: 'list' }
  | { kind: 'detail'; jobId: string }
  | { kind: 'submit'; upload?: string; app?: string; nonce: number }
  | { kind: 'sessions' };

export interface IFilters {
  status: string;
  app: string;
  hpc: string;
}

export interface IPanelModelOptions {
  api: HpcBridgeApi;
  /** Called once per job that reaches a final status while the panel is open. */
  onJobFinished?: (job: IJob) => void;
  /** ms between job list polls while the panel is shown (3000). */
  pollInterval?: number;
  /**
   * ms between job list polls while the panel is hidden but some job is still
   * active (15000), so the user still hears about finished jobs; with no
   * active job a hidden panel does not poll at all.
   */
  backgroundInterval?: number;
  /** Refresh HPCs and the user every this many polls (5 → every 15 s). */
  slowEvery?: number;
  /** How many jobs the list asks for. */
  pageSize?: number;
  /**
   * Opens the event stream; null: no stream, always poll. Default: the
   * browser's EventSource where there is one.
   */
  eventSource?: EventSourceFactory | null;
  /** Options of the stream's fallback (tests shorten them). */
  streamTimings?: {
    failAttempts?: number;
    failAfterMs?: number;
    reopenMs?: number;
    retryMs?: number;
  };
  /** ms between re-renders of relative times while live and shown (no request; 30000). */
  clockInterval?: number;
}

export class PanelModel {
  constructor(options: IPanelModelOptions) {
    this.api = options.api;
    this._onJobFinished = options.onJobFinished;
    this._interval = options.pollInterval ?? 3000;
    this._backgroundInterval = options.backgroundInterval ?? 15000;
    this._slowEvery = options.slowEvery ?? 5;
    this.pageSize = options.pageSize ?? 200;
    this._clockInterval = options.clockInterval ?? 30_000;
    const create = options.eventSource === undefined ? browserEventSource() : options.eventSource;
    this._stream = create
      ? new JobStream({
          ...options.streamTimings,
          create,
          url: last => this.api.url('api', 'events/stream', { last_event_id: last }),
          onJob: job => this._onStreamJob(job),
          onLog: message => this._logReceived.emit(message),
          onState: state => this._onStreamState(state)
        })
      : null;
  }

  readonly api: HpcBridgeApi;
  readonly pageSize: number;

  view: View = { kind: 'list' };
  /** The job last opened from the list (kept highlighted when coming back). */
  selectedId: string | null = null;
  filters: IFilters = { status: '', app: '', hpc: '' };

  jobs: IJob[] = [];
  total = 0;
  /** The first job list answer has arrived. */
  loaded = false;
  /** The last job list poll failed with this; null when it worked. */
  error: ApiError | null = null;

  /** The sweeps the listed jobs belong to, by id (counts and progress). */
  sweeps: { [id: string]: ISweep } = {};

  hpcs: IHpc[] = [];
  apps: IApp[] = [];
  appsLoaded = false;
  appsError: ApiError | null = null;
  me: IMe | null = null;

  /** Time of the last poll, for relative times. */
  now = Date.now();
  visible = false;

  /** The event stream's state (`off` when the panel has none or does not need it). */
  streamState: StreamState = 'off';

  /** The event stream is connected: views wait for its messages instead of polling. */
  get live(): boolean {
    return this.streamState === 'live';
  }

  /** The stream failed and the panel polls instead (the views show a notice). */
  get pollingFallback(): boolean {
    return this.streamState === 'unavailable' || (this._stream === null && this.visible);
  }

  /** ms between the fallback's list polls. */
  get pollInterval(): number {
    return this._interval;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** A job as the event stream sent it (after the list took it in). */
  get jobReceived(): ISignal<this, IJob> {
    return this._jobReceived;
  }

  /** Log text as the event stream sent it. */
  get logReceived(): ISignal<this, ILogMessage> {
    return this._logReceived;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  dispose(): void {
    this._disposed = true;
    this._stop();
    this._stream?.stop();
    this._setClock(false);
    for (const timer of Object.values(this._debounce)) {
      clearTimeout(timer);
    }
    Signal.clearData(this);
  }

  navigate(view: View): void {
    if (view.kind === 'detail') {
      this.selectedId = view.jobId;
    }
    this.view = view;
    this._emit();
  }

  /** Open the submit form, optionally with an input path filled in. */
  openSubmit(options: { upload?: string; app?: string } = {}): void {
    this.navigate({ kind: 'submit', ...options, nonce: ++this._nonce });
  }

  setFilters(filters: Partial<IFilters>): void {
    this.filters = { ...this.filters, ...filters };
    this._emit();
    if (this.visible) {
      this._restart();
    }
  }

  /**
   * The panel became visible or hidden. Shown: the stream opens (its opening
   * loads the list) or, if it is live already, the list, HPCs and user are
   * loaded once; without a stream, poll now and then every 3 s. Hidden: the
   * stream stays open while some known job is active (a fallback poll slows
   * down to the background interval), and closes once none is.
   */
  setVisible(visible: boolean): void {
    if (visible === this.visible) {
      return;
    }
    this.visible = visible;
    this._wantStream();
    if (visible) {
      // a stream that is opening loads the list when it opens (or when it fails)
      if (this.streamState !== 'connecting') {
        this._restart();
      }
    } else if (!this.hasActiveJobs) {
      this._stop();
    }
    this._setClock(visible && this.live);
    this._emit();
  }

  /** Whether the list holds a job that is not final yet. */
  get hasActiveJobs(): boolean {
    for (const status of this._lastStatus.values()) {
      if (!isFinal(status)) {
        return true;
      }
    }
    return false;
  }

  /** Poll now (e.g. after a submit or a cancel); `sweeps`: the sweeps too. */
  refresh(sweeps = false): void {
    this._sweepsWanted = this._sweepsWanted || sweeps;
    if (this.visible || this._timer !== null) {
      this._restart();
    }
  }

  /** Open the stream while the panel is shown or a job is active; close it otherwise. */
  private _wantStream(): void {
    if (!this._stream) {
      return;
    }
    if (!this._disposed && (this.visible || this.hasActiveJobs)) {
      this._stream.start();
    } else {
      this._stream.stop();
    }
  }

  private _onStreamState(state: StreamState): void {
    this.streamState = state;
    if (state === 'live') {
      // (re)connected: one load catches what happened before the stream started,
      // then job messages keep the list current and no timer runs
      this._restart();
    } else if (state === 'unavailable' && (this.visible || this.hasActiveJobs)) {
      this._restart(); // fall back to polling
    }
    this._setClock(this.visible && state === 'live');
    this._emit();
  }

  private _onStreamJob(job: IJob): void {
    const wasActive = this.hasActiveJobs;
    const before = this._lastStatus.get(job.id);
    this.upsertJob(job);
    this._jobReceived.emit(job);
    if (job.sweep_id) {
      this._later('sweeps', 1000, () => void this._loadSweeps());
    }
    if (before !== undefined && !isFinal(before) && isFinal(job.status)) {
      // the quota's used time changed: one request for it, not a timer
      this._later('me', 1000, () => void this._loadMe());
    }
    if (wasActive !== this.hasActiveJobs) {
      this._wantStream();
    }
  }

  /** Run `fn` once after `ms`, however often asked meanwhile. */
  private _later(name: string, ms: number, fn: () => void): void {
    if (this._debounce[name] === undefined) {
      this._debounce[name] = setTimeout(() => {
        delete this._debounce[name];
        if (!this._disposed) {
          fn();
        }
      }, ms);
    }
  }

  private async _loadSweeps(): Promise<void> {
    try {
      const sweeps = await this.api.listSweeps(50);
      this.sweeps = Object.fromEntries(sweeps.sweeps.map(w => [w.id, w]));
      this._emit();
    } catch (error) {
      console.warn('hpcbridge: loading the sweeps failed', error);
    }
  }

  private async _loadMe(): Promise<void> {
    try {
      this.me = await this.api.me();
      this._emit();
    } catch (error) {
      console.warn('hpcbridge: loading the user failed', error);
    }
  }

  /** Re-render relative times now and then while no poll does it (no request). */
  private _setClock(on: boolean): void {
    if (on && this._clock === null && !this._disposed) {
      this._clock = setInterval(() => {
        this.now = Date.now();
        this._emit();
      }, this._clockInterval);
    } else if (!on && this._clock !== null) {
      clearInterval(this._clock);
      this._clock = null;
    }
  }

  /** Load the apps (once; `force` to reload). */
  async loadApps(force = false): Promise<void> {
    if (this.appsLoaded && !force) {
      return;
    }
    try {
      this.apps = await this.api.apps();
      this.appsError = null;
      this.appsLoaded = true;
    } catch (error) {
      this.appsError = toApiError(error);
    }
    this._emit();
  }

  hpcName(id: string): string {
    return this.hpcs.find(h => h.id === id)?.name || id;
  }

  appName(id: string): string {
    return this.apps.find(a => a.id === id)?.name || id;
  }

  /** Put a job we learned about elsewhere (submit, detail view, stream) into the list. */
  upsertJob(job: IJob): void {
    const i = this.jobs.findIndex(j => j.id === job.id);
    if (i >= 0 && isOlder(job, this.jobs[i])) {
      return; // e.g. a detail answer overtaken by a newer stream message
    }
    this._observe([job]);
    if (i >= 0) {
      if (JSON.stringify(this.jobs[i]) === JSON.stringify(job)) {
        return;
      }
      if (this._matchesFilters(job)) {
        this.jobs = [...this.jobs.slice(0, i), job, ...this.jobs.slice(i + 1)];
      } else {
        // e.g. a job that left the filtered status
        this.jobs = [...this.jobs.slice(0, i), ...this.jobs.slice(i + 1)];
        this.total = Math.max(0, this.total - 1);
      }
    } else if (this._matchesFilters(job)) {
      this.jobs = [job, ...this.jobs];
      this.total += 1;
    }
    this._emit();
  }

  private _matchesFilters(job: IJob): boolean {
    const f = this.filters;
    return (
      (!f.status || f.status === job.status) &&
      (!f.app || f.app === job.app) &&
      (!f.hpc || f.hpc === job.hpc)
    );
  }

  private _emit(): void {
    if (!this._disposed) {
      this._changed.emit();
    }
  }

  private _stop(): void {
    this._loop++;
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _restart(): void {
    this._stop();
    const loop = this._loop;
    void this._cycle(loop, 0);
  }

  private async _cycle(loop: number, count: number): Promise<void> {
    if (loop !== this._loop || this._disposed) {
      return;
    }
    const slow = count % this._slowEvery === 0;
    const filters = { ...this.filters };
    const withSweeps = this._sweepsWanted || this.jobs.some(j => !!j.sweep_id);
    const [list, hpcs, me, sweeps] = await Promise.allSettled([
      this.api.listJobs({
        status: filters.status,
        app: filters.app,
        hpc: filters.hpc,
        limit: this.pageSize
      }),
      slow ? this.api.hpcs() : Promise.resolve(null),
      slow && (!this.me || count % (this._slowEvery * 4) === 0)
        ? this.api.me()
        : Promise.resolve(null),
      withSweeps ? this.api.listSweeps(50) : Promise.resolve(null)
    ]);
    if (loop !== this._loop || this._disposed) {
      return;
    }
    if (me.status === 'fulfilled' && me.value) {
      this.me = me.value;
    }
    if (hpcs.status === 'fulfilled' && hpcs.value) {
      this.hpcs = hpcs.value;
    }
    if (sweeps.status === 'fulfilled' && sweeps.value) {
      this.sweeps = Object.fromEntries(sweeps.value.sweeps.map(w => [w.id, w]));
      this._sweepsWanted = false;
    }
    if (list.status === 'fulfilled') {
      this._applyJobs(list.value.jobs ?? [], list.value.total ?? 0);
      this.error = null;
      this.loaded = true;
    } else {
      this.error = toApiError(list.reason);
    }
    if (!this.appsLoaded && slow) {
      // apps feed the filters and the form; a failure here is retried with the slow polls
      await this.loadApps();
    }
    this.now = Date.now();
    this._emit();
    if (loop !== this._loop || this._disposed) {
      return;
    }
    this._wantStream(); // the list may have shown the first or the last active job
    if (this.live) {
      return; // the stream brings changes: no timer
    }
    if (!this.visible && !this.hasActiveJobs) {
      return; // hidden and nothing to wait for: stop until shown again
    }
    this._timer = setTimeout(
      () => {
        this._timer = null;
        void this._cycle(loop, count + 1);
      },
      this.visible ? this._interval : this._backgroundInterval
    );
  }

  /** Replace the list, keeping the objects of unchanged jobs (so their rows do not re-render). */
  private _applyJobs(jobs: IJob[], total: number): void {
    const old = new Map(this.jobs.map(j => [j.id, j]));
    // a list answer older than a job message that overtook it keeps the message's job
    jobs = jobs.map(job => {
      const before = old.get(job.id);
      return before && isOlder(job, before) ? before : job;
    });
    this._observe(jobs);
    let same = jobs.length === this.jobs.length;
    const merged = jobs.map((job, i) => {
      const before = old.get(job.id);
      if (before && JSON.stringify(before) === JSON.stringify(job)) {
        if (this.jobs[i] !== before) {
          same = false;
        }
        return before;
      }
      same = false;
      return job;
    });
    if (!same) {
      this.jobs = merged;
    }
    this.total = total;
  }

  /**
   * Notify jobs that went from a non-final to a final status since last seen
   * (by the list poll, the detail view or a submit) — never a job first seen final.
   */
  private _observe(jobs: IJob[]): void {
    const me = this.me?.name;
    for (const job of jobs) {
      const before = this._lastStatus.get(job.id);
      this._lastStatus.set(job.id, job.status);
      if (
        before !== undefined &&
        !isFinal(before) &&
        isFinal(job.status) &&
        !this._notified.has(job.id) &&
        (!me || !job.user || job.user === me)
      ) {
        this._notified.add(job.id);
        try {
          this._onJobFinished?.(job);
        } catch (error) {
          console.error('hpcbridge: notification failed', error);
        }
      }
    }
  }

  private _changed = new Signal<this, void>(this);
  private _jobReceived = new Signal<this, IJob>(this);
  private _logReceived = new Signal<this, ILogMessage>(this);
  private _stream: JobStream | null;
  private _clock: ReturnType<typeof setInterval> | null = null;
  private _clockInterval: number;
  private _debounce: { [name: string]: ReturnType<typeof setTimeout> } = {};
  private _disposed = false;
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _loop = 0;
  private _nonce = 0;
  private _interval: number;
  private _backgroundInterval: number;
  private _slowEvery: number;
  private _onJobFinished?: (job: IJob) => void;
  private _lastStatus = new Map<string, string>();
  private _notified = new Set<string>();
  private _sweepsWanted = false;
}

/** `job` is an older state of `than` (by `updated_at`; unknown times are not older). */
export function isOlder(job: IJob, than: IJob): boolean {
  const a = Date.parse(job.updated_at ?? '');
  const b = Date.parse(than.updated_at ?? '');
  return Number.isFinite(a) && Number.isFinite(b) && a < b;
}

export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) {
    return error;
  }
  return new ApiError(0, 'client', (error as Error)?.message || String(error));
}
