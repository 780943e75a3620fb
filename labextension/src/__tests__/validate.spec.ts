import {
  checkRange,
  coerceParam,
  coerceResource,
  errorsByField,
  fieldLoc,
  IAppRules,
  initialFieldText,
  ISubmission,
  parseNumber,
  validateParam,
  validateResource,
  validateSubmission
} from '../validate';

import { readFileSync } from 'fs';
import { resolve } from 'path';

// One vector file for the panel and the server (pytest reads it too).
const VECTORS = resolve(__dirname, '../../../tests/vectors/validation.json');
const vectors = JSON.parse(readFileSync(VECTORS, 'utf8'));

describe('validateSubmission against the shared vectors', () => {
  const cases: Array<{
    name: string;
    app?: Partial<IAppRules>;
    submission: ISubmission;
    errors: unknown[];
  }> = vectors.cases;
  it('has cases', () => {
    expect(cases.length).toBeGreaterThan(30);
  });
  it.each(cases.map(c => [c.name, c] as const))('%s', (_name, c) => {
    const app: IAppRules = { ...vectors.app, ...(c.app ?? {}) };
    expect(validateSubmission(app, c.submission)).toEqual(c.errors);
  });
});

describe('validateParam', () => {
  it('accepts a missing optional value of any type', () => {
    for (const type of ['integer', 'float', 'string_option', 'string_input', 'boolean'] as const) {
      expect(validateParam({ type }, undefined)).toBeNull();
      expect(validateParam({ type }, null)).toBeNull();
      expect(validateParam({ type }, '')).toBeNull();
    }
  });
  it('requires required values, booleans included', () => {
    expect(validateParam({ type: 'boolean', require: true }, undefined)).toBe('is required');
    expect(validateParam({ type: 'boolean', require: true }, false)).toBeNull();
  });
  it('rejects NaN and Infinity as numbers', () => {
    expect(validateParam({ type: 'float' }, NaN)).toBe('must be a number');
    expect(validateParam({ type: 'float' }, Infinity)).toBe('must be a number');
    expect(validateParam({ type: 'integer' }, Infinity)).toBe('must be an integer');
  });
  it('checks min before max before step', () => {
    expect(validateParam({ type: 'integer', min: 2, max: 4, step: 2 }, 1)).toBe(
      'must be at least 2'
    );
    expect(validateParam({ type: 'integer', min: 2, max: 4, step: 2 }, 5)).toBe(
      'must be at most 4'
    );
    expect(validateParam({ type: 'integer', min: 2, max: 10, step: 2 }, 5)).toBe(
      'must be a multiple of 2'
    );
  });
  it('treats an option list with no options as nothing allowed', () => {
    expect(validateParam({ type: 'string_option' }, 'a')).toBe('must be one of: ');
  });
});

describe('validateResource', () => {
  it('is an integer unless it has options', () => {
    expect(validateResource({}, 1.5)).toBe('must be an integer');
    expect(validateResource({ options: ['a'] }, 'a')).toBeNull();
    expect(validateResource({ options: ['a'] }, 1)).toBe('must be one of: a');
  });
  it('ignores missing values', () => {
    expect(validateResource({ min: 1 }, undefined)).toBeNull();
  });
});

describe('checkRange', () => {
  it('handles float steps without rounding noise', () => {
    expect(checkRange(0.7, { step: 0.1 })).toBeNull();
    expect(checkRange(1.2, { min: 0.2, step: 0.5 })).toBeNull();
    expect(checkRange(1.3, { min: 0.2, step: 0.5 })).toBe('must be 0.2 plus a multiple of 0.5');
  });
  it('ignores a zero or negative step', () => {
    expect(checkRange(0.7, { step: 0 })).toBeNull();
    expect(checkRange(0.7, { step: -1 })).toBeNull();
  });
});

describe('form coercion', () => {
  it('parses numbers and keeps what is not one', () => {
    expect(parseNumber('12')).toBe(12);
    expect(parseNumber(' 1.5 ')).toBe(1.5);
    expect(parseNumber('-3')).toBe(-3);
    expect(parseNumber('.5')).toBe(0.5);
    expect(parseNumber('1e3')).toBe(1000);
    expect(parseNumber('')).toBeUndefined();
    expect(parseNumber('   ')).toBeUndefined();
    expect(parseNumber('abc')).toBe('abc');
    expect(parseNumber('12abc')).toBe('12abc');
    expect(parseNumber('0x10')).toBe('0x10');
  });
  it('coerces params by type', () => {
    expect(coerceParam({ type: 'integer' }, '7')).toBe(7);
    expect(coerceParam({ type: 'integer' }, '7.5')).toBe(7.5);
    expect(coerceParam({ type: 'float' }, 'x')).toBe('x');
    expect(coerceParam({ type: 'boolean' }, true)).toBe(true);
    expect(coerceParam({ type: 'boolean' }, 'false')).toBe(false);
    expect(coerceParam({ type: 'string_input' }, '')).toBeUndefined();
    expect(coerceParam({ type: 'string_input' }, ' a ')).toBe(' a ');
    expect(coerceParam({ type: 'string_option', options: ['a'] }, 'a')).toBe('a');
    expect(coerceParam({ type: 'integer' }, undefined)).toBeUndefined();
  });
  it('coerces resources', () => {
    expect(coerceResource({}, '4')).toBe(4);
    expect(coerceResource({}, '')).toBeUndefined();
    expect(coerceResource({ options: ['a'] }, 'a')).toBe('a');
    expect(coerceResource({ options: ['a'] }, '')).toBeUndefined();
  });
  it('a typed integer with a fraction fails validation with the server message', () => {
    const rule = { type: 'integer' as const, min: 1, max: 10 };
    expect(validateParam(rule, coerceParam(rule, '2.5'))).toBe('must be an integer');
    expect(validateParam(rule, coerceParam(rule, 'abc'))).toBe('must be an integer');
    expect(validateParam(rule, coerceParam(rule, '11'))).toBe('must be at most 10');
  });
  it('starts fields from default_value', () => {
    expect(initialFieldText({ default_value: 4 })).toBe('4');
    expect(initialFieldText({ default_value: 'x' })).toBe('x');
    expect(initialFieldText({})).toBe('');
    expect(initialFieldText({ default_value: null })).toBe('');
  });
});

describe('error locations', () => {
  it('maps server locations to form fields', () => {
    expect(fieldLoc(['params', 'n'])).toEqual(['params', 'n']);
    expect(fieldLoc(['body', 'params', 'n'])).toEqual(['params', 'n']);
    expect(fieldLoc(['resources', 'cpus', 0])).toEqual(['resources', 'cpus']);
    expect(fieldLoc(['upload'])).toEqual(['upload']);
    expect(fieldLoc(['body', 'hpc'])).toEqual(['hpc']);
  });
  it('groups errors by field, first message wins', () => {
    expect(
      errorsByField([
        { loc: ['params', 'n'], msg: 'must be at most 10' },
        { loc: ['body', 'params', 'n'], msg: 'other' },
        { loc: ['upload'], msg: 'is required' }
      ])
    ).toEqual({ 'params.n': 'must be at most 10', upload: 'is required' });
  });
});
