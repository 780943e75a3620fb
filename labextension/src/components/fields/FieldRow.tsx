import * as React from 'react';

import { Field } from './Field';

/** How one rule's row reads: its label, hint and whether it is required. */
export interface IRowText {
  label: string;
  hint?: string;
  required?: boolean;
}

/**
 * One fieldset of rule-driven rows (the app's parameters, its resources): each row a
 * labelled `Field` with the id `hpcbridge-<kind>-<name>`, its hint and its error
 * (key `<kind>s.<name>`); `input` draws the control. No rules: no fieldset.
 */
export function FieldRows<R>(props: {
  legend: string;
  kind: 'param' | 'resource';
  rules: { [name: string]: R };
  errorFor: (key: string) => string | undefined;
  text: (name: string, rule: R) => IRowText;
  input: (name: string, rule: R, id: string, invalid: boolean) => React.ReactNode;
}): JSX.Element | null {
  const rules = Object.entries(props.rules);
  if (rules.length === 0) {
    return null;
  }
  return (
    <fieldset className="hpcbridge-fieldset">
      <legend>{props.legend}</legend>
      {rules.map(([name, rule]) => {
        const id = `hpcbridge-${props.kind}-${name}`;
        const error = props.errorFor(`${props.kind}s.${name}`);
        const text = props.text(name, rule);
        return (
          <Field
            key={name}
            id={id}
            label={text.label}
            required={text.required}
            hint={text.hint}
            error={error}
            errorTestid={`hpcbridge-field-error-${name}`}
          >
            {props.input(name, rule, id, !!error)}
          </Field>
        );
      })}
    </fieldset>
  );
}
