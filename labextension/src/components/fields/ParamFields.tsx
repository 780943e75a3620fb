import * as React from 'react';

import type { IParamRule } from '../../api';
import { ParamValues, rangeHint } from '../../submission';
import { Select } from '../Select';
import { Field } from './Field';

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

/** The app's parameters, one field per rule (none: no fieldset). */
export function ParamFields(props: {
  rules: { [name: string]: IParamRule };
  values: ParamValues;
  errorFor: (key: string) => string | undefined;
  onChange: (name: string, value: string | boolean) => void;
}): JSX.Element | null {
  const rules = Object.entries(props.rules);
  if (rules.length === 0) {
    return null;
  }
  return (
    <fieldset className="hpcbridge-fieldset">
      <legend>Parameters</legend>
      {rules.map(([name, rule]) => {
        const error = props.errorFor(`params.${name}`);
        const numeric = rule.type === 'integer' || rule.type === 'float';
        const hint = [rule.description, numeric ? rangeHint(rule) : ''].filter(Boolean).join(' · ');
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
              value={props.values[name]}
              invalid={!!error}
              onChange={value => props.onChange(name, value)}
            />
          </Field>
        );
      })}
    </fieldset>
  );
}
