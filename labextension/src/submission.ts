/**
 * The submit form without React (pure, unit tested): the values a form
 * starts with for an app, the request body its values stand for, and where
 * the server's 422 details are shown.
 */
import type { IApp, ISubmitRequest } from './api';
import { actionMessage, ApiError } from './errors';
import {
  coerceParam,
  coerceResource,
  fieldLoc,
  IFieldError,
  initialFieldText,
  locKey
} from './validate';

export type ParamValues = { [name: string]: string | boolean };
export type ResourceValues = { [name: string]: string };

/** What the form's inputs hold: text as typed, checkboxes as booleans. */
export interface IFormValues {
  hpc: string;
  params: ParamValues;
  resources: ResourceValues;
  upload: string;
}

/** The HPC an app's form starts with: its default if supported, else the first supported. */
export function defaultHpc(app: IApp | null): string {
  if (!app) {
    return '';
  }
  const supported = app.supported_hpc ?? [];
  if (app.default_hpc && (supported.length === 0 || supported.includes(app.default_hpc))) {
    return app.default_hpc;
  }
  return supported[0] ?? '';
}

/** An app's form with every field at its rule's default (the upload path is kept). */
export function defaultValues(app: IApp | null, upload: string): IFormValues {
  const params: ParamValues = {};
  for (const [name, rule] of Object.entries(app?.param_rules ?? {})) {
    params[name] =
      rule.type === 'boolean'
        ? rule.default_value === true || rule.default_value === 'true'
        : initialFieldText(rule);
  }
  const resources: ResourceValues = {};
  for (const [name, rule] of Object.entries(app?.slurm_input_rules ?? {})) {
    resources[name] = initialFieldText(rule);
  }
  return { hpc: defaultHpc(app), params, resources, upload };
}

/**
 * The `POST jobs` body a form stands for: values coerced by their rules
 * (see `coerceParam`), empty fields left out so the server uses the default,
 * `upload` the local path (the caller swaps in the upload id).
 */
export function buildSubmission(form: IFormValues, app: IApp): ISubmitRequest {
  const params: { [name: string]: unknown } = {};
  for (const [name, rule] of Object.entries(app.param_rules ?? {})) {
    const v = coerceParam(rule, form.params[name]);
    if (v !== undefined) {
      params[name] = v;
    }
  }
  const resources: { [name: string]: unknown } = {};
  for (const [name, rule] of Object.entries(app.slurm_input_rules ?? {})) {
    const v = coerceResource(rule, form.resources[name]);
    if (v !== undefined) {
      resources[name] = v;
    }
  }
  return {
    app: app.id,
    hpc: form.hpc,
    params,
    // the names come from the app's slurm_input_rules; the server checks them
    resources: resources as ISubmitRequest['resources'],
    upload: form.upload.trim() || null,
    notify: null
  };
}

/** The error keys (see `locKey`) the form has a field for. */
export function fieldKeys(app: IApp | null): Set<string> {
  return new Set<string>([
    'upload',
    'hpc',
    'app',
    ...Object.keys(app?.param_rules ?? {}).map(n => `params.${n}`),
    ...Object.keys(app?.slurm_input_rules ?? {}).map(n => `resources.${n}`)
  ]);
}

export interface IPlacedErrors {
  /** Messages shown next to their field, by key. */
  fields: { [key: string]: string };
  /** The message above the buttons. */
  form: string;
}

/**
 * Where a failed upload or submission is shown: 422 details next to their
 * fields (first message per field), details that name no field in the form
 * message; an error without details goes to `fallbackKey` if given.
 */
export function placeServerErrors(
  error: ApiError,
  keys: ReadonlySet<string>,
  fallbackKey?: string
): IPlacedErrors {
  const details: IFieldError[] = error.details ?? [];
  const fields: { [key: string]: string } = {};
  const unplaced: string[] = [];
  for (const d of details) {
    const key = locKey(fieldLoc(d.loc));
    if (keys.has(key)) {
      if (!(key in fields)) {
        fields[key] = d.msg;
      }
    } else {
      unplaced.push(`${d.loc.join('.')}: ${d.msg}`);
    }
  }
  if (details.length === 0 && fallbackKey) {
    fields[fallbackKey] = actionMessage(error);
  }
  let form = actionMessage(error);
  if (unplaced.length > 0) {
    form = `${actionMessage(error)} (${unplaced.join('; ')})`;
  } else if (Object.keys(fields).length > 0) {
    form = 'The server did not accept some fields: see the messages next to them.';
  }
  return { fields, form };
}

/** "1 – 10, step 2, default 4": a number rule's bounds, shown under its field. */
export function rangeHint(rule: {
  min?: number | null;
  max?: number | null;
  step?: number | null;
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
  if (rule.step != null && rule.step !== 1) {
    parts.push(`step ${rule.step}`);
  }
  if (rule.default_value != null && rule.default_value !== '') {
    parts.push(`default ${String(rule.default_value)}`);
  }
  return parts.join(', ');
}
