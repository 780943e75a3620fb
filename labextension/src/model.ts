/**
 * The panel's state outside React: which view is shown, the job list and its
 * 3 s poll, HPCs, apps and the current user. React views render from it and
 * re-render when `changed` fires.
 */
import { ISignal, Signal } from '@lumino/signaling';

import type { HpcBridgeApi, IApp, IHpc, IJob, IMe, ISweep } from './api';
import { ApiError } from './errors';
import { isFinal } from './status';

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
}

export class PanelModel {
  constructor(options: IPanelModelOptions) {
    this.api = options.api;
    this._onJobFinished = options.onJobFinished;
    this._interval = options.pollInterval ?? 3000;
    this._backgroundInterval = options.backgroundInterval ?? 15000;
    this._slowEvery = options.slowEvery ?? 5;
    this.pageSize = options.pageSize ?? 200;
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

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  dispose(): void {
    this._disposed = true;
    this._stop();
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
   * The panel became visible or hidden. Shown: poll now, then every 3 s.
   * Hidden: the running loop slows down to the background interval and stops
   * once no known job is active.
   */
  setVisible(visible: boolean): void {
    if (visible === this.visible) {
      return;
    }
    this.visible = visible;
    if (visible) {
      this._restart();
    } else if (!this.hasActiveJobs) {
      this._stop();
    }
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

  /** Put a job we learned about elsewhere (submit, detail view) into the list. */
  upsertJob(job: IJob): void {
    this._observe([job]);
    const i = this.jobs.findIndex(j => j.id === job.id);
    if (i >= 0) {
      if (JSON.stringify(this.jobs[i]) === JSON.stringify(job)) {
        return;
      }
      this.jobs = [...this.jobs.slice(0, i), job, ...this.jobs.slice(i + 1)];
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
    this._observe(jobs);
    const old = new Map(this.jobs.map(j => [j.id, j]));
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

export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) {
    return error;
  }
  return new ApiError(0, 'client', (error as Error)?.message || String(error));
}
