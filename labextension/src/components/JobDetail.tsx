import * as React from 'react';

import { Dialog, showDialog } from '@jupyterlab/apputils';

import { IJob, IJobEvent, IResult } from '../api';
import { actionMessage } from '../errors';
import { isOlder, PanelModel, toApiError } from '../model';
import { isCancellable, isFinal, shortId } from '../status';
import { absoluteTime, formatBytes, formatDuration, relativeTime, secondsBetween } from '../time';
import { useMounted, usePolling } from './hooks';
import { LogView } from './LogView';
import { StatusBadge } from './StatusBadge';

export interface IDetailHost {
  /** Show a folder (relative to the Jupyter root) in the file browser. */
  openInFileBrowser: (path: string) => Promise<void>;
}

function sameJob(a: IJob, b: IJob): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function Time(props: { value: string | null; now: number }): JSX.Element {
  return <span title={absoluteTime(props.value)}>{relativeTime(props.value, props.now)}</span>;
}

function KeyValues(props: { title: string; values: { [k: string]: unknown } }): JSX.Element | null {
  const entries = Object.entries(props.values ?? {});
  if (entries.length === 0) {
    return null;
  }
  return (
    <div className="hpcbridge-section">
      <h3>{props.title}</h3>
      <dl className="hpcbridge-kv">
        {entries.map(([k, v]) => (
          <React.Fragment key={k}>
            <dt>{k}</dt>
            <dd>{typeof v === 'string' ? v : JSON.stringify(v)}</dd>
          </React.Fragment>
        ))}
      </dl>
    </div>
  );
}

export function JobDetail(props: {
  model: PanelModel;
  host: IDetailHost;
  jobId: string;
}): JSX.Element {
  const { model, host, jobId } = props;
  const api = model.api;
  const mounted = useMounted();
  const [job, setJob] = React.useState<IJob | null>(
    () => model.jobs.find(j => j.id === jobId) ?? null
  );
  const [events, setEvents] = React.useState<IJobEvent[]>([]);
  const [loadError, setLoadError] = React.useState<string | null>(null);
  const [actionError, setActionError] = React.useState<string | null>(null);
  const [results, setResults] = React.useState<IResult[] | null>(null);
  const [cancelling, setCancelling] = React.useState(false);
  const [downloading, setDownloading] = React.useState(false);
  const [downloaded, setDownloaded] = React.useState<string | null>(null);
  const [polledAt, setNow] = React.useState(Date.now());
  // the model's clock (or the list's poll) keeps relative times fresh after this view stops
  const now = Math.max(polledAt, model.now);
  const finalSince = React.useRef<number | null>(null);

  const final = !!job && isFinal(job.status);
  if (final && finalSince.current === null) {
    finalSince.current = Date.now();
  }

  const live = model.live;

  /** Load the job and its events once; false when there is nothing more to wait for. */
  const load = async (): Promise<boolean> => {
    try {
      const [j, ev] = await Promise.all([api.getJob(jobId), api.events(jobId)]);
      if (!mounted.current) {
        return false;
      }
      setJob(prev => (prev && (isOlder(j, prev) || sameJob(prev, j)) ? prev : j));
      setEvents(prev => (JSON.stringify(prev) === JSON.stringify(ev) ? prev : ev));
      setLoadError(null);
      setNow(Date.now());
      model.upsertJob(j);
      return !isFinal(j.status);
    } catch (e) {
      const err = toApiError(e);
      if (mounted.current) {
        setLoadError(err.status === 404 ? `Job ${jobId} not found.` : actionMessage(err));
      }
      return err.status !== 404;
    }
  };
  const loadRef = React.useRef(load);
  loadRef.current = load;

  // Without the event stream: every 2 s until the job is final (then once more for the last events).
  usePolling(load, 2000, model.visible && !live, jobId);

  // With it: once when opened, shown or (re)connected; then on the stream's messages of
  // this job, which carry the job itself (the events list is fetched once per message).
  React.useEffect(() => {
    if (live && model.visible) {
      void loadRef.current();
    }
  }, [live, model.visible, jobId]);

  React.useEffect(() => {
    if (!live) {
      return;
    }
    let timer: ReturnType<typeof setTimeout> | null = null;
    const loadEvents = async () => {
      timer = null;
      try {
        const ev = await api.events(jobId);
        if (mounted.current) {
          setEvents(prev => (JSON.stringify(prev) === JSON.stringify(ev) ? prev : ev));
        }
      } catch (e) {
        console.warn('hpcbridge: loading the job events failed', e);
      }
    };
    const onJob = (_: unknown, j: IJob) => {
      if (j.id !== jobId || !mounted.current) {
        return;
      }
      setJob(prev => (prev && (isOlder(j, prev) || sameJob(prev, j)) ? prev : j));
      setNow(Date.now());
      // several messages in a burst (a batch of transitions): one request
      if (timer === null) {
        timer = setTimeout(() => void loadEvents(), 300);
      }
    };
    model.jobReceived.connect(onJob);
    return () => {
      model.jobReceived.disconnect(onJob);
      if (timer !== null) {
        clearTimeout(timer);
      }
    };
  }, [live, model, api, jobId, mounted]);

  const loadResults = React.useCallback(async () => {
    try {
      const r = await api.results(jobId);
      if (mounted.current) {
        setResults(r);
      }
    } catch (e) {
      if (mounted.current) {
        setResults([]);
        const err = toApiError(e);
        if (err.status !== 404) {
          setActionError(`Could not list the results: ${actionMessage(err)}`);
        }
      }
    }
  }, [api, jobId, mounted]);

  React.useEffect(() => {
    if (final) {
      void loadResults();
    }
  }, [final, loadResults]);

  const cancel = async () => {
    if (!job) {
      return;
    }
    const answer = await showDialog({
      title: 'Cancel job?',
      body: `Cancel job ${shortId(job.id)} (${model.appName(job.app)} on ${model.hpcName(job.hpc)})? It stops on the HPC and cannot be resumed.`,
      buttons: [
        Dialog.cancelButton({ label: 'Keep running' }),
        Dialog.warnButton({ label: 'Cancel job' })
      ]
    });
    if (!answer.button.accept || !mounted.current) {
      return;
    }
    setCancelling(true);
    setActionError(null);
    try {
      const updated = await api.cancel(job.id);
      if (mounted.current) {
        setJob(updated);
      }
      model.upsertJob(updated);
    } catch (e) {
      if (mounted.current) {
        setActionError(`Cancel failed: ${actionMessage(toApiError(e))}`);
      }
    } finally {
      if (mounted.current) {
        setCancelling(false);
      }
    }
  };

  const download = async () => {
    setDownloading(true);
    setActionError(null);
    try {
      const { path } = await api.download(jobId);
      if (!mounted.current) {
        return;
      }
      setDownloaded(path);
      await host.openInFileBrowser(path);
    } catch (e) {
      if (mounted.current) {
        setActionError(`Download failed: ${actionMessage(toApiError(e))}`);
      }
    } finally {
      if (mounted.current) {
        setDownloading(false);
      }
    }
  };

  if (!job) {
    return (
      <div className="hpcbridge-detail">
        {loadError ? (
          <div className="hpcbridge-inline-error" role="alert">
            {loadError}
          </div>
        ) : (
          <div className="hpcbridge-muted">Loading job…</div>
        )}
      </div>
    );
  }

  const waited = secondsBetween(
    job.created_at,
    job.started_at ?? (final ? job.finished_at : null),
    now
  );
  const ran = job.started_at ? secondsBetween(job.started_at, job.finished_at, now) : null;

  return (
    <div className="hpcbridge-detail" data-job-id={job.id}>
      <div className="hpcbridge-detail-head">
        <div className="hpcbridge-detail-title">
          <span className="hpcbridge-job-app">{model.appName(job.app)}</span>
          <span className="hpcbridge-muted"> on {model.hpcName(job.hpc)}</span>
        </div>
        <StatusBadge status={job.status} testid="hpcbridge-job-status" />
      </div>
      <div className="hpcbridge-job-id-full" title="job id">
        {job.id}
      </div>
      {job.message && <div className="hpcbridge-job-message">{job.message}</div>}
      {loadError && <div className="hpcbridge-inline-error">{loadError}</div>}

      <div className="hpcbridge-actions">
        {!final && (
          <button
            type="button"
            className="jp-mod-styled jp-mod-warn"
            data-testid="hpcbridge-cancel"
            disabled={cancelling || !isCancellable(job.status, job.cancel_requested)}
            onClick={() => void cancel()}
          >
            {job.cancel_requested ? 'Cancel requested…' : cancelling ? 'Cancelling…' : 'Cancel job'}
          </button>
        )}
        {final && (
          <button
            type="button"
            className="jp-mod-styled jp-mod-accept"
            data-testid="hpcbridge-download"
            disabled={downloading}
            onClick={() => void download()}
          >
            {downloading ? 'Downloading…' : 'Download to home'}
          </button>
        )}
      </div>
      {actionError && (
        <div className="hpcbridge-inline-error" role="alert" data-testid="hpcbridge-action-error">
          {actionError}
        </div>
      )}
      {downloaded && (
        <div className="hpcbridge-downloaded" data-testid="hpcbridge-downloaded">
          Results are in{' '}
          <a
            href="#"
            onClick={e => {
              e.preventDefault();
              void host.openInFileBrowser(downloaded);
            }}
          >
            {downloaded}
          </a>
        </div>
      )}

      <div className="hpcbridge-section">
        <h3>Timing</h3>
        <dl className="hpcbridge-kv">
          <dt>Created</dt>
          <dd>
            <Time value={job.created_at} now={now} />
          </dd>
          <dt>Queued</dt>
          <dd>
            <Time value={job.queued_at} now={now} />
          </dd>
          <dt>Submitted</dt>
          <dd>
            <Time value={job.submitted_at} now={now} />
          </dd>
          <dt>Started</dt>
          <dd>
            <Time value={job.started_at} now={now} />
          </dd>
          <dt>Finished</dt>
          <dd>
            <Time value={job.finished_at} now={now} />
          </dd>
          <dt>Waited</dt>
          <dd>{formatDuration(waited)}</dd>
          <dt>Ran</dt>
          <dd>{formatDuration(ran)}</dd>
          {job.scheduler_id && (
            <>
              <dt>Scheduler id</dt>
              <dd>{job.scheduler_id}</dd>
            </>
          )}
          {job.exit_code !== null && job.exit_code !== undefined && (
            <>
              <dt>Exit code</dt>
              <dd data-testid="hpcbridge-exit-code">{job.exit_code}</dd>
            </>
          )}
        </dl>
      </div>

      <div className="hpcbridge-section">
        <h3>Output</h3>
        <LogView
          api={api}
          jobId={job.id}
          final={final}
          finalSince={finalSince.current}
          visible={model.visible}
          live={live}
          logReceived={model.logReceived}
        />
      </div>

      {final && (
        <div className="hpcbridge-section">
          <h3>
            Results{' '}
            <button
              type="button"
              className="hpcbridge-link-button"
              onClick={() => void loadResults()}
            >
              refresh
            </button>
          </h3>
          {results === null ? (
            <div className="hpcbridge-muted">Loading…</div>
          ) : results.length === 0 ? (
            <div className="hpcbridge-muted">No results.</div>
          ) : (
            <ul className="hpcbridge-results" data-testid="hpcbridge-results">
              {results.map(r => (
                <li key={r.path}>
                  <span className="hpcbridge-result-path">{r.path + (r.is_dir ? '/' : '')}</span>
                  {!r.is_dir && <span className="hpcbridge-muted">{formatBytes(r.size)}</span>}
                </li>
              ))}
            </ul>
          )}
        </div>
      )}

      <div className="hpcbridge-section">
        <h3>Events</h3>
        {events.length === 0 ? (
          <div className="hpcbridge-muted">No events yet.</div>
        ) : (
          <ol className="hpcbridge-events" data-testid="hpcbridge-events">
            {events.map((ev, i) => (
              <li key={`${ev.time}-${i}`} className="hpcbridge-event" data-type={ev.type}>
                <span className="hpcbridge-event-time" title={absoluteTime(ev.time)}>
                  {relativeTime(ev.time, now)}
                </span>
                <span className="hpcbridge-event-type">{ev.type}</span>
                {ev.message && <span className="hpcbridge-event-message">{ev.message}</span>}
              </li>
            ))}
          </ol>
        )}
      </div>

      <KeyValues title="Parameters" values={job.params} />
      <KeyValues title="Resources" values={job.resources} />
    </div>
  );
}
