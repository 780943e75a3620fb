import * as React from 'react';

import { actionMessage } from '../errors';
import { PanelModel } from '../model';
import { batchApps } from '../sessions';
import { AppField, HpcField } from './fields/ChoiceFields';
import { ParamFields } from './fields/ParamFields';
import { ResourceFields } from './fields/ResourceFields';
import { UploadField } from './fields/UploadField';
import { useMounted } from './hooks';
import { useSubmitForm } from './useSubmitForm';

export interface ISubmitHost {
  /** Let the user pick a folder in a JupyterLab file dialog; null if cancelled. */
  pickPath?: () => Promise<string | null>;
}

/** The new-job form: app, HPC, parameters, resources and input data. */
export function SubmitForm(props: {
  model: PanelModel;
  host: ISubmitHost;
  initialUpload?: string;
  initialApp?: string;
}): JSX.Element {
  const { model, host } = props;
  const mounted = useMounted();
  const form = useSubmitForm(model, { app: props.initialApp, upload: props.initialUpload });
  const { app, values, errorFor } = form;

  const setUpload = (path: string) => form.change('upload', v => ({ ...v, upload: path }));
  const browse = async () => {
    const path = await host.pickPath?.();
    if (path != null && mounted.current) {
      setUpload(path);
    }
  };

  if (!model.appsLoaded) {
    return (
      <div className="hpcbridge-form">
        {model.appsError ? (
          <div className="hpcbridge-form-error" data-testid="hpcbridge-form-error" role="alert">
            Could not load the apps: {actionMessage(model.appsError)}
          </div>
        ) : (
          <div className="hpcbridge-muted">Loading apps…</div>
        )}
      </div>
    );
  }
  if (model.apps.length === 0) {
    return (
      <div className="hpcbridge-form">
        <div className="hpcbridge-empty">No apps are configured on this hpcbridge server.</div>
      </div>
    );
  }

  return (
    <form ref={form.formRef} className="hpcbridge-form" onSubmit={form.submit} noValidate>
      <AppField
        apps={batchApps(model.apps)}
        app={app}
        error={errorFor('app')}
        onChange={form.selectApp}
      />
      <HpcField
        supported={app?.supported_hpc ?? []}
        hpcs={model.hpcs}
        value={values.hpc}
        error={errorFor('hpc')}
        onChange={hpc => form.change('hpc', v => ({ ...v, hpc }))}
      />
      <ParamFields
        rules={app?.param_rules ?? {}}
        values={values.params}
        errorFor={errorFor}
        sweep={form.sweep}
        onChange={(name, value) =>
          form.change(`params.${name}`, v => ({ ...v, params: { ...v.params, [name]: value } }))
        }
      />
      <ResourceFields
        rules={app?.slurm_input_rules ?? {}}
        values={values.resources}
        errorFor={errorFor}
        onChange={(name, value) =>
          form.change(`resources.${name}`, v => ({
            ...v,
            resources: { ...v.resources, [name]: value }
          }))
        }
      />
      <UploadField
        value={values.upload}
        required={!!app?.require_upload_data}
        error={errorFor('upload')}
        onChange={setUpload}
        onBrowse={host.pickPath ? () => void browse() : undefined}
      />

      {errorFor('params') && (
        <div className="hpcbridge-form-error" role="alert">
          {errorFor('params')}
        </div>
      )}
      {form.formError && (
        <div className="hpcbridge-form-error" data-testid="hpcbridge-form-error" role="alert">
          {form.formError}
        </div>
      )}
      <div className="hpcbridge-form-actions">
        <button
          type="button"
          className="jp-mod-styled jp-mod-reject"
          onClick={() => model.navigate({ kind: 'list' })}
        >
          Cancel
        </button>
        <button
          type="submit"
          className="jp-mod-styled jp-mod-accept"
          data-testid="hpcbridge-submit"
          disabled={!app || !!form.busy}
        >
          {form.busy ??
            (form.sweepSize === null ? 'Submit' : `Submit sweep (${form.sweepSize} jobs)`)}
        </button>
      </div>
    </form>
  );
}
