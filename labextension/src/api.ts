/**
 * Every HTTP call of the panel. The Jupyter server extension
 * (`hpcbridge.jupyter_ext`) forwards `<base>/hpcbridge/api/<path>` to the
 * middleware's `/api/v1/<path>` and serves `<base>/hpcbridge/local/...` itself.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type { components, operations } from './api-types';
import { ApiError } from './errors';
import { IFieldError, IParamRule, IResourceRule } from './validate';

/** A random key for one submission (crypto.getRandomValues works outside secure contexts). */
export function newIdempotencyKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, b => b.toString(16).padStart(2, '0')).join('');
}

export { ApiError, IFieldError, IParamRule, IResourceRule };

/*
 * The middleware's models, generated from its OpenAPI document into
 * api-types.ts (scripts/gen-api-types.sh); never written here by hand.
 */
type Schemas = components['schemas'];

export type IQuota = Schemas['Quota'];
export type IMe = Schemas['Me'];
export type IHpc = Schemas['HPCInfo'];
export type IApp = Schemas['AppInfo'];
export type IJob = Schemas['JobInfo'];
export type IJobList = Schemas['JobList'];
export type IJobEvent = Schemas['EventInfo'];
export type ILogAnswer = Schemas['LogChunk'];
export type LogStream = ILogAnswer['stream'];
export type IResult = Schemas['ResultEntry'];
export type ISubmitRequest = Schemas['JobCreate'];
export type IUpload = Schemas['UploadInfo'];
export type ISession = Schemas['SessionInfo'];
export type ISessionCreate = Schemas['SessionCreate'];
export type ISessionQuota = Schemas['SessionQuota'];
export type ISweep = Schemas['SweepInfo'];
export type ISweepCreate = Schemas['SweepCreate'];
export type ISweepList = Schemas['SweepList'];
export type IGridRange = Schemas['GridRange'];

/** `GET jobs` filters; the panel sends one status (the API also takes a comma list). */
export type IJobFilters = Omit<
  NonNullable<operations['get_jobs']['parameters']['query']>,
  'status'
> & {
  status?: string;
};

/** `POST local/download`: served by the Jupyter server extension, not the middleware. */
export interface IDownload {
  /** The folder, relative to the Jupyter root, the results were written to. */
  path: string;
}

export type Kind = 'api' | 'local';

/** The HTTP client of the panel; one per JupyterLab page. */
export class HpcBridgeApi {
  constructor(readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()) {}

  /** URL of an endpoint: `<base>/hpcbridge/<kind>/<path>`. */
  url(kind: Kind, path: string, query?: { [key: string]: unknown }): string {
    let url = URLExt.join(this.settings.baseUrl, 'hpcbridge', kind, path);
    if (query) {
      const q: { [key: string]: string } = {};
      for (const [k, v] of Object.entries(query)) {
        if (v !== undefined && v !== null && v !== '') {
          q[k] = String(v);
        }
      }
      const qs = URLExt.objectToQueryString(q);
      if (qs && qs !== '?') {
        url += qs;
      }
    }
    return url;
  }

  async request<T>(
    kind: Kind,
    path: string,
    init: RequestInit = {},
    query?: { [key: string]: unknown }
  ): Promise<T> {
    const url = this.url(kind, path, query);
    const headers = new Headers(init.headers ?? {});
    if (init.body !== undefined && !headers.has('Content-Type')) {
      headers.set('Content-Type', 'application/json');
    }
    headers.set('Accept', 'application/json');
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, { ...init, headers }, this.settings);
    } catch (error) {
      throw new ApiError(0, 'network', (error as Error)?.message || 'network error');
    }
    if (!response.ok) {
      throw await ApiError.fromResponse(response);
    }
    if (response.status === 204) {
      return undefined as unknown as T;
    }
    const text = await response.text();
    if (!text) {
      return undefined as unknown as T;
    }
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ApiError(response.status, 'bad_response', 'the server did not answer JSON');
    }
  }

  private get<T>(path: string, query?: { [key: string]: unknown }): Promise<T> {
    return this.request<T>('api', path, { method: 'GET' }, query);
  }

  private post<T>(kind: Kind, path: string, body: unknown): Promise<T> {
    return this.request<T>(kind, path, { method: 'POST', body: JSON.stringify(body ?? {}) });
  }

  me(): Promise<IMe> {
    return this.get<IMe>('me');
  }

  hpcs(): Promise<IHpc[]> {
    return this.get<IHpc[]>('hpcs');
  }

  apps(): Promise<IApp[]> {
    return this.get<IApp[]>('apps');
  }

  listJobs(filters: IJobFilters = {}): Promise<IJobList> {
    return this.get<IJobList>('jobs', { ...filters });
  }

  getJob(id: string): Promise<IJob> {
    return this.get<IJob>(`jobs/${encodeURIComponent(id)}`);
  }

  /**
   * Submit a job. The request carries an `Idempotency-Key`: when the answer is lost
   * (status 0), the same request is sent again with the same key, and the middleware
   * answers with the job the first one made instead of making a second.
   */
  async submitJob(body: ISubmitRequest, attempts = 3): Promise<IJob> {
    const init = {
      method: 'POST',
      body: JSON.stringify(body),
      headers: { 'Idempotency-Key': newIdempotencyKey() }
    };
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.request<IJob>('api', 'jobs', init);
      } catch (error) {
        if (!(error instanceof ApiError) || error.status !== 0 || attempt >= attempts) {
          throw error;
        }
      }
    }
  }

  events(id: string): Promise<IJobEvent[]> {
    return this.get<IJobEvent[]>(`jobs/${encodeURIComponent(id)}/events`);
  }

  logs(id: string, stream: LogStream, offset: number): Promise<ILogAnswer> {
    return this.get<ILogAnswer>(`jobs/${encodeURIComponent(id)}/logs`, { stream, offset });
  }

  cancel(id: string): Promise<IJob> {
    return this.post<IJob>('api', `jobs/${encodeURIComponent(id)}/cancel`, {});
  }

  results(id: string): Promise<IResult[]> {
    return this.get<IResult[]>(`jobs/${encodeURIComponent(id)}/results`);
  }

  listSweeps(limit = 50): Promise<ISweepList> {
    return this.get<ISweepList>('sweeps', { limit });
  }

  getSweep(id: string): Promise<ISweep> {
    return this.get<ISweep>(`sweeps/${encodeURIComponent(id)}`);
  }

  /** Submit a sweep: one job per parameter set, every set checked before any is made. */
  submitSweep(body: ISweepCreate): Promise<ISweep> {
    return this.request<ISweep>('api', 'sweeps', { method: 'POST', body: JSON.stringify(body) });
  }

  cancelSweep(id: string): Promise<ISweep> {
    return this.post<ISweep>('api', `sweeps/${encodeURIComponent(id)}/cancel`, {});
  }

  listSessions(): Promise<ISession[]> {
    return this.get<ISession[]>('sessions');
  }

  getSession(id: string): Promise<ISession> {
    return this.get<ISession>(`sessions/${encodeURIComponent(id)}`);
  }

  /** Start an interactive session; its `url` is where the browser opens it. */
  startSession(body: ISessionCreate): Promise<ISession> {
    return this.post<ISession>('api', 'sessions', body);
  }

  stopSession(id: string): Promise<ISession> {
    return this.request<ISession>('api', `sessions/${encodeURIComponent(id)}`, {
      method: 'DELETE'
    });
  }

  keepalive(id: string): Promise<void> {
    return this.post<void>('api', `sessions/${encodeURIComponent(id)}/keepalive`, {});
  }

  sessionEvents(id: string): Promise<IJobEvent[]> {
    return this.get<IJobEvent[]>(`sessions/${encodeURIComponent(id)}/events`);
  }

  sessionQuota(): Promise<ISessionQuota> {
    return this.get<ISessionQuota>('sessions/quota');
  }

  /** Package a file or folder (relative to the Jupyter root) for a job; → upload id. */
  upload(path: string): Promise<IUpload> {
    return this.post<IUpload>('local', 'upload', { path });
  }

  /** Fetch a job's results into the Jupyter root; → the folder they were written to. */
  download(jobId: string): Promise<IDownload> {
    return this.post<IDownload>('local', 'download', { job_id: jobId });
  }
}
