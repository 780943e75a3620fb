/**
 * Every HTTP call of the panel. The Jupyter server extension
 * (`hpcbridge.jupyter_ext`) forwards `<base>/hpcbridge/api/<path>` to the
 * middleware's `/api/v1/<path>` and serves `<base>/hpcbridge/local/...` itself.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { ApiError } from './errors';
import { ILogChunk } from './logs';
import { JobStatus } from './status';
import { IFieldError, IParamRule, IResourceRule } from './validate';

export { ApiError, IFieldError, IParamRule, IResourceRule };

export interface IQuota {
  limit_seconds: number | null;
  used_seconds: number;
}

export interface IMe {
  name: string;
  admin: boolean;
  quota: IQuota;
}

export interface IHpc {
  id: string;
  name: string;
  scheduler: string;
  partitions: string[];
  capacity: number;
  active_jobs: number;
  /** null: not checked yet. */
  reachable: boolean | null;
  draining: boolean;
  message: string | null;
}

export interface IApp {
  id: string;
  name: string;
  description: string;
  container: string;
  supported_hpc: string[];
  default_hpc: string;
  require_upload_data: boolean;
  param_rules: { [name: string]: IParamRule };
  slurm_input_rules: { [name: string]: IResourceRule };
}

export interface IJob {
  id: string;
  user: string;
  app: string;
  hpc: string;
  status: JobStatus;
  message: string | null;
  params: { [name: string]: unknown };
  resources: { [name: string]: unknown };
  scheduler_id: string | null;
  exit_code: number | null;
  cancel_requested: boolean;
  created_at: string | null;
  queued_at: string | null;
  submitted_at: string | null;
  started_at: string | null;
  finished_at: string | null;
  updated_at: string | null;
}

export interface IJobList {
  jobs: IJob[];
  total: number;
}

export interface IJobFilters {
  status?: string;
  app?: string;
  hpc?: string;
  limit?: number;
  offset?: number;
}

export interface IJobEvent {
  time: string;
  type: string;
  message: string | null;
}

export type LogStream = 'stdout' | 'stderr';

export interface ILogAnswer extends ILogChunk {
  stream: LogStream;
}

export interface IResult {
  path: string;
  size: number;
  is_dir: boolean;
}

export interface ISubmitRequest {
  app: string;
  hpc: string;
  params: { [name: string]: unknown };
  resources: { [name: string]: unknown };
  upload: string | null;
}

export interface IUpload {
  id: string;
  name: string;
  size: number;
}

export interface IDownload {
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

  submitJob(body: ISubmitRequest): Promise<IJob> {
    return this.post<IJob>('api', 'jobs', body);
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

  /** Package a file or folder (relative to the Jupyter root) for a job; → upload id. */
  upload(path: string): Promise<IUpload> {
    return this.post<IUpload>('local', 'upload', { path });
  }

  /** Fetch a job's results into the Jupyter root; → the folder they were written to. */
  download(jobId: string): Promise<IDownload> {
    return this.post<IDownload>('local', 'download', { job_id: jobId });
  }
}
