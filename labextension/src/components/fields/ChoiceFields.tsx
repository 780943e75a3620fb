import * as React from 'react';

import type { IApp, IHpc } from '../../api';
import { Select } from '../Select';
import { Field } from './Field';

/** Which app to run, with its description under the choice. */
export function AppField(props: {
  apps: IApp[];
  app: IApp | null;
  error?: string;
  onChange: (id: string) => void;
}): JSX.Element {
  const { app } = props;
  return (
    <>
      <Field
        id="hpcbridge-app"
        label="App"
        error={props.error}
        errorTestid="hpcbridge-field-error-app"
      >
        <Select
          id="hpcbridge-app"
          data-testid="hpcbridge-app-select"
          value={app?.id ?? ''}
          onChange={e => props.onChange(e.target.value)}
        >
          {props.apps.map(a => (
            <option key={a.id} value={a.id}>
              {a.name || a.id}
            </option>
          ))}
        </Select>
      </Field>
      {app?.description && <p className="hpcbridge-app-description">{app.description}</p>}
    </>
  );
}

/** Which of the app's HPCs to run on; unreachable or draining ones say so. */
export function HpcField(props: {
  supported: string[];
  hpcs: IHpc[];
  value: string;
  error?: string;
  onChange: (id: string) => void;
}): JSX.Element {
  return (
    <Field
      id="hpcbridge-hpc"
      label="HPC"
      error={props.error}
      errorTestid="hpcbridge-field-error-hpc"
    >
      <Select
        id="hpcbridge-hpc"
        data-testid="hpcbridge-hpc-select"
        value={props.value}
        onChange={e => props.onChange(e.target.value)}
      >
        {props.supported.map(id => {
          const info = props.hpcs.find(h => h.id === id);
          const note =
            info?.reachable === false ? ' (unreachable)' : info?.draining ? ' (draining)' : '';
          return (
            <option key={id} value={id}>
              {(info?.name || id) + note}
            </option>
          );
        })}
      </Select>
    </Field>
  );
}
