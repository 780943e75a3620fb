import type { IApp } from '../api';
import { buildSubmission, defaultValues } from '../submission';
import { buildSweep, countsText, emptySweepField, expandRange, sweepValues } from '../sweep';
import type { IParamRule } from '../validate';

const INT: IParamRule = { type: 'integer', min: 0, max: 100 };
const OPT: IParamRule = { type: 'string_option', options: ['a', 'b'] };

function app(): IApp {
  return {
    id: 'hello',
    name: 'Hello',
    description: '',
    container: null,
    supported_hpc: ['slurm'],
    default_hpc: 'slurm',
    require_upload_data: false,
    param_rules: {
      n: { type: 'integer', require: true, min: 0, max: 100 },
      x: { type: 'float', min: 0, max: 1 },
      name: { type: 'string_input', default_value: 'world' }
    },
    slurm_input_rules: {}
  } as unknown as IApp;
}

describe('expandRange', () => {
  it('leaves stop out and rounds float steps like the server', () => {
    expect(expandRange(0, 5, 1)).toEqual([0, 1, 2, 3, 4]);
    expect(expandRange(0, 0.5, 0.1)).toEqual([0, 0.1, 0.2, 0.3, 0.4]);
    expect(expandRange(1, 1, 1)).toEqual([]);
    expect(expandRange(0, 5, 0)).toEqual([]);
  });
});

describe('sweepValues', () => {
  it('reads a comma list by the rule and names a bad value', () => {
    expect(sweepValues(INT, { ...emptySweepField('list'), list: '1, 2,,3' })).toEqual({
      grid: [1, 2, 3],
      count: 3
    });
    expect(sweepValues(OPT, { ...emptySweepField('list'), list: 'a,b' }).grid).toEqual(['a', 'b']);
    expect(sweepValues(INT, { ...emptySweepField('list'), list: '1,200' }).error).toBe(
      '200: must be at most 100'
    );
    expect(sweepValues(INT, emptySweepField('list')).error).toMatch(/at least one value/);
  });

  it('turns a range into the grid form and checks every value', () => {
    const field = { ...emptySweepField('range'), start: '0', stop: '10', step: '2' };
    expect(sweepValues(INT, field)).toEqual({ grid: { range: [0, 10, 2] }, count: 5 });
    expect(sweepValues(INT, { ...field, stop: '300' }).error).toBe('102: must be at most 100');
    expect(sweepValues(INT, { ...field, step: '0' }).error).toMatch(/step > 0/);
    expect(sweepValues(INT, { ...field, start: 'x' }).error).toMatch(/must be numbers/);
    expect(sweepValues(OPT, field).error).toMatch(/number parameter/);
  });
});

describe('buildSweep', () => {
  it('puts swept parameters in the grid and the others in base', () => {
    const a = app();
    const values = defaultValues(a, '');
    values.params.n = '';
    const request = buildSubmission(values, a);
    const built = buildSweep(request, a, {
      n: { ...emptySweepField('range'), start: '1', stop: '4', step: '1' },
      x: { ...emptySweepField('list'), list: '0.5, 1' },
      name: emptySweepField()
    });
    expect(built.errors).toEqual({});
    expect(built.size).toBe(6);
    expect(built.body.grid).toEqual({ n: { range: [1, 4, 1] }, x: [0.5, 1] });
    expect(built.body.base).toEqual({ name: 'world' });
    expect(built.body.app).toBe('hello');
    expect(built.body.hpc).toBe('slurm');
  });

  it('places a bad list next to its parameter', () => {
    const a = app();
    const built = buildSweep(buildSubmission(defaultValues(a, ''), a), a, {
      x: { ...emptySweepField('list'), list: '2' }
    });
    expect(built.errors).toEqual({ 'params.x': '2: must be at most 1' });
  });
});

describe('countsText', () => {
  it('lists the statuses with elements in lifecycle order', () => {
    expect(countsText({ succeeded: 2, running: 3 }, ['queued', 'running', 'succeeded'])).toBe(
      '3 running · 2 succeeded'
    );
  });
});
