import * as React from 'react';

import type { IApp, ISession, ISessionQuota } from '../api';
import { actionMessage, describeError } from '../errors';
import { PanelModel, toApiError } from '../model';
import {
  canOpen,
  canStop,
  quotaLeft,
  serviceApps,
  sessionLabel,
  sessionTimeLeft,
  sortSessions
} from '../sessions';
import { shortId } from '../status';
import {
  buildSubmission,
  defaultValues,
  fieldKeys,
  IFormValues,
  placeServerErrors
} from '../submission';
import { formatDuration, relativeTime } from '../time';
import { errorsByField, validateSubmission } from '../validate';
import { AppField, HpcField } from './fields/ChoiceFields';
import { ParamFields } from './fields/ParamFields';
import { ResourceFields } from './fields/ResourceFields';
import { useMounted, usePolling } from './hooks';
import { StatusBadge } from './StatusBadge';

/** ms between polls of the sessions while the view is shown. */
const POLL_MS = 2000;

export interface ISessionsHost {
  /** Open a URL in a new browser tab (window.open by default). */
  openUrl?: (url: string) => void;
}

interface ISessionsState {
  sessions: ISession[];
  quota: ISessionQuota | null;
  loaded: boolean;
  error: string | null;
}

/** The Sessions view: start an interactive session, see its status live, open and stop it. */
export function SessionsView(props: { model: PanelModel; host: ISessionsHost }): JSX.Element {
  const { model } = props;
  const [state, setState] = React.useState<ISessionsState>({
    sessions: [],
    quota: null,
    loaded: false,
    error: null
  });
  const [now, setNow] = React.useState(Date.now());
  const poll = async () => {
    const [list, quota] = await Promise.allSettled([
      model.api.listSessions(),
      model.api.sessionQuota()
    ]);
    setNow(Date.now());
    setState(s => ({
      sessions: list.status === 'fulfilled' ? sortSessions(list.value) : s.sessions,
      quota: quota.status === 'fulfilled' ? quota.value : s.quota,
      loaded: s.loaded || list.status === 'fulfilled',
      error: list.status === 'rejected' ? describeError(toApiError(list.reason)) : null
    }));
  };
  const [nonce, setNonce] = React.useState(0);
  usePolling(poll, POLL_MS, model.visible, `sessions-${nonce}`);
  const upsert = (session: ISession) => {
    setState(s => ({
      ...s,
      sessions: sortSessions([session, ...s.sessions.filter(x => x.id !== session.id)])
    }));
    setNonce(n => n + 1); // poll again now
  };
  const open = (session: ISession) =>
    (props.host.openUrl ?? (url => window.open(url, '_blank')))(session.url);

  return (
    <div className="hpcbridge-sessions" data-testid="hpcbridge-sessions">
      <QuotaLine quota={state.quota} />
      <StartForm model={model} onStarted={upsert} />
      <h3 className="hpcbridge-section-title">Your sessions</h3>
      {state.error && (
        <div className="hpcbridge-form-error" data-testid="hpcbridge-sessions-error" role="alert">
          {state.error}
        </div>
      )}
      {!state.loaded && !state.error && <div className="hpcbridge-muted">Loading sessions…</div>}
      {state.loaded && state.sessions.length === 0 && (
        <div className="hpcbridge-empty">No sessions yet</div>
      )}
      <ul className="hpcbridge-session-list" aria-label="Interactive sessions">
        {state.sessions.map(s => (
          <SessionRow
            key={s.id}
            session={s}
            now={now}
            appName={model.appName(s.app)}
            hpcName={model.hpcName(s.hpc)}
            onOpen={() => open(s)}
            onStopped={upsert}
            model={model}
          />
        ))}
      </ul>
    </div>
  );
}

function QuotaLine(props: { quota: ISessionQuota | null }): JSX.Element | null {
  const q = props.quota;
  if (!q) {
    return null;
  }
  const left = quotaLeft(q);
  const used = formatDuration(q.used_seconds ?? 0);
  const text =
    left === null
      ? `${used} of session time used`
      : `${used} of ${formatDuration(q.limit_seconds)} used · ${formatDuration(left)} left`;
  return (
    <div className="hpcbridge-quota" data-testid="hpcbridge-session-quota">
      Session time: {text}
    </div>
  );
}

function SessionRow(props: {
  session: ISession;
  now: number;
  appName: string;
  hpcName: string;
  model: PanelModel;
  onOpen: () => void;
  onStopped: (session: ISession) => void;
}): JSX.Element {
  const { session: s } = props;
  const mounted = useMounted();
  const [error, setError] = React.useState<string | null>(null);
  const [stopping, setStopping] = React.useState(false);
  const left = sessionTimeLeft(s, props.now);
  const stop = async () => {
    setStopping(true);
    try {
      props.onStopped(await props.model.api.stopSession(s.id));
      setError(null);
    } catch (e) {
      if (mounted.current) {
        setError(actionMessage(toApiError(e)));
      }
    }
    if (mounted.current) {
      setStopping(false);
    }
  };
  return (
    <li
      className="hpcbridge-session-row"
      data-testid="hpcbridge-session-row"
      data-session-id={s.id}
      data-status={s.status}
    >
      <div className="hpcbridge-job-row-main">
        <span className="hpcbridge-job-app">{props.appName}</span>
        <StatusBadge status={s.status} testid="hpcbridge-session-status" />
      </div>
      <div className="hpcbridge-job-row-sub">
        <span className="hpcbridge-job-id">{shortId(s.id)}</span>
        <span>{props.hpcName}</span>
        <span title={sessionLabel(s.status)}>{relativeTime(s.created_at, props.now)}</span>
        {left !== null && (
          <span data-testid="hpcbridge-session-left" title="until the scheduler's time limit">
            {formatDuration(left)} left
          </span>
        )}
      </div>
      {s.message && (
        <div className="hpcbridge-session-message" data-testid="hpcbridge-session-message">
          {s.message}
        </div>
      )}
      {error && (
        <div className="hpcbridge-form-error" role="alert">
          {error}
        </div>
      )}
      <div className="hpcbridge-session-actions">
        <button
          type="button"
          className="jp-mod-styled jp-mod-accept"
          data-testid="hpcbridge-session-open"
          disabled={!canOpen(s)}
          title={canOpen(s) ? 'Open in a new browser tab' : 'Opens once it is running'}
          onClick={props.onOpen}
        >
          Open
        </button>
        <button
          type="button"
          className="jp-mod-styled jp-mod-warn"
          data-testid="hpcbridge-session-stop"
          disabled={!canStop(s) || stopping}
          onClick={() => void stop()}
        >
          {stopping ? 'Stopping…' : 'Stop'}
        </button>
      </div>
    </li>
  );
}

interface IFormState {
  appId: string | null;
  values: IFormValues;
  attempted: boolean;
  serverErrors: { [key: string]: string };
  formError: string | null;
  busy: boolean;
}

function fresh(app: IApp | null): IFormState {
  return {
    appId: app?.id ?? null,
    values: defaultValues(app, ''),
    attempted: false,
    serverErrors: {},
    formError: null,
    busy: false
  };
}

/** The start form: a service app, its HPC, parameters and resources. */
function StartForm(props: {
  model: PanelModel;
  onStarted: (session: ISession) => void;
}): JSX.Element {
  const { model } = props;
  const mounted = useMounted();
  React.useEffect(() => {
    void model.loadApps();
  }, [model]);
  const apps = serviceApps(model.apps);
  const [appId, setAppId] = React.useState('');
  const app = apps.find(a => a.id === appId) ?? apps[0] ?? null;
  const [stored, setStored] = React.useState(() => fresh(app));
  let state = stored;
  if (stored.appId !== (app?.id ?? null)) {
    state = fresh(app);
    setStored(state);
  }
  if (!model.appsLoaded) {
    return <div className="hpcbridge-muted">Loading apps…</div>;
  }
  if (!app) {
    return <div className="hpcbridge-empty">No session apps are configured.</div>;
  }
  const request = buildSubmission(state.values, app);
  const clientErrors = errorsByField(validateSubmission(app, request));
  const errorFor = (key: string) =>
    state.serverErrors[key] ?? (state.attempted ? clientErrors[key] : undefined);
  const change = (update: (v: IFormValues) => IFormValues) =>
    setStored(s => ({ ...s, values: update(s.values), serverErrors: {} }));

  const start = async (event: React.FormEvent) => {
    event.preventDefault();
    if (Object.keys(clientErrors).length > 0) {
      setStored(s => ({ ...s, attempted: true, formError: 'Please fix the highlighted fields.' }));
      return;
    }
    setStored(s => ({ ...s, attempted: true, busy: true, formError: null, serverErrors: {} }));
    try {
      const { app: id, hpc, params, resources } = request;
      const session = await model.api.startSession({ app: id, hpc, params, resources });
      props.onStarted(session);
      if (mounted.current) {
        setStored(s => ({ ...s, busy: false }));
      }
    } catch (error) {
      if (mounted.current) {
        const placed = placeServerErrors(toApiError(error), fieldKeys(app));
        setStored(s => ({
          ...s,
          busy: false,
          serverErrors: placed.fields,
          formError: placed.form
        }));
      }
    }
  };

  return (
    <form className="hpcbridge-form" onSubmit={e => void start(e)} noValidate>
      <AppField apps={apps} app={app} error={errorFor('app')} onChange={setAppId} />
      <HpcField
        supported={app.supported_hpc ?? []}
        hpcs={model.hpcs}
        value={state.values.hpc}
        error={errorFor('hpc')}
        onChange={hpc => change(v => ({ ...v, hpc }))}
      />
      <ParamFields
        rules={app.param_rules ?? {}}
        values={state.values.params}
        errorFor={errorFor}
        onChange={(name, value) => change(v => ({ ...v, params: { ...v.params, [name]: value } }))}
      />
      <ResourceFields
        rules={app.slurm_input_rules ?? {}}
        values={state.values.resources}
        errorFor={errorFor}
        onChange={(name, value) =>
          change(v => ({ ...v, resources: { ...v.resources, [name]: value } }))
        }
      />
      {state.formError && (
        <div
          className="hpcbridge-form-error"
          data-testid="hpcbridge-session-form-error"
          role="alert"
        >
          {state.formError}
        </div>
      )}
      <div className="hpcbridge-form-actions">
        <button
          type="submit"
          className="jp-mod-styled jp-mod-accept"
          data-testid="hpcbridge-session-start"
          disabled={state.busy}
        >
          {state.busy ? 'Starting…' : 'Start session'}
        </button>
      </div>
    </form>
  );
}
