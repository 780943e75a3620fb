import type { IApp } from '../api';
import { ApiError } from '../errors';
import {
  buildSubmission,
  defaultHpc,
  defaultValues,
  fieldKeys,
  IFormValues,
  placeServerErrors,
  rangeHint
} from '../submission';
import { validateSubmission } from '../validate';

// rules leave out what they do not set, as manifests do
function app(over: Partial<IApp> = {}): IApp {
  return {
    id: 'demo',
    name: 'Demo',
    description: '',
    container: null,
    supported_hpc: ['local', 'cluster'],
    default_hpc: 'cluster',
    require_upload_data: false,
    param_rules: {
      n: { type: 'integer', require: true, min: 1, max: 10, default_value: 4 },
      mode: { type: 'string_option', options: ['fast', 'slow'] },
      label: { type: 'string_input' },
      verbose: { type: 'boolean', default_value: 'true' },
      quiet: { type: 'boolean' }
    },
    slurm_input_rules: {
      cpus: { min: 1, max: 8, default_value: 2 },
      partition: { options: ['short', 'long'] }
    },
    ...over
  } as IApp;
}

function form(over: Partial<IFormValues> = {}): IFormValues {
  return { ...defaultValues(app(), ''), ...over };
}

describe('defaultValues', () => {
  it('starts each field from its default, as the input holds it', () => {
    expect(defaultValues(app(), 'data/in')).toEqual({
      hpc: 'cluster',
      params: { n: '4', mode: '', label: '', verbose: true, quiet: false },
      resources: { cpus: '2', partition: '' },
      upload: 'data/in'
    });
  });
  it('has nothing without an app', () => {
    expect(defaultValues(null, 'x')).toEqual({ hpc: '', params: {}, resources: {}, upload: 'x' });
  });
});

describe('defaultHpc', () => {
  it('takes the default when it is supported, else the first supported', () => {
    expect(defaultHpc(app())).toBe('cluster');
    expect(defaultHpc(app({ default_hpc: 'gone' }))).toBe('local');
    expect(defaultHpc(app({ default_hpc: null }))).toBe('local');
    expect(defaultHpc(app({ supported_hpc: [], default_hpc: 'any' }))).toBe('any');
    expect(defaultHpc(app({ supported_hpc: [], default_hpc: null }))).toBe('');
    expect(defaultHpc(null)).toBe('');
  });
});

describe('buildSubmission', () => {
  it('coerces values by rule and leaves empty fields out', () => {
    const values = form({
      params: { n: '7', mode: 'fast', label: '', verbose: false, quiet: true },
      resources: { cpus: ' 3 ', partition: '' },
      upload: '  data/in  '
    });
    expect(buildSubmission(values, app())).toEqual({
      app: 'demo',
      hpc: 'cluster',
      params: { n: 7, mode: 'fast', verbose: false, quiet: true },
      resources: { cpus: 3 },
      upload: 'data/in',
      notify: null
    });
  });
  it('sends no upload for a blank path', () => {
    expect(buildSubmission(form({ upload: '   ' }), app()).upload).toBeNull();
  });
  it('ignores values of fields the app has no rule for', () => {
    const values = form({ params: { n: '1', stale: 'x' }, resources: { old: '1' } });
    const body = buildSubmission(values, app());
    expect(body.params).toEqual({ n: 1 });
    expect(body.resources).toEqual({});
  });
  it('keeps text that is not a number, so validation names the mistake', () => {
    const body = buildSubmission(form({ params: { n: '2.5x' } }), app());
    expect(body.params).toEqual({ n: '2.5x' });
    expect(validateSubmission(app(), body)).toEqual([
      { loc: ['params', 'n'], msg: 'must be an integer' }
    ]);
  });
  it('the default form of a valid app is a valid submission', () => {
    expect(validateSubmission(app(), buildSubmission(form(), app()))).toEqual([]);
  });
});

describe('fieldKeys', () => {
  it('names every field of the form', () => {
    expect([...fieldKeys(app())].sort()).toEqual(
      [
        'app',
        'hpc',
        'upload',
        'params.n',
        'params.mode',
        'params.label',
        'params.verbose',
        'params.quiet',
        'resources.cpus',
        'resources.partition'
      ].sort()
    );
  });
});

describe('placeServerErrors', () => {
  const keys = fieldKeys(app());
  it('puts details next to their fields, first message per field', () => {
    const error = new ApiError(422, 'invalid', 'Invalid input', [
      { loc: ['body', 'params', 'n'], msg: 'must be at most 10' },
      { loc: ['params', 'n'], msg: 'second' },
      { loc: ['resources', 'cpus', 0], msg: 'must be an integer' }
    ]);
    expect(placeServerErrors(error, keys)).toEqual({
      fields: { 'params.n': 'must be at most 10', 'resources.cpus': 'must be an integer' },
      form: 'The server did not accept some fields: see the messages next to them.'
    });
  });
  it('says in the form message what names no field', () => {
    const error = new ApiError(422, 'invalid', 'Invalid input', [
      { loc: ['params', 'n'], msg: 'is required' },
      { loc: ['params', 'ghost'], msg: 'unknown parameter' }
    ]);
    expect(placeServerErrors(error, keys)).toEqual({
      fields: { 'params.n': 'is required' },
      form: 'Invalid input (params.ghost: unknown parameter)'
    });
  });
  it('puts an error without details on the fallback field', () => {
    const error = new ApiError(413, 'too_large', 'The upload is too large');
    expect(placeServerErrors(error, keys, 'upload')).toEqual({
      fields: { upload: 'The upload is too large' },
      form: 'The server did not accept some fields: see the messages next to them.'
    });
    expect(placeServerErrors(error, keys)).toEqual({
      fields: {},
      form: 'The upload is too large'
    });
  });
});

describe('rangeHint', () => {
  it('shows bounds, a step other than 1 and the default', () => {
    expect(rangeHint({ min: 1, max: 10, step: 2, default_value: 4 })).toBe(
      '1 – 10, step 2, default 4'
    );
    expect(rangeHint({ min: 0 })).toBe('≥ 0');
    expect(rangeHint({ max: 5, step: 1 })).toBe('≤ 5');
    expect(rangeHint({ min: null, max: null, step: null, default_value: null })).toBe('');
    expect(rangeHint({ default_value: '' })).toBe('');
  });
});
