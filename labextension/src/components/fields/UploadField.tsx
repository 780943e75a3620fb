import * as React from 'react';

import { Field } from './Field';

/** The input data path, typed or picked with a file dialog (`onBrowse`, if there is one). */
export function UploadField(props: {
  value: string;
  required: boolean;
  error?: string;
  onChange: (path: string) => void;
  onBrowse?: () => void;
}): JSX.Element {
  return (
    <Field
      id="hpcbridge-upload"
      label="Input data (file or folder, relative to the Jupyter root)"
      required={props.required}
      error={props.error}
      errorTestid="hpcbridge-field-error-upload"
    >
      <div className="hpcbridge-upload-row">
        <input
          id="hpcbridge-upload"
          type="text"
          className="jp-mod-styled"
          placeholder={props.required ? 'required' : 'none'}
          data-testid="hpcbridge-upload-path"
          value={props.value}
          onChange={e => props.onChange(e.target.value)}
        />
        {props.onBrowse && (
          <button
            type="button"
            className="jp-mod-styled"
            data-testid="hpcbridge-upload-browse"
            onClick={props.onBrowse}
          >
            Browse…
          </button>
        )}
      </div>
    </Field>
  );
}
