import * as React from 'react';

import { PanelModel } from '../model';
import { formatDuration } from '../time';
import { ErrorBanner, StreamNotice } from './ErrorBanner';
import { IDetailHost, JobDetail } from './JobDetail';
import { JobList } from './JobList';
import { ISessionsHost, SessionsView } from './SessionsView';
import { ISubmitHost, SubmitForm } from './SubmitForm';

export interface IPanelHost extends IDetailHost, ISubmitHost, ISessionsHost {}

/** The panel's top-level views: batch jobs and interactive sessions. */
function Nav(props: { model: PanelModel }): JSX.Element {
  const { model } = props;
  const sessions = model.view.kind === 'sessions';
  const tab = (label: string, active: boolean, testid: string, go: () => void) => (
    <button
      type="button"
      role="tab"
      aria-selected={active}
      className={`hpcbridge-tab${active ? ' hpcbridge-tab-active' : ''}`}
      data-testid={testid}
      onClick={go}
    >
      {label}
    </button>
  );
  return (
    <div className="hpcbridge-tabs" role="tablist">
      {tab('Jobs', !sessions, 'hpcbridge-nav-jobs', () => model.navigate({ kind: 'list' }))}
      {tab('Sessions', sessions, 'hpcbridge-nav-sessions', () =>
        model.navigate({ kind: 'sessions' })
      )}
    </div>
  );
}

function Quota(props: { model: PanelModel }): JSX.Element | null {
  const me = props.model.me;
  if (!me) {
    return null;
  }
  const q = me.quota;
  const used = formatDuration(q?.used_seconds ?? 0);
  const text =
    q && q.limit_seconds !== null && q.limit_seconds !== undefined
      ? `${used} of ${formatDuration(q.limit_seconds)} used`
      : `${used} used`;
  return (
    <div className="hpcbridge-quota" data-testid="hpcbridge-quota" title="HPC time used">
      {me.name}
      {me.admin ? ' (admin)' : ''} · {text}
    </div>
  );
}

export function App(props: { model: PanelModel; host: IPanelHost }): JSX.Element {
  const { model, host } = props;
  const view = model.view;
  const title =
    view.kind === 'submit'
      ? 'New job'
      : view.kind === 'detail'
        ? ''
        : view.kind === 'sessions'
          ? 'Interactive sessions'
          : 'HPC Jobs';
  return (
    <div className="hpcbridge-root" data-stream={model.streamState}>
      <div className="hpcbridge-header">
        {view.kind !== 'list' && view.kind !== 'sessions' && (
          <button
            type="button"
            className="hpcbridge-back jp-mod-styled"
            data-testid="hpcbridge-back"
            title="Back to the job list"
            onClick={() => model.navigate({ kind: 'list' })}
          >
            ← Jobs
          </button>
        )}
        <h2 className="hpcbridge-title">{title}</h2>
        {view.kind !== 'submit' && view.kind !== 'sessions' && (
          <button
            type="button"
            className="jp-mod-styled jp-mod-accept hpcbridge-new-job"
            data-testid="hpcbridge-new-job"
            onClick={() => model.openSubmit()}
          >
            New job
          </button>
        )}
      </div>
      <Nav model={model} />
      {view.kind === 'list' && <Quota model={model} />}
      <ErrorBanner model={model} />
      {view.kind !== 'sessions' && view.kind !== 'submit' && <StreamNotice model={model} />}
      <div className="hpcbridge-body">
        {view.kind === 'list' && <JobList model={model} />}
        {view.kind === 'submit' && (
          <SubmitForm
            key={view.nonce}
            model={model}
            host={host}
            initialUpload={view.upload}
            initialApp={view.app}
          />
        )}
        {view.kind === 'sessions' && <SessionsView model={model} host={host} />}
        {view.kind === 'detail' && (
          <JobDetail key={view.jobId} model={model} host={host} jobId={view.jobId} />
        )}
      </div>
    </div>
  );
}
