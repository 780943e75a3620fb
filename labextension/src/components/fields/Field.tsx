import * as React from 'react';

/** A labelled form row with its hint and, when invalid, its error message. */
export function Field(props: {
  id: string;
  label: string;
  required?: boolean;
  hint?: string;
  error?: string;
  errorTestid: string;
  children: React.ReactNode;
}): JSX.Element {
  return (
    <div className={`hpcbridge-field${props.error ? ' hpcbridge-field-invalid' : ''}`}>
      <label htmlFor={props.id} className="hpcbridge-field-label">
        {props.label}
        {props.required && (
          <span className="hpcbridge-required" title="required">
            {' '}
            *
          </span>
        )}
      </label>
      {props.children}
      {props.hint && <div className="hpcbridge-field-hint">{props.hint}</div>}
      {props.error && (
        <div className="hpcbridge-field-error" data-testid={props.errorTestid} role="alert">
          {props.error}
        </div>
      )}
    </div>
  );
}
