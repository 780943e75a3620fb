import * as React from 'react';

import type { IParamRule } from '../../api';
import { ParamValues, rangeHint } from '../../submission';
import { emptySweepField, ISweepField, SweepFields, SweepMode } from '../../sweep';
import { Select } from '../Select';
import { FieldRows } from './FieldRow';

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

/** A swept parameter's inputs: a comma separated list, or start / stop / step. */
function SweepInput(props: {
  id: string;
  name: string;
  field: ISweepField;
  invalid: boolean;
  onChange: (field: ISweepField) => void;
}): JSX.Element {
  const { field, name } = props;
  const box = (key: 'list' | 'start' | 'stop' | 'step', placeholder: string, id?: string) => (
    <input
      id={id}
      type="text"
      className="jp-mod-styled"
      placeholder={placeholder}
      aria-label={`${name} ${key}`}
      data-testid={`hpcbridge-sweep-${key}-${name}`}
      aria-invalid={props.invalid}
      value={field[key]}
      onChange={e => props.onChange({ ...field, [key]: e.target.value })}
    />
  );
  if (field.mode === 'list') {
    return box('list', 'a, b, c', props.id);
  }
  return (
    <div className="hpcbridge-sweep-range">
      {box('start', 'start', props.id)}
      {box('stop', 'stop (left out)')}
      {box('step', 'step')}
    </div>
  );
}

/** One value, a list or a range: the sweep option of a parameter. */
function ModeSelect(props: {
  name: string;
  rule: IParamRule;
  mode: SweepMode;
  onChange: (mode: SweepMode) => void;
}): JSX.Element {
  const numeric = props.rule.type === 'integer' || props.rule.type === 'float';
  return (
    <select
      className="hpcbridge-sweep-mode"
      aria-label={`${props.name}: one value, a list or a range`}
      title="One value (a job), or a list or range of values (a sweep: one job per value)"
      data-testid={`hpcbridge-sweep-mode-${props.name}`}
      value={props.mode}
      onChange={e => props.onChange(e.target.value as SweepMode)}
    >
      <option value="one">one value</option>
      <option value="list">list</option>
      {numeric && <option value="range">range</option>}
    </select>
  );
}

/** How the form's sweep option reads and changes the swept parameters. */
export interface ISweepControls {
  fields: SweepFields;
  onChange: (name: string, field: ISweepField) => void;
}

/** The app's parameters, one field per rule (none: no fieldset); with `sweep`, each can
 * also take a list or range of values. */
export function ParamFields(props: {
  rules: { [name: string]: IParamRule };
  values: ParamValues;
  errorFor: (key: string) => string | undefined;
  onChange: (name: string, value: string | boolean) => void;
  sweep?: ISweepControls;
}): JSX.Element | null {
  const { sweep } = props;
  return (
    <FieldRows
      legend="Parameters"
      kind="param"
      rules={props.rules}
      errorFor={props.errorFor}
      text={(name, rule) => {
        const numeric = rule.type === 'integer' || rule.type === 'float';
        const hint = [rule.description, numeric ? rangeHint(rule) : ''].filter(Boolean).join(' · ');
        return { label: name, required: rule.require, hint };
      }}
      input={(name, rule, id, invalid) => {
        const field = sweep?.fields[name] ?? emptySweepField();
        const input =
          field.mode === 'one' ? (
            <ParamInput
              id={id}
              name={name}
              rule={rule}
              value={props.values[name]}
              invalid={invalid}
              onChange={value => props.onChange(name, value)}
            />
          ) : (
            <SweepInput
              id={id}
              name={name}
              field={field}
              invalid={invalid}
              onChange={f => sweep?.onChange(name, f)}
            />
          );
        if (!sweep) {
          return input;
        }
        return (
          <div className="hpcbridge-sweep-row">
            {input}
            <ModeSelect
              name={name}
              rule={rule}
              mode={field.mode}
              onChange={mode => sweep.onChange(name, { ...field, mode })}
            />
          </div>
        );
      }}
    />
  );
}
