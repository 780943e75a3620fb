import * as React from 'react';

import type { IResourceRule } from '../../api';
import { rangeHint, ResourceValues } from '../../submission';
import { Select } from '../Select';
import { FieldRows } from './FieldRow';

/** Units shown for the usual Slurm resources when the rule names none. */
const DEFAULT_UNITS: { [name: string]: string } = {
  time: 'minutes',
  memory: 'MB'
};

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

/** The app's Slurm resources, one field per rule (none: no fieldset). */
export function ResourceFields(props: {
  rules: { [name: string]: IResourceRule };
  values: ResourceValues;
  errorFor: (key: string) => string | undefined;
  onChange: (name: string, value: string) => void;
}): JSX.Element | null {
  return (
    <FieldRows
      legend="Resources"
      kind="resource"
      rules={props.rules}
      errorFor={props.errorFor}
      text={(name, rule) => {
        const unit = rule.unit ?? DEFAULT_UNITS[name];
        return {
          label: unit ? `${name} (${unit})` : name,
          hint: rule.options ? '' : rangeHint(rule)
        };
      }}
      input={(name, rule, id, invalid) => (
        <ResourceInput
          id={id}
          name={name}
          rule={rule}
          value={props.values[name]}
          invalid={invalid}
          onChange={value => props.onChange(name, value)}
        />
      )}
    />
  );
}
