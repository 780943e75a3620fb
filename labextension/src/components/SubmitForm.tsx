import * as React from 'react';

import { ApiError, IApp, IParamRule, IResourceRule, ISubmitRequest } from '../api';
import { actionMessage } from '../errors';
import { PanelModel, toApiError } from '../model';
import {
  coerceParam,
  coerceResource,
  errorsByField,
  fieldLoc,
  IFieldError,
  initialFieldText,
  locKey,
  validateSubmission
} from '../validate';
import { useMounted } from './hooks';
import { Select } from './Select';

/** Units shown for the usual Slurm resources when the rule names none. */
const DEFAULT_UNITS: { [name: string]: string } = {
  time: 'minutes',
  memory: 'MB'
};

export interface ISubmitHost {
  /** Let the user pick a folder in a JupyterLab file dialog; null if cancelled. */
  pickPath?: () => Promise<string | null>;
}

type ParamValues = { [name: string]: string | boolean };
type ResourceValues = { [name: string]: string };

function defaultParams(app: IApp | null): ParamValues {
  const out: ParamValues = {};
  for (const [name, rule] of Object.entries(app?.param_rules ?? {})) {
    out[name] =
      rule.type === 'boolean'
        ? rule.default_value === true || rule.default_value === 'true'
        : initialFieldText(rule);
  }
  return out;
}

function defaultResources(app: IApp | null): ResourceValues {
  const out: ResourceValues = {};
  for (const [name, rule] of Object.entries(app?.slurm_input_rules ?? {})) {
    out[name] = initialFieldText(rule);
  }
  return out;
}

function defaultHpc(app: IApp | null): string {
  if (!app) {
    return '';
  }
  const supported = app.supported_hpc ?? [];
  if (app.default_hpc && (supported.length === 0 || supported.includes(app.default_hpc))) {
    return app.default_hpc;
  }
  return supported[0] ?? '';
}

/** The request body a form state stands for. */
export function buildRequest(
  app: IApp,
  hpc: string,
  params: ParamValues,
  resources: ResourceValues,
  upload: string
): ISubmitRequest {
  const p: { [name: string]: unknown } = {};
  for (const [name, rule] of Object.entries(app.param_rules ?? {})) {
    const v = coerceParam(rule, params[name]);
    if (v !== undefined) {
      p[name] = v;
    }
  }
  const r: { [name: string]: unknown } = {};
  for (const [name, rule] of Object.entries(app.slurm_input_rules ?? {})) {
    const v = coerceResource(rule, resources[name]);
    if (v !== undefined) {
      r[name] = v;
    }
  }
  return { app: app.id, hpc, params: p, resources: r, upload: upload.trim() || null };
}

function rangeHint(rule: {
  min?: number;
  max?: number;
  step?: number;
  default_value?: unknown;
}): string {
  const parts: string[] = [];
  if (rule.min != null && rule.max != null) {
    parts.push(`${rule.min} – ${rule.max}`);
  } else if (rule.min != null) {
    parts.push(`≥ ${rule.min}`);
  } else if (rule.max != null) {
    parts.push(`≤ ${rule.max}`);
  }
  if (rule.step !== undefined && rule.step !== null && rule.step !== 1) {
    parts.push(`step ${rule.step}`);
  }
  if (
    rule.default_value !== undefined &&
    rule.default_value !== null &&
    rule.default_value !== ''
  ) {
    parts.push(`default ${String(rule.default_value)}`);
  }
  return parts.join(', ');
}

function Field(props: {
  id: string;
  label: string;
  required?: boolean;
  hint?: string;
  error?: string;
  errorTestid: string;
  children: React.ReactNode;
}): JSX.Element {
  return (
    <div className={`hpcbridge-field${props.error ? ' hpcbridge-field-invalid' : ''}`}>
      <label htmlFor={props.id} className="hpcbridge-field-label">
        {props.label}
        {props.required && (
          <span className="hpcbridge-required" title="required">
            {' '}
            *
          </span>
        )}
      </label>
      {props.children}
      {props.hint && <div className="hpcbridge-field-hint">{props.hint}</div>}
      {props.error && (
        <div className="hpcbridge-field-error" data-testid={props.errorTestid} role="alert">
          {props.error}
        </div>
      )}
    </div>
  );
}

function ParamInput(props: {
  id: string;
  name: string;
  rule: IParamRule;
  value: string | boolean | undefined;
  invalid: boolean;
  onChange: (value: string | boolean) => void;
}): JSX.Element {
  const { rule, id } = props;
  const testid = `hpcbridge-param-${props.name}`;
  switch (rule.type) {
    case 'boolean':
      return (
        <input
          id={id}
          type="checkbox"
          data-testid={testid}
          checked={props.value === true}
          onChange={e => props.onChange(e.target.checked)}
        />
      );
    case 'string_option':
      return (
        <Select
          id={id}
          data-testid={testid}
          aria-invalid={props.invalid}
          value={String(props.value ?? '')}
          onChange={e => props.onChange(e.target.value)}
        >
          {(!rule.require || !(rule.options ?? []).includes(String(props.value ?? ''))) && (
            <option value="">{rule.require ? 'Choose…' : '(default)'}</option>
          )}
          {(rule.options ?? []).map(o => (
            <option key={o} value={o}>
              {o}
            </option>
          ))}
        </Select>
      );
    default:
      return (
        <input
          id={id}
          type="text"
          className="jp-mod-styled"
          inputMode={
            rule.type === 'integer' ? 'numeric' : rule.type === 'float' ? 'decimal' : undefined
          }
          data-testid={testid}
          aria-invalid={props.invalid}
          value={String(props.value ?? '')}
          onChange={e => props.onChange(e.target.value)}
        />
      );
  }
}

function ResourceInput(props: {
  id: string;
  name: string;
  rule: IResourceRule;
  value: string | undefined;
  invalid: boolean;
  onChange: (value: string) => void;
}): JSX.Element {
  const { rule, id } = props;
  const testid = `hpcbridge-resource-${props.name}`;
  if (rule.options) {
    return (
      <Select
        id={id}
        data-testid={testid}
        aria-invalid={props.invalid}
        value={props.value ?? ''}
        onChange={e => props.onChange(e.target.value)}
      >
        {!rule.options.includes(props.value ?? '') && <option value="">(default)</option>}
        {rule.options.map(o => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </Select>
    );
  }
  return (
    <input
      id={id}
      type="text"
      inputMode="numeric"
      className="jp-mod-styled"
      data-testid={testid}
      aria-invalid={props.invalid}
      value={props.value ?? ''}
      onChange={e => props.onChange(e.target.value)}
    />
  );
}

export function SubmitForm(props: {
  model: PanelModel;
  host: ISubmitHost;
  initialUpload?: string;
  initialApp?: string;
}): JSX.Element {
  const { model, host } = props;
  const mounted = useMounted();
  const formRef = React.useRef<HTMLFormElement>(null);
  const [appId, setAppId] = React.useState(props.initialApp ?? '');
  const [hpc, setHpc] = React.useState('');
  const [params, setParams] = React.useState<ParamValues>({});
  const [resources, setResources] = React.useState<ResourceValues>({});
  const [upload, setUpload] = React.useState(props.initialUpload ?? '');
  const [touched, setTouched] = React.useState<Set<string>>(new Set());
  const [attempted, setAttempted] = React.useState(false);
  const [serverErrors, setServerErrors] = React.useState<{ [key: string]: string }>({});
  const [formError, setFormError] = React.useState<string | null>(null);
  const [busy, setBusy] = React.useState<string | null>(null);

  React.useEffect(() => {
    void model.loadApps(true);
  }, [model]);

  const apps = model.apps;
  const app = apps.find(a => a.id === appId) ?? null;

  // Pick the first app once the list is there.
  React.useEffect(() => {
    if (!app && apps.length > 0) {
      setAppId(apps[0].id);
    }
  }, [app, apps]);

  // A new app: its defaults, a clean slate.
  React.useEffect(() => {
    setParams(defaultParams(app));
    setResources(defaultResources(app));
    setHpc(defaultHpc(app));
    setTouched(new Set());
    setAttempted(false);
    setServerErrors({});
    setFormError(null);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [app?.id]);

  const touch = (key: string) => {
    setTouched(prev => (prev.has(key) ? prev : new Set(prev).add(key)));
    setServerErrors(prev => {
      if (!(key in prev)) {
        return prev;
      }
      const next = { ...prev };
      delete next[key];
      return next;
    });
  };

  const request = app ? buildRequest(app, hpc, params, resources, upload) : null;
  const clientErrors: { [key: string]: string } =
    app && request
      ? errorsByField(
          validateSubmission(app, {
            hpc: request.hpc,
            params: request.params,
            resources: request.resources,
            upload: request.upload
          })
        )
      : {};
  const errorFor = (key: string): string | undefined =>
    serverErrors[key] ?? (attempted || touched.has(key) ? clientErrors[key] : undefined);

  const knownKeys = new Set<string>([
    'upload',
    'hpc',
    'app',
    ...Object.keys(app?.param_rules ?? {}).map(n => `params.${n}`),
    ...Object.keys(app?.slurm_input_rules ?? {}).map(n => `resources.${n}`)
  ]);

  /** Bring the first field with an error into view, once it has rendered. */
  const focusFirstError = () => {
    requestAnimationFrame(() => {
      const el = formRef.current?.querySelector<HTMLElement>(
        '.hpcbridge-field-invalid input, .hpcbridge-field-invalid select'
      );
      el?.focus();
    });
  };

  /** Put 422 details next to their fields; what names no field goes to the form error. */
  const showServerError = (error: ApiError, fallbackKey?: string) => {
    const details: IFieldError[] = error.details ?? [];
    const placed: { [key: string]: string } = {};
    const unplaced: string[] = [];
    for (const d of details) {
      const key = locKey(fieldLoc(d.loc));
      if (knownKeys.has(key)) {
        if (!(key in placed)) {
          placed[key] = d.msg;
        }
      } else {
        unplaced.push(`${d.loc.join('.')}: ${d.msg}`);
      }
    }
    if (details.length === 0 && fallbackKey) {
      placed[fallbackKey] = actionMessage(error);
    }
    setServerErrors(placed);
    focusFirstError();
    if (unplaced.length > 0) {
      setFormError(`${actionMessage(error)} (${unplaced.join('; ')})`);
    } else if (Object.keys(placed).length > 0) {
      setFormError('The server did not accept some fields: see the messages next to them.');
    } else {
      setFormError(actionMessage(error));
    }
  };

  const submit = async (event?: React.FormEvent) => {
    event?.preventDefault();
    if (!app || !request || busy) {
      return;
    }
    setAttempted(true);
    setServerErrors({});
    if (Object.keys(clientErrors).length > 0) {
      setFormError('Please fix the highlighted fields.');
      focusFirstError();
      return;
    }
    setFormError(null);
    let uploadId: string | null = null;
    if (request.upload) {
      setBusy('Packaging input data…');
      try {
        uploadId = (await model.api.upload(request.upload)).id;
      } catch (error) {
        if (mounted.current) {
          setBusy(null);
          showServerError(toApiError(error), 'upload');
        }
        return;
      }
    }
    if (!mounted.current) {
      return;
    }
    setBusy('Submitting…');
    try {
      const job = await model.api.submitJob({ ...request, upload: uploadId });
      model.upsertJob(job);
      model.navigate({ kind: 'detail', jobId: job.id });
    } catch (error) {
      if (mounted.current) {
        setBusy(null);
        showServerError(toApiError(error));
      }
    }
  };

  const browse = async () => {
    if (!host.pickPath) {
      return;
    }
    const path = await host.pickPath();
    if (path !== null && mounted.current) {
      setUpload(path);
      touch('upload');
    }
  };

  if (!model.appsLoaded) {
    return (
      <div className="hpcbridge-form">
        {model.appsError ? (
          <div className="hpcbridge-form-error" data-testid="hpcbridge-form-error" role="alert">
            Could not load the apps: {actionMessage(model.appsError)}
          </div>
        ) : (
          <div className="hpcbridge-muted">Loading apps…</div>
        )}
      </div>
    );
  }
  if (apps.length === 0) {
    return (
      <div className="hpcbridge-form">
        <div className="hpcbridge-empty">No apps are configured on this hpcbridge server.</div>
      </div>
    );
  }

  const paramRules = Object.entries(app?.param_rules ?? {});
  const resourceRules = Object.entries(app?.slurm_input_rules ?? {});

  return (
    <form ref={formRef} className="hpcbridge-form" onSubmit={submit} noValidate>
      <Field
        id="hpcbridge-app"
        label="App"
        error={errorFor('app')}
        errorTestid="hpcbridge-field-error-app"
      >
        <Select
          id="hpcbridge-app"
          data-testid="hpcbridge-app-select"
          value={appId}
          onChange={e => setAppId(e.target.value)}
        >
          {apps.map(a => (
            <option key={a.id} value={a.id}>
              {a.name || a.id}
            </option>
          ))}
        </Select>
      </Field>
      {app?.description && <p className="hpcbridge-app-description">{app.description}</p>}

      <Field
        id="hpcbridge-hpc"
        label="HPC"
        error={errorFor('hpc')}
        errorTestid="hpcbridge-field-error-hpc"
      >
        <Select
          id="hpcbridge-hpc"
          data-testid="hpcbridge-hpc-select"
          value={hpc}
          onChange={e => {
            setHpc(e.target.value);
            touch('hpc');
          }}
        >
          {(app?.supported_hpc ?? []).map(id => {
            const info = model.hpcs.find(h => h.id === id);
            const note =
              info?.reachable === false ? ' (unreachable)' : info?.draining ? ' (draining)' : '';
            return (
              <option key={id} value={id}>
                {(info?.name || id) + note}
              </option>
            );
          })}
        </Select>
      </Field>

      {paramRules.length > 0 && (
        <fieldset className="hpcbridge-fieldset">
          <legend>Parameters</legend>
          {paramRules.map(([name, rule]) => {
            const key = `params.${name}`;
            const error = errorFor(key);
            const hint = [
              rule.description,
              rule.type === 'integer' || rule.type === 'float' ? rangeHint(rule) : ''
            ]
              .filter(Boolean)
              .join(' · ');
            return (
              <Field
                key={name}
                id={`hpcbridge-param-${name}`}
                label={name}
                required={rule.require}
                hint={hint}
                error={error}
                errorTestid={`hpcbridge-field-error-${name}`}
              >
                <ParamInput
                  id={`hpcbridge-param-${name}`}
                  name={name}
                  rule={rule}
                  value={params[name]}
                  invalid={!!error}
                  onChange={value => {
                    setParams(prev => ({ ...prev, [name]: value }));
                    touch(key);
                  }}
                />
              </Field>
            );
          })}
        </fieldset>
      )}

      {resourceRules.length > 0 && (
        <fieldset className="hpcbridge-fieldset">
          <legend>Resources</legend>
          {resourceRules.map(([name, rule]) => {
            const key = `resources.${name}`;
            const error = errorFor(key);
            const unit = rule.unit ?? DEFAULT_UNITS[name];
            return (
              <Field
                key={name}
                id={`hpcbridge-resource-${name}`}
                label={unit ? `${name} (${unit})` : name}
                hint={rule.options ? '' : rangeHint(rule)}
                error={error}
                errorTestid={`hpcbridge-field-error-${name}`}
              >
                <ResourceInput
                  id={`hpcbridge-resource-${name}`}
                  name={name}
                  rule={rule}
                  value={resources[name]}
                  invalid={!!error}
                  onChange={value => {
                    setResources(prev => ({ ...prev, [name]: value }));
                    touch(key);
                  }}
                />
              </Field>
            );
          })}
        </fieldset>
      )}

      <Field
        id="hpcbridge-upload"
        label="Input data (file or folder, relative to the Jupyter root)"
        required={app?.require_upload_data}
        error={errorFor('upload')}
        errorTestid="hpcbridge-field-error-upload"
      >
        <div className="hpcbridge-upload-row">
          <input
            id="hpcbridge-upload"
            type="text"
            className="jp-mod-styled"
            placeholder={app?.require_upload_data ? 'required' : 'none'}
            data-testid="hpcbridge-upload-path"
            value={upload}
            onChange={e => {
              setUpload(e.target.value);
              touch('upload');
            }}
          />
          {host.pickPath && (
            <button
              type="button"
              className="jp-mod-styled"
              data-testid="hpcbridge-upload-browse"
              onClick={() => void browse()}
            >
              Browse…
            </button>
          )}
        </div>
      </Field>

      {formError && (
        <div className="hpcbridge-form-error" data-testid="hpcbridge-form-error" role="alert">
          {formError}
        </div>
      )}
      <div className="hpcbridge-form-actions">
        <button
          type="button"
          className="jp-mod-styled jp-mod-reject"
          onClick={() => model.navigate({ kind: 'list' })}
        >
          Cancel
        </button>
        <button
          type="submit"
          className="jp-mod-styled jp-mod-accept"
          data-testid="hpcbridge-submit"
          disabled={!app || !!busy}
        >
          {busy ?? 'Submit'}
        </button>
      </div>
    </form>
  );
}
