/**
 * The submit form's sweep option (pure, unit tested): a parameter can take one value
 * (a job), a comma separated list or a range start/stop/step (a sweep: one job per
 * combination, `POST sweeps` with a grid).
 */
import type { IApp, IGridRange, ISubmitRequest, ISweepCreate } from './api';
import { coerceParam, IParamRule, parseNumber, validateParam } from './validate';

export type SweepMode = 'one' | 'list' | 'range';

/** What a parameter's sweep inputs hold, as typed. */
export interface ISweepField {
  mode: SweepMode;
  list: string;
  start: string;
  stop: string;
  step: string;
}

export type SweepFields = { [name: string]: ISweepField };

/** The server's bound on the elements of one sweep (MAX_SWEEP_SIZE). */
export const MAX_SWEEP_SIZE = 10000;

export function emptySweepField(mode: SweepMode = 'one'): ISweepField {
  return { mode, list: '', start: '', stop: '', step: '' };
}

/** The names of the parameters that take more than one value. */
export function sweptNames(fields: SweepFields): string[] {
  return Object.entries(fields)
    .filter(([, f]) => f.mode !== 'one')
    .map(([name]) => name);
}

/** start, start+step, … below stop, rounded like the server (0.1 steps give 0.3). */
export function expandRange(start: number, stop: number, step: number): number[] {
  const out: number[] = [];
  if (!(step > 0) || !(stop > start)) {
    return out;
  }
  const count = Math.ceil((stop - start) / step - 1e-9);
  for (let i = 0; i < count && i < MAX_SWEEP_SIZE + 1; i++) {
    out.push(Number((start + i * step).toFixed(10)));
  }
  return out;
}

export interface ISweepValues {
  /** The grid entry: a list of values or a range. */
  grid?: unknown[] | IGridRange;
  /** How many values it stands for. */
  count: number;
  error?: string;
}

/** A swept parameter's values, checked one by one against its rule. */
export function sweepValues(rule: IParamRule, field: ISweepField): ISweepValues {
  if (field.mode === 'list') {
    const items = field.list
      .split(',')
      .map(t => t.trim())
      .filter(t => t !== '');
    if (items.length === 0) {
      return { count: 0, error: 'give at least one value, separated by commas' };
    }
    const values = items.map(t => coerceParam(rule, t));
    for (let i = 0; i < values.length; i++) {
      const error = validateParam(rule, values[i]);
      if (error) {
        return { count: 0, error: `${items[i]}: ${error}` };
      }
    }
    return { grid: values, count: values.length };
  }
  if (rule.type !== 'integer' && rule.type !== 'float') {
    return { count: 0, error: 'a range needs a number parameter' };
  }
  const [start, stop, step] = [field.start, field.stop, field.step].map(parseNumber);
  if (typeof start !== 'number' || typeof stop !== 'number' || typeof step !== 'number') {
    return { count: 0, error: 'start, stop and step must be numbers' };
  }
  if (step <= 0 || stop <= start) {
    return { count: 0, error: 'needs step > 0 and stop > start (stop is left out)' };
  }
  const values = expandRange(start, stop, step);
  if (values.length > MAX_SWEEP_SIZE) {
    return { count: values.length, error: `more than ${MAX_SWEEP_SIZE} values` };
  }
  for (const v of values) {
    const error = validateParam(rule, v);
    if (error) {
      return { count: 0, error: `${v}: ${error}` };
    }
  }
  return { grid: { range: [start, stop, step] }, count: values.length };
}

export interface IBuiltSweep {
  body: ISweepCreate;
  /** Elements of the sweep: the product of the swept parameters' counts. */
  size: number;
  /** Messages by error key ("params.x"). */
  errors: { [key: string]: string };
}

/** The `POST sweeps` body a form stands for: swept parameters as the grid, the others base. */
export function buildSweep(request: ISubmitRequest, app: IApp, fields: SweepFields): IBuiltSweep {
  const grid: { [name: string]: unknown[] | IGridRange } = {};
  const errors: { [key: string]: string } = {};
  const base: { [name: string]: unknown } = { ...(request.params ?? {}) };
  let size = 1;
  for (const name of sweptNames(fields)) {
    delete base[name];
    const rule = app.param_rules?.[name] as IParamRule | undefined;
    if (!rule) {
      continue;
    }
    const values = sweepValues(rule, fields[name]);
    if (values.error) {
      errors[`params.${name}`] = values.error;
    } else if (values.grid !== undefined) {
      grid[name] = values.grid;
    }
    size *= values.count;
  }
  if (size > MAX_SWEEP_SIZE && Object.keys(errors).length === 0) {
    errors['params'] = `${size} jobs: a sweep has at most ${MAX_SWEEP_SIZE}`;
  }
  const body: ISweepCreate = {
    app: request.app,
    hpc: request.hpc,
    resources: request.resources,
    upload: request.upload ?? null,
    throttle: null,
    params: null,
    grid,
    base,
    notify: null
  };
  return { body, size, errors };
}

/** "3 running · 2 succeeded": a sweep's counts in lifecycle order. */
export function countsText(counts: { [status: string]: number }, order: ReadonlyArray<string>) {
  return order
    .filter(s => (counts[s] ?? 0) > 0)
    .map(s => `${counts[s]} ${s}`)
    .join(' · ');
}
