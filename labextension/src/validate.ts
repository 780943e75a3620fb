/**
 * Client-side validation of a job submission against an app's manifest
 * rules (pure, unit tested). The server enforces the same rules and answers
 * 422 with `details: [{loc, msg}]`; the messages here are the same so the
 * form reads the same whichever side caught the mistake.
 *
 * Rule semantics (shared test vectors: tests/vectors/validation.json at the
 * repository root, run by jest and pytest):
 * - a missing value (undefined, null or "") is an error only if the rule has
 *   `require: true` → "is required"; otherwise the server uses `default_value`.
 * - integer: a number without fraction (not a boolean)  → "must be an integer"
 * - float:   a finite number (not a boolean)            → "must be a number"
 * - min / max (numbers)                                  → "must be at least {min}" / "must be at most {max}"
 * - step (numbers, counted from `min`, or from 0 without min; checked after min/max)
 *                                                        → "must be a multiple of {step}" when min is
 *                                                          absent or itself a multiple of step, else
 *                                                          "must be {min} plus a multiple of {step}"
 *   (a tolerance of 1e-9 relative absorbs float rounding: 0.3 = 0.1 × 3)
 * - string_option / options: one of the options         → "must be one of: a, b, c"
 * - string_input: a string                               → "must be a string"
 * - boolean: true or false                               → "must be true or false"
 * - a name without rule                                  → "unknown parameter" / "unknown resource"
 * - Slurm resources (`slurm_input_rules`) are integers unless the rule has
 *   `options` (e.g. `partition`); missing resources take the default.
 * - upload: required when the app says `require_upload_data` → loc ["upload"], "is required"
 * - hpc: must be one of `supported_hpc` → loc ["hpc"], "must be one of: …"
 * Numbers in messages print like JavaScript: 10 (not 10.0), 0.25; the order of errors is
 * params (rule order), unknown params, resources (rule order), unknown resources, upload, hpc.
 */

import type { components } from './api-types';

type Schemas = components['schemas'];

export type ParamType = Schemas['ParamRule']['type'];

/** A manifest's parameter rule (the API's `ParamRule`); keys left out mean "no rule". */
export type IParamRule = Partial<Schemas['ParamRule']> & { type: ParamType };

/** A manifest's Slurm resource rule (the API's `SlurmRule`). */
export type IResourceRule = Partial<Schemas['SlurmRule']>;

/** The server's 422 `details` items. */
export type IFieldError = Schemas['ErrorDetail'];

/** The parts of an app (the API's `AppInfo`) that validation reads. */
export interface IAppRules {
  supported_hpc?: string[];
  require_upload_data?: boolean;
  param_rules?: { [name: string]: IParamRule };
  slurm_input_rules?: { [name: string]: IResourceRule };
}

export interface ISubmission {
  hpc?: string | null;
  params?: { [name: string]: unknown };
  resources?: { [name: string]: unknown };
  upload?: string | null;
}

const EPSILON = 1e-9;

/** Print a number the way the server does: 10 not 10.0, 0.5 not .5. */
export function formatNumber(n: number): string {
  return String(n);
}

export function isMissing(value: unknown): boolean {
  return value === undefined || value === null || value === '';
}

function nearInteger(x: number): boolean {
  return Math.abs(x - Math.round(x)) <= EPSILON * Math.max(1, Math.abs(x));
}

function isNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

/** The min/max/step message for a number, or null if it is in range. */
export function checkRange(
  value: number,
  rule: { min?: number | null; max?: number | null; step?: number | null }
): string | null {
  if (isNumber(rule.min) && value < rule.min) {
    return `must be at least ${formatNumber(rule.min)}`;
  }
  if (isNumber(rule.max) && value > rule.max) {
    return `must be at most ${formatNumber(rule.max)}`;
  }
  if (isNumber(rule.step) && rule.step > 0) {
    const base = isNumber(rule.min) ? rule.min : 0;
    const k = (value - base) / rule.step;
    if (!nearInteger(k)) {
      // counted from min; when min is itself a multiple of step that is the same as from 0
      return nearInteger(base / rule.step)
        ? `must be a multiple of ${formatNumber(rule.step)}`
        : `must be ${formatNumber(base)} plus a multiple of ${formatNumber(rule.step)}`;
    }
  }
  return null;
}

function oneOf(options: string[]): string {
  return `must be one of: ${options.join(', ')}`;
}

/** Validate one parameter value; null if fine. Missing values: see `isMissing`. */
export function validateParam(rule: IParamRule, value: unknown): string | null {
  if (isMissing(value)) {
    return rule.require ? 'is required' : null;
  }
  switch (rule.type) {
    case 'integer':
      if (!isNumber(value) || !Number.isInteger(value)) {
        return 'must be an integer';
      }
      return checkRange(value, rule);
    case 'float':
      if (!isNumber(value)) {
        return 'must be a number';
      }
      return checkRange(value, rule);
    case 'string_option': {
      const options = rule.options ?? [];
      if (typeof value !== 'string' || !options.includes(value)) {
        return oneOf(options);
      }
      return null;
    }
    case 'string_input':
      return typeof value === 'string' ? null : 'must be a string';
    case 'boolean':
      return typeof value === 'boolean' ? null : 'must be true or false';
    default:
      return null;
  }
}

/** Validate one Slurm resource value; null if fine. */
export function validateResource(rule: IResourceRule, value: unknown): string | null {
  if (isMissing(value)) {
    return null;
  }
  if (rule.options) {
    if (typeof value !== 'string' || !rule.options.includes(value)) {
      return oneOf(rule.options);
    }
    return null;
  }
  if (!isNumber(value) || !Number.isInteger(value)) {
    return 'must be an integer';
  }
  return checkRange(value, rule);
}

/** All errors of a submission, in rule order (params, resources, upload, hpc). */
export function validateSubmission(app: IAppRules, submission: ISubmission): IFieldError[] {
  const errors: IFieldError[] = [];
  const paramRules = app.param_rules ?? {};
  const params = submission.params ?? {};
  for (const [name, rule] of Object.entries(paramRules)) {
    const msg = validateParam(rule, params[name]);
    if (msg) {
      errors.push({ loc: ['params', name], msg });
    }
  }
  for (const name of Object.keys(params)) {
    if (!(name in paramRules)) {
      errors.push({ loc: ['params', name], msg: 'unknown parameter' });
    }
  }
  const resourceRules = app.slurm_input_rules ?? {};
  const resources = submission.resources ?? {};
  for (const [name, rule] of Object.entries(resourceRules)) {
    const msg = validateResource(rule, resources[name]);
    if (msg) {
      errors.push({ loc: ['resources', name], msg });
    }
  }
  for (const name of Object.keys(resources)) {
    if (!(name in resourceRules)) {
      errors.push({ loc: ['resources', name], msg: 'unknown resource' });
    }
  }
  if (app.require_upload_data && isMissing(submission.upload)) {
    errors.push({ loc: ['upload'], msg: 'is required' });
  }
  const hpcs = app.supported_hpc;
  if (hpcs && hpcs.length > 0 && submission.hpc !== undefined) {
    if (typeof submission.hpc !== 'string' || !hpcs.includes(submission.hpc)) {
      errors.push({ loc: ['hpc'], msg: oneOf(hpcs) });
    }
  }
  return errors;
}

/**
 * Turn what a form input holds into the value sent to the server:
 * numbers for integer/float when the text is a number (otherwise the text,
 * so validation says "must be an integer"), booleans for checkboxes,
 * undefined for an empty field.
 */
export function coerceParam(rule: IParamRule, raw: string | boolean | undefined): unknown {
  if (raw === undefined) {
    return undefined;
  }
  if (rule.type === 'boolean') {
    if (typeof raw === 'boolean') {
      return raw;
    }
    return raw === 'true' ? true : raw === 'false' ? false : raw === '' ? undefined : raw;
  }
  if (typeof raw === 'boolean') {
    return raw;
  }
  if (rule.type === 'integer' || rule.type === 'float') {
    return parseNumber(raw);
  }
  return raw === '' ? undefined : raw;
}

/** Same as `coerceParam` for a resource field (numbers unless it has options). */
export function coerceResource(rule: IResourceRule, raw: string | undefined): unknown {
  if (raw === undefined) {
    return undefined;
  }
  if (rule.options) {
    return raw === '' ? undefined : raw;
  }
  return parseNumber(raw);
}

/** "12" → 12, " 1.5 " → 1.5, "" → undefined, "abc" → "abc". */
export function parseNumber(raw: string): number | string | undefined {
  const text = raw.trim();
  if (text === '') {
    return undefined;
  }
  if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) {
    const n = Number(text);
    if (Number.isFinite(n)) {
      return n;
    }
  }
  return raw;
}

/** The text a form field starts with: the rule's default, as text. */
export function initialFieldText(rule: { default_value?: unknown }): string {
  const v = rule.default_value;
  if (v === undefined || v === null) {
    return '';
  }
  return String(v);
}

/** "params.n" style key of an error location; used to put an error next to its field. */
export function locKey(loc: ReadonlyArray<unknown>): string {
  return loc.map(String).join('.');
}

/** Group errors by field key (first message wins per field). */
export function errorsByField(errors: ReadonlyArray<IFieldError>): { [key: string]: string } {
  const out: { [key: string]: string } = {};
  for (const e of errors) {
    const key = locKey(fieldLoc(e.loc));
    if (!(key in out)) {
      out[key] = e.msg;
    }
  }
  return out;
}

/**
 * The part of a server location that names a form field. Pydantic-style
 * locations may start with "body" and go deeper than the field
 * (["body", "params", "n"]); the form knows ["params", name],
 * ["resources", name], ["upload"], ["hpc"], ["app"].
 */
export function fieldLoc(loc: ReadonlyArray<unknown>): string[] {
  const parts = loc.map(String);
  const start = parts[0] === 'body' ? 1 : 0;
  const head = parts[start];
  if (head === 'params' || head === 'resources') {
    return parts.slice(start, start + 2);
  }
  return parts.slice(start, start + 1);
}
