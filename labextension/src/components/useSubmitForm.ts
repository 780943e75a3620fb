import * as React from 'react';

import type { IApp } from '../api';
import type { ApiError } from '../errors';
import { PanelModel, toApiError } from '../model';
import { batchApps } from '../sessions';
import {
  buildSubmission,
  defaultValues,
  fieldKeys,
  IFormValues,
  placeServerErrors
} from '../submission';
import { buildSweep, IBuiltSweep, ISweepField, SweepFields, sweptNames } from '../sweep';
import { errorsByField, validateSubmission } from '../validate';
import { useMounted } from './hooks';

interface IFormState {
  /** The app `values` were made for; another app starts from its own defaults. */
  appId: string | null;
  values: IFormValues;
  /** Parameters that take a list or range of values (a sweep). */
  sweep: SweepFields;
  touched: ReadonlySet<string>;
  /** Submit was pressed: every client error shows, touched or not. */
  attempted: boolean;
  serverErrors: { [key: string]: string };
  formError: string | null;
}

function freshState(app: IApp | null, upload: string): IFormState {
  return {
    appId: app?.id ?? null,
    values: defaultValues(app, upload),
    sweep: {},
    touched: new Set(),
    attempted: false,
    serverErrors: {},
    formError: null
  };
}

export interface ISubmitForm {
  formRef: React.RefObject<HTMLFormElement>;
  app: IApp | null;
  selectApp: (id: string) => void;
  values: IFormValues;
  /** Change one value: `key` is its error key ("hpc", "params.n", ...), now touched. */
  change: (key: string, update: (values: IFormValues) => IFormValues) => void;
  /** The message shown next to a field, if any. */
  errorFor: (key: string) => string | undefined;
  formError: string | null;
  /** The sweep option: which parameters take several values, and how to change that. */
  sweep: { fields: SweepFields; onChange: (name: string, field: ISweepField) => void };
  /** Jobs the sweep stands for; null when no parameter is swept (one job). */
  sweepSize: number | null;
  /** What the submit button says while an upload or submission runs. */
  busy: string | null;
  submit: (event?: React.FormEvent) => Promise<void>;
}

/** The submit form's state: values, which errors show, and the upload-then-submit sequence. */
export function useSubmitForm(
  model: PanelModel,
  initial: { app?: string; upload?: string }
): ISubmitForm {
  const mounted = useMounted();
  const formRef = React.useRef<HTMLFormElement>(null);
  const [appId, setAppId] = React.useState(initial.app ?? '');
  const [busy, setBusy] = React.useState<string | null>(null);

  React.useEffect(() => {
    void model.loadApps(true);
  }, [model]);

  // the chosen app, or the first one once the list is there
  const apps = batchApps(model.apps);
  const app = apps.find(a => a.id === appId) ?? apps[0] ?? null;
  const [stored, setStored] = React.useState(() => freshState(app, initial.upload ?? ''));
  let state = stored;
  if (stored.appId !== (app?.id ?? null)) {
    // set while rendering (not in an effect) so no frame shows the old app's values
    state = freshState(app, stored.values.upload);
    setStored(state);
  }
  const patch = (p: Partial<IFormState>) => setStored(s => ({ ...s, ...p }));

  const request = app ? buildSubmission(state.values, app) : null;
  const clientErrors = app && request ? errorsByField(validateSubmission(app, request)) : {};
  let sweep: IBuiltSweep | null = null;
  if (app && request && sweptNames(state.sweep).length > 0) {
    // a swept parameter's single-value field does not count; its list or range does
    sweep = buildSweep(request, app, state.sweep);
    for (const name of sweptNames(state.sweep)) {
      delete clientErrors[`params.${name}`];
    }
    Object.assign(clientErrors, sweep.errors);
  }
  const errorFor = (key: string): string | undefined =>
    state.serverErrors[key] ??
    (state.attempted || state.touched.has(key) ? clientErrors[key] : undefined);

  const change = (key: string, update: (values: IFormValues) => IFormValues) =>
    setStored(s => {
      const serverErrors = { ...s.serverErrors };
      delete serverErrors[key];
      return { ...s, values: update(s.values), touched: new Set(s.touched).add(key), serverErrors };
    });

  const changeSweep = (name: string, field: ISweepField) => {
    change(`params.${name}`, v => v);
    setStored(s => ({ ...s, sweep: { ...s.sweep, [name]: field } }));
  };

  /** Bring the first field with an error into view, once it has rendered. */
  const focusFirstError = () => {
    requestAnimationFrame(() => {
      const el = formRef.current?.querySelector<HTMLElement>(
        '.hpcbridge-field-invalid input, .hpcbridge-field-invalid select'
      );
      el?.focus();
    });
  };

  const showServerError = (error: ApiError, fallbackKey?: string) => {
    const placed = placeServerErrors(error, fieldKeys(app), fallbackKey);
    patch({ serverErrors: placed.fields, formError: placed.form });
    focusFirstError();
  };

  const submit = async (event?: React.FormEvent) => {
    event?.preventDefault();
    if (!app || !request || busy) {
      return;
    }
    if (Object.keys(clientErrors).length > 0) {
      patch({ attempted: true, serverErrors: {}, formError: 'Please fix the highlighted fields.' });
      focusFirstError();
      return;
    }
    patch({ attempted: true, serverErrors: {}, formError: null });
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
      if (sweep) {
        await model.api.submitSweep({ ...sweep.body, upload: uploadId });
        model.navigate({ kind: 'list' });
        model.refresh(true);
        return;
      }
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

  return {
    formRef,
    app,
    selectApp: setAppId,
    values: state.values,
    change,
    errorFor,
    formError: state.formError,
    sweep: { fields: state.sweep, onChange: changeSweep },
    sweepSize: sweep ? sweep.size : null,
    busy,
    submit
  };
}
